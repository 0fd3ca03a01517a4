"""DeML's pieces against hand computations (random walk, attention crop, gradient reversal, binomial deviance,
regularisers), its learner sizes, and one trainer iteration on synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _spaces import space_defaults

from zsltune.data.sources import StageRequest, get_source
from zsltune.data.synth_images import PALETTE, draw, synth_images
from zsltune.layers.attention_maps import attention_boxes, random_walk
from zsltune.layers.crops import crop_resize
from zsltune.layers.metric_losses import (
    adversary_discrepancy,
    binomial_deviance,
    dann_coefficient,
    reverse_gradient,
    row_norm_penalty,
)
from zsltune.methods import get_method
from zsltune.methods.deml import orthogonal_adversary


def test_random_walk_conserves_mass_and_a_uniform_map_stays_uniform() -> None:
    torch.manual_seed(0)
    m = random_walk(torch.rand(3, 8, 6, 5), steps=10)
    assert torch.allclose(m.sum((1, 2)), torch.ones(3), atol=1e-5) and (m >= 0).all()
    flat = random_walk(torch.ones(2, 4, 5, 5), steps=10)  # all features equal: no edges, nothing moves
    assert torch.isfinite(flat).all() and torch.allclose(flat, torch.full_like(flat, 1 / 25))


def _iou(a: list[float], b: list[float]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_attention_crop_finds_the_planted_object() -> None:
    """The image itself (pooled to 16x16) as the feature map: the walk's crop covers the planted object."""
    rng = np.random.default_rng(0)
    for k in range(8):
        img = np.full((64, 64, 3), 128.0, np.float32) + rng.normal(0, 3, (64, 64, 3)).astype(np.float32)
        r = rng.uniform(10, 16)
        cx, cy = rng.uniform(r, 64 - r, 2)
        x, y, w, h = draw(img, "disc", "solid", PALETTE[k % len(PALETTE)], cx, cy, r, 0.0)
        u = F.avg_pool2d(torch.tensor(img).permute(2, 0, 1)[None] / 255, 4)  # (1, 3, 16, 16)
        box = attention_boxes(random_walk(u, steps=10, sigma=None), 64)[0].tolist()
        assert _iou(box, [x, y, x + w, y + h]) >= 0.5, (k, box, (x, y, w, h))


def test_crop_resize_is_grid_sample_on_the_box() -> None:
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 4.0, 6.0, 8.0]])
    out = crop_resize(img, boxes, 4)
    assert torch.allclose(out[0], F.interpolate(img[:1], size=4, mode="bilinear", align_corners=False)[0], atol=1e-4)
    assert torch.allclose(
        out[1], F.interpolate(img[1:, :, 4:8, 2:6], size=4, mode="bilinear", align_corners=False)[0], atol=1e-4
    )


def test_gradient_reversal_flips_the_sign() -> None:
    x = torch.randn(5, requires_grad=True)
    (reverse_gradient(x, 0.5) * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(5.0))


def test_dann_coefficient_rises_from_0_to_1() -> None:
    w = [dann_coefficient(p) for p in (0.0, 0.1, 0.3, 1.0)]
    assert w[0] == 0.0 and w == sorted(w) and w[-1] == pytest.approx(1.0, abs=1e-4)
    assert w[1] == pytest.approx(2 / (1 + np.exp(-1)) - 1)


def test_binomial_deviance_and_its_gradient_match_a_hand_computation() -> None:
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], requires_grad=True)  # unit rows: S = z z^T
    y = torch.tensor([0, 0, 1])
    loss = binomial_deviance(z, y, alpha=2.0, beta=0.5, gamma_neg=35.0)

    def hand(zz: torch.Tensor) -> torch.Tensor:
        s = F.normalize(zz, dim=1) @ F.normalize(zz, dim=1).T
        pos = torch.log1p(torch.exp(-2.0 * (s[0, 1] - 0.5)))  # one positive pair
        neg = (
            torch.log1p(torch.exp(2.0 * (s[0, 2] - 0.5) * 35)) + torch.log1p(torch.exp(2.0 * (s[1, 2] - 0.5) * 35))
        ) / 2
        return pos + neg

    assert loss.item() == pytest.approx(hand(z.detach()).item(), rel=1e-6)
    (g,) = torch.autograd.grad(loss, z)
    zz = z.detach().clone().requires_grad_(True)
    (h,) = torch.autograd.grad(hand(zz), zz)
    assert torch.allclose(g, h, atol=1e-5)


