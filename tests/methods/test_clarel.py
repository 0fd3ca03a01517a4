"""CLAREL: the loss against a hand computation, the α sweep, the optimiser details, learning, and a real sweep."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _spaces import space_defaults
from torch import nn

from zsltune import metrics
from zsltune.data import load_stage, synth_fresh
from zsltune.errors import ConfigError, DataError
from zsltune.methods import get_method
from zsltune.methods.clarel import ALPHA_GRID, CLAREL, alpha_sweep, euclidean, retrieval_losses
from zsltune.methods.schedules import step_decay

# tiny networks; the paper's sentences per step, prototype images and raw features (what these unit tests check)
TINY = {
    **space_defaults("clarel"),
    "embed_dim": 32, "lstm_units": 16, "filters": 8, "word_dim": 16, "sentences": 10, "proto_images": 100,
    "feat_norm": "none",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def captioned_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes, 64-d features at difficulty 0.5 (seen classes separable), synthetic captions."""
    out = tmp_path_factory.mktemp("clarel") / "CAP"
    return synth_fresh(out, classes=10, attributes=16, images=500, feature_dim=64, difficulty=0.5, captions=True)


@pytest.fixture(scope="module")
def stage(captioned_dir: Path):
    return load_stage(str(captioned_dir), "val", text=True)


def test_get_method_finds_clarel() -> None:
    assert get_method("clarel") is CLAREL and CLAREL.data_source == "features+text" and CLAREL.metric == "H_alpha"


# ---- the loss ---------------------------------------------------------------------------------------------------
ZV = [[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]
ZT = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]


def hand_d(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) + 1e-6)


def hand_ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def hand_retrieval() -> tuple[float, float]:
    """Algorithm 1 of the paper, term by term: J_TR = 1/B Σ_i [d(v_i, t_i) + log Σ_j exp(-d(v_i, t_j))], J_IR with
    the roles of image and text exchanged."""
    b = len(ZV)
    j_tr = sum(
        hand_d(ZV[i], ZT[i]) + math.log(sum(math.exp(-hand_d(ZV[i], ZT[j])) for j in range(b))) for i in range(b)
    )
    j_ir = sum(
        hand_d(ZV[i], ZT[i]) + math.log(sum(math.exp(-hand_d(ZT[i], ZV[j])) for j in range(b))) for i in range(b)
    )
    return j_tr / b, j_ir / b


def test_retrieval_losses_match_a_hand_computation_on_a_3x3_batch() -> None:
    j_tr, j_ir = retrieval_losses(torch.tensor(ZV), torch.tensor(ZT))
    want_tr, want_ir = hand_retrieval()
    assert j_tr.item() == pytest.approx(want_tr, rel=1e-6) and j_ir.item() == pytest.approx(want_ir, rel=1e-6)
    assert want_tr != pytest.approx(want_ir)  # the batch tells the two directions apart
    d = euclidean(torch.tensor(ZV), torch.tensor(ZT))
    assert d[1, 2].item() == pytest.approx(3.0, rel=1e-6) and d[0, 0].item() == pytest.approx(1e-3, rel=1e-3)


class Fixed(nn.Module):
    def __init__(self, out: list[list[float]]) -> None:
        super().__init__()
        self.out = torch.tensor(out)

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.out


def test_total_loss_mixes_the_terms_with_lambda_and_kappa(stage) -> None:
    lam, kappa = 0.8, 0.3
    tr = CLAREL({**TINY, "lambda": lam, "kappa": kappa}, stage)
    tr.model.image, tr.model.text = nn.Identity(), Fixed(ZT)
    tr.model.head_image, tr.model.head_text = nn.Identity(), nn.Identity()  # logits = the 2-d embeddings
    y = [1, 0, 1]
    terms = tr.losses(torch.tensor(ZV), torch.zeros(3, 1, 4, dtype=torch.int32), torch.tensor(y))
    j_tr, j_ir = hand_retrieval()
    j_ic = sum(hand_ce(ZV[i], y[i]) for i in range(3)) / 3
    j_tc = sum(hand_ce(ZT[i], y[i]) for i in range(3)) / 3
    want = (1 - kappa) * (lam * j_tr + (1 - lam) * j_ir) + kappa / 2 * (j_ic + j_tc)
    assert terms["loss"].item() == pytest.approx(want, rel=1e-6)
    assert terms["J_IC"].item() == pytest.approx(j_ic, rel=1e-6) and terms["J_TC"].item() == pytest.approx(j_tc)


