"""SGMA on synthetic part images: the diversity loss separates the maps, the cropping net and the shared CNN run,
the part losses reach the attention, and the knob is frozen from validation. Whether the semantic guidance beats the
detached ablation is a many-seed measurement (benchmarks/sgma_guidance.py), not a test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _spaces import space_defaults

from zsltune.data.image_source import load_xlsa17_image_stage
from zsltune.data.sources import StageRequest
from zsltune.layers.attention_maps import map_overlap
from zsltune.methods import get_method

pytestmark = pytest.mark.usefixtures("one_thread")

#: small and quick: a narrower CNN and smaller batches than the space's defaults
SMALL = {**space_defaults("sgma"), "width": 16, "batch_size": 16, "warmup_steps": 60, "part_size": 24}


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any) -> Any:
    """Part images (48x48) around a synthetic class side of 20 classes; the val stage."""
    from zsltune.data import synth_fresh
    from zsltune.data.synth_images import synth_images

    root = tmp_path_factory.mktemp("sgma")
    monkeypatch_module.setenv("ZSLTUNE_CACHE", str(root / "cache"))
    side = synth_fresh(root / "SIDE", classes=20, attributes=32, images=40, feature_dim=8, seed=4)
    out = synth_images(root / "PARTS", kind="parts", per_class=24, size=48, like=side, seed=4)
    return load_xlsa17_image_stage(StageRequest(dataset=str(out), stage="val")), out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def train(stage: Any, steps: int, **config: Any) -> Any:
    t = get_method("sgma")({**SMALL, **config}, stage, seed=0, max_epochs=1, iteration_steps=steps)
    t.fit_epoch()
    return t


@pytest.mark.parametrize("crop_method", ["default", "net", "centre", "detached"])
def test_part_losses_reach_the_attention(parts: Any, crop_method: str) -> None:
    """The part branches' semantic losses alone send gradient to the attention heads, except in the detached
    ablation, where they send none."""
    stage, _ = parts
    config = {**SMALL, "warmup_steps": 0, "attention_init": "random"}
    if crop_method != "default":
        config["crop_method"] = crop_method
    t = get_method("sgma")(config, stage, seed=0)
    x, y = t.images(np.arange(16), train=True), torch.as_tensor(t.labels[:16])
    zs, _ = t.model(x)
    loss = sum(sum(t.branch_losses(z, y)) for z in zs[1:])  # the K part branches only
    loss.backward()
    assert t.model.attention is not None
    grads = [p.grad for p in t.model.attention.parameters()]
    norm = sum(float(g.norm()) for g in grads if g is not None)
    if crop_method == "detached":
        assert norm == 0.0, norm
    else:
        assert norm > 1e-6, norm
        assert t.model.crop_method == ("net" if crop_method == "default" else crop_method)


def test_diversity_loss_separates_the_maps(parts: Any) -> None:
    stage, _ = parts
    overlap = {}
    for w in (0.0, 3.0):
        # detached: the diversity loss alone against random heads (with the part losses pulling both maps onto the
        # most discriminative region, 60 steps leave the overlap at 0.997 for either weight; cluster-initialised
        # heads start apart: overlap 0.00-0.01 after 300 steps with or without it)
        t = train(stage, 60, diversity_weight=w, attention_init="random", warmup_steps=0, crop_method="detached")
        cache, _ = t.cached_split("unseen")
        _, maps = t.forward_cached(cache.pixels)
        overlap[w] = map_overlap(torch.from_numpy(maps))
    assert overlap[3.0] < overlap[0.0], overlap


@pytest.mark.parametrize(
    "config", [{"crop_method": "centre"}, {"crop_method": "detached"}, {"share_cnn": True, "K": 1}, {"K": 0}]
)
def test_variants_train_and_report(parts: Any, config: dict) -> None:
    stage, _ = parts
    t = train(stage, 4, warmup_steps=2, **config)
    out = t.evaluate()
    assert np.isfinite(list(out.values())).all() and 0 <= out["H_cal"] <= 1
    n_cnn = 1 + (config.get("K", 2) > 0 and not config.get("share_cnn", False))
    assert (t.model.parts is not None) == (n_cnn == 2)


def test_test_stage_applies_the_frozen_gamma(parts: Any) -> None:
    stage, _ = parts
    t = get_method("sgma")({**SMALL, "K": 0}, stage, seed=0, knobs={"gamma": 0.123})
    out = t.evaluate()
    assert out["gamma"] == pytest.approx(0.123) and "oracle_gamma" in out