def test_row_norm_penalty() -> None:
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert row_norm_penalty([w]).item() == pytest.approx(0.0 + 1.0 + 1.0)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory):
    root = synth_images(tmp_path_factory.mktemp("deml") / "R", classes=12, per_class=6, size=32, seed=0)
    return get_source("images").load(StageRequest(dataset=str(root), stage="val"))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "deml-cache"))


TINY = {**space_defaults("deml"), "width": 8, "bottleneck": 4, "batch_classes": 4, "per_class": 2, "crop": 28}


@pytest.mark.parametrize(("i", "j", "d"), [(1, 1, 64), (2, 3, 64), (3, 3, 512)])
def test_learner_dimensions(stage, i: int, j: int, d: int) -> None:
    t = get_method("deml")({**TINY, "I": i, "J": j, "d": d}, stage, seed=0)
    dims = [lin.out_features for s in t.model for lin in s.learners]
    assert dims == [d // (i * j)] * (i * j)


def test_one_iteration_and_retrieval_metrics(stage, tmp_path: Path) -> None:
    t = get_method("deml")({**TINY, "I": 2, "J": 2, "d": 16, "adversary": "grl"}, stage, seed=0, iteration_steps=2)
    losses = t.fit_epoch()
    assert set(losses) >= {"loss", "metric", "adv", "act"} and all(np.isfinite(v) for v in losses.values())
    r = t.evaluate()
    assert (
        set(r) == {"recall@1", "recall@2", "recall@4", "recall@8", "NMI"} and 0 <= r["recall@1"] <= r["recall@8"] <= 1
    )
    assert set(t.metric_keys()) == set(r)


def test_the_recall_list_comes_from_the_stage(stage, tmp_path: Path) -> None:
    """``--recall-at`` (StageRequest.recall_at) sets the list the trainer reports (an SOP-like list on a toy set)."""
    sop = get_source("images").load(StageRequest(dataset=stage.root, stage="val", recall_at="1,10,100"))
    t = get_method("deml")({**TINY, "I": 1, "J": 2, "d": 16}, sop, seed=0)
    r = t.evaluate()
    assert set(r) == {"recall@1", "recall@10", "recall@100", "NMI"} == set(t.metric_keys())
    assert r["recall@1"] <= r["recall@10"] <= r["recall@100"] == 1.0  # 100 >= the 23 other evaluation images


def _fit_adversary_alone(f: torch.nn.Module, zs: list[torch.Tensor], steps: int = 600) -> tuple[float, float]:
    """(L_adv before, after) F alone minimises it with Adam on fixed sub-learner outputs."""
    opt = torch.optim.Adam(f.parameters(), lr=0.01)
    before = float(adversary_discrepancy(f, zs).detach())
    for _ in range(steps):
        opt.zero_grad()
        adversary_discrepancy(f, zs).backward()
        opt.step()
    return before, float(adversary_discrepancy(f, zs).detach())


def test_grl_adversary_cannot_win_by_shrinking_or_turning(stage) -> None:
    """The ``grl`` adversary trained alone on a scale's fixed sub-learner outputs keeps L_adv above half its start,
    from any initial direction; a free linear F (the paper's, unconstrained) drives the same L_adv near zero."""
    t = get_method("deml")({**TINY, "I": 1, "J": 3, "d": 48, "adversary": "grl"}, stage, seed=0)
    with torch.no_grad():
        x, _ = t.sample_batch()
        zs = [z.detach() for z in t.embed_all(x)[0]]  # J x (B, 16)
    for seed in range(3):
        torch.manual_seed(seed)
        before, after = _fit_adversary_alone(orthogonal_adversary(16), zs)
        assert after >= 0.5 * before, (seed, before, after)
    torch.manual_seed(0)
    before, after = _fit_adversary_alone(torch.nn.Linear(16, 16), zs)
    assert after < 0.1 * before, (before, after)