# ---- metric rescaling -------------------------------------------------------------------------------------------
def test_alpha_sweep_moves_accuracy_from_seen_to_unseen_monotonically() -> None:
    rng = np.random.default_rng(0)
    n_seen, c = 4, 7
    d_s = rng.uniform(1, 2, (300, c))
    d_s[np.arange(300), ys := rng.integers(0, n_seen, 300)] -= 0.3  # seen images: their class is often nearest
    d_u = rng.uniform(1, 2, (200, c))
    d_u[:, :n_seen] -= 0.25  # ... and unseen images are pulled to seen prototypes: the GZSL bias
    d_u[np.arange(200), yu := rng.integers(n_seen, c, 200)] -= 0.3
    sw = alpha_sweep(d_s, ys, d_u, yu, n_seen=n_seen, alphas=ALPHA_GRID)
    assert (np.diff(sw["U"]) >= 0).all() and (np.diff(sw["S"]) <= 0).all()
    assert sw["U"][-1] > sw["U"][0] + 0.25 and sw["S"][-1] < sw["S"][0] - 0.25
    g = metrics.gzsl(-d_s, ys, -d_u, yu, seen_classes=np.arange(n_seen), unseen_classes=np.arange(n_seen, c))
    assert (sw["U"][0], sw["S"][0], sw["H"][0]) == pytest.approx((g["U"], g["S"], g["H"]))  # α = 0: plain GZSL
    best = int(np.argmax(sw["H"]))
    assert 0 < best < len(ALPHA_GRID) - 1 and sw["H"][best] > sw["H"][0] + 0.04  # an inverted U, as in Fig. 2
    assert sw["H"][best] > sw["H"][-1] + 0.1


def test_evaluate_reports_the_h_optimal_alpha(stage) -> None:
    tr = CLAREL(TINY, stage, max_epochs=3)
    tr.fit_epoch()
    r = tr.evaluate()
    protos, _ = tr.prototypes()
    d_s = euclidean(tr.embed_images(tr.x_seen), protos).numpy()
    d_u = euclidean(tr.embed_images(tr.x_unseen), protos).numpy()
    sw = alpha_sweep(d_s, stage.y_seen, d_u, stage.y_unseen, n_seen=stage.n_seen, alphas=ALPHA_GRID)
    assert r["alpha"] == ALPHA_GRID[np.argmax(sw["H"])] and r["H_alpha"] == pytest.approx(sw["H"].max())
    assert r["H_alpha"] >= r["H"]
    assert {"recall@1", "recall@5", "recall@10", "recall_instance@1"} <= set(r)
    assert not any(k.startswith("oracle_") for k in r)  # validation: the knobs are chosen here
    tr.frozen["alpha"] = 0.0  # a frozen α (chosen on val) is applied as it is; the best one here is an oracle
    r0 = tr.evaluate()
    assert r0["alpha"] == 0.0 and (r0["H_alpha"], r0["U_alpha"], r0["S_alpha"]) == (r0["H"], r0["U"], r0["S"])
    assert r0["oracle_alpha"] == r["alpha"] and r0["oracle_H_alpha"] == pytest.approx(r["H_alpha"])


def test_unseen_prototypes_come_from_captions_never_images(stage) -> None:
    tr = CLAREL(TINY, stage)
    before, _ = tr.prototypes()
    tr.x_unseen = torch.randn_like(tr.x_unseen)  # unseen images do not enter the prototypes
    after, _ = tr.prototypes()
    assert torch.equal(before, after)
    rows = tr.unseen_rows.numpy()
    np.testing.assert_array_equal(tr.proto_tokens[tr.proto_unseen].numpy(), stage.tokens_unseen[rows])
    counts = np.bincount(tr.proto_class.numpy(), minlength=stage.num_classes)
    assert (counts == np.minimum(np.bincount(np.concatenate([stage.y_train, stage.y_unseen])), 100)).all()


# ---- optimiser details ------------------------------------------------------------------------------------------
def test_step_schedule_is_scaled_to_the_epoch_budget(stage) -> None:
    tr = CLAREL({**TINY, "lr": 0.2}, stage, max_epochs=6)
    assert [0.2 * step_decay(p) for p in (0.0, 0.33, 1 / 3, 0.66, 2 / 3, 1.0)] == pytest.approx(
        [0.2, 0.2, 0.02, 0.02, 0.002, 0.002]
    )
    for _ in range(3):
        tr.fit_epoch()
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)  # epoch 3 of 6: after the first decay


def test_each_gradient_tensor_is_clipped_and_l2_covers_conv_and_bn_only(stage) -> None:
    tr = CLAREL({**TINY, "clip": 0.01}, stage)
    idx = torch.arange(32)
    tr.losses(tr.x_train[idx], tr.tok_train[idx], tr.y_train[idx])["loss"].backward()
    assert max(p.grad.norm().item() for p in tr.params) > 0.01
    tr.clip_()
    assert all(p.grad.norm().item() <= 0.01 * (1 + 1e-5) for p in tr.params)
    decayed, plain = tr.optimizer.param_groups
    assert decayed["weight_decay"] == 1e-3 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(p) for p in tr.model.decayed()}
    assert any(p is tr.model.text.words.weight for p in plain["params"])
    assert any(p is tr.model.image[1].weight for p in plain["params"])


def test_frozen_word_vectors_are_used_when_given(stage) -> None:
    vec = np.random.default_rng(0).standard_normal((stage.vocab_size, 12)).astype(np.float32)
    vec[0] = 0
    tr = CLAREL(TINY, dataclasses.replace(stage, word_vectors=vec))
    w = tr.model.text.words.weight
    assert not w.requires_grad and w.shape == (stage.vocab_size, 12)
    tr.fit_epoch()
    np.testing.assert_array_equal(w.detach().numpy(), vec)


def test_bad_config_is_a_one_line_error(stage) -> None:
    with pytest.raises(ConfigError, match=r"clarel: kappa must be a number in \[0, 1\], got 1.5"):
        CLAREL({"kappa": 1.5}, stage)
    with pytest.raises(ConfigError, match="clarel: filters must be an integer >= 1, got 0"):
        CLAREL({"filters": 0}, stage)


def test_no_silent_fallback_to_class_captions(captioned_dir: Path) -> None:
    bare = load_stage(str(captioned_dir), "val")  # loaded without per-image captions
    with pytest.raises(DataError, match=r"clarel: the val stage of .* without per-image captions.*captions=class"):
        CLAREL(TINY, bare)
    assert CLAREL.source({}).name == "features+text" and CLAREL.source({"captions": "class"}).name == "features"
    tr = CLAREL({**TINY, "captions": "class"}, bare)  # asked for explicitly: one pseudo-caption per class
    assert tr.tok_train.shape[1] == 1


# ---- learning ---------------------------------------------------------------------------------------------------
def test_learns_on_tiny_synthetic_captions(stage) -> None:
    # ~70 SGD steps instead of the paper's 150k: a higher lr and looser clipping than the paper's get going sooner
    tr = CLAREL({**TINY, "lr": 0.3, "clip": 5.0}, stage, max_epochs=15, seed=0)
    init = tr.evaluate()
    losses = [tr.fit_epoch() for _ in range(15)]
    end = tr.evaluate()
    assert losses[-1]["J_TR"] < losses[0]["J_TR"] - 0.2 and losses[-1]["J_TC"] < losses[0]["J_TC"] - 0.3
    assert end["H"] > init["H"] + 0.1 and end["H_alpha"] > init["H_alpha"] + 0.1, (init, end)
    assert end["S"] > init["S"] + 0.1 and end["U"] > init["U"] + 0.1, (init, end)
    assert end["recall@1"] > init["recall@1"], (init, end)  # image -> caption of its (unseen) class


# ---- a real sweep -----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_zsltune_run_clarel_end_to_end(captioned_dir: Path, tmp_path: Path) -> None:
    import ray

    from zsltune.sweep import SweepOptions, run_sweep

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        res = run_sweep(
            SweepOptions(
                space="clarel",
                dataset=str(captioned_dir),
                storage=str(tmp_path),
                name="clarel-e2e",
                num_samples=2,
                max_epochs=2,
                iteration_steps=0,  # epochs of the tiny data (a few steps), not the space's 150-step iterations
                scheduler="fifo",
                quiet=True,
                overrides=TINY,
            )
        )
        from zsltune.analysis.rerun import rerun

        out = rerun(res.sweep_dir, top=1, seeds=2, quiet=True)  # in the same Ray session: joins it
    finally:
        ray.shutdown()
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    # the rerun trains on the per-image captions as the search did (a CLAREL trainer without them raises), and
    # applies the α and γ chosen on validation at the selected epoch; test-picked values only as oracle_*
    f, sel = out.frame, out.plan.selection[0]
    assert len(f) == 2 and (f["status"] == "completed").all() and (f["stage"] == "test").all()
    assert (f["source"] == "features+text").all() and (trials["source"] == "features+text").all()
    at = epochs[(epochs["trial_id"] == sel.trial_id) & (epochs["epoch"] == sel.epochs)].iloc[0]
    assert sel.knobs == {"alpha": pytest.approx(at["alpha"]), "gamma": pytest.approx(at["gamma"])}
    for knob, metric in (("alpha", "H_alpha"), ("gamma", "H_cal")):
        assert (f[knob] == sel.knobs[knob]).all() and (f[f"val_knob/{knob}"] == sel.knobs[knob]).all()
        assert f[f"oracle_{knob}"].notna().all() and (f[f"oracle_{metric}"] >= f[metric] - 1e-12).all()
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and (trials["method"] == "clarel").all()
    assert len(epochs) == 4 and (trials["epochs"] == 2).all()
    for col in ("H", "H_alpha", "alpha", "gamma", "recall@1", "loss/J_TR", "loss/J_IR", "loss/L2"):
        assert col in epochs and epochs[col].notna().all(), col
    assert "best/H_alpha" in trials and (trials["config/lambda"] == 0.5).sum() >= 1  # paper defaults ran first
