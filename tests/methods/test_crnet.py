"""CRnet trainer: factorised relation == naive concatenation, learning, checkpoint resume, config handling."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _spaces import space_defaults

from zsltune.data import build_stage, load_dataset, synth_fresh
from zsltune.data.protocol import StageData
from zsltune.errors import ConfigError
from zsltune.methods import GZSL_KEYS, get_method
from zsltune.methods.crnet import CRnet, CRnetNet, crnet_loss
from zsltune.space import load_space

# small and easy (difficulty 0.3): the relation module leaves its constant-output plateau within ~300 steps here,
# while at difficulty 1 it needs thousands (see the module docstring of zsltune/methods/crnet.py)
TINY = {"classes": 20, "attributes": 16, "images": 1000, "feature_dim": 64, "difficulty": 0.3}
SMALL = {**space_defaults("crnet"), "hidden": 64, "batch_size": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> StageData:
    out = synth_fresh(tmp_path_factory.mktemp("crnet") / "TINY", seed=0, **TINY)
    return build_stage(load_dataset(out), "val")


def _net(k: int = 3, p: int = 16, d: int = 24, h: int = 32, seed: int = 0) -> CRnetNet:
    torch.manual_seed(seed)
    return CRnetNet(torch.rand(k, p), d, h).double()


def test_registered() -> None:
    assert get_method("crnet") is CRnet


def test_factorised_relation_equals_naive_forward() -> None:
    net = _net()
    v = torch.rand(7, 24, dtype=torch.float64)  # (B, D)
    anchors = net.anchors(torch.rand(5, 16, dtype=torch.float64))  # (C, D)
    fact, naive = net.relation(v, anchors), net.relation(v, anchors, naive=True)
    assert fact.shape == naive.shape == (7, 5)
    torch.testing.assert_close(fact, naive, rtol=1e-12, atol=1e-12)
    # float32 too, at float32 tolerance
    net32 = copy.deepcopy(net).float()
    torch.testing.assert_close(
        net32.relation(v.float(), anchors.float()),
        net32.relation(v.float(), anchors.float(), naive=True),
        rtol=1e-5,
        atol=1e-6,
    )


def test_experts_are_batched_sum_of_per_expert_layers() -> None:
    net = _net(k=4)
    att = torch.rand(6, 16, dtype=torch.float64)  # (C, P)
    loop = sum(torch.relu((att - net.centres[k]) @ net.expert_w[k] + net.expert_b[k]) for k in range(4))
    torch.testing.assert_close(net.anchors(att), loop)


@pytest.mark.parametrize("pairs", ["batch", "all"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_factorised_loss_gradients_equal_naive(pairs: str, reduction: str) -> None:
    torch.manual_seed(1)
    att = torch.rand(9, 16, dtype=torch.float64)  # (C, P): 6 seen + 3 unseen
    v = torch.rand(11, 24, dtype=torch.float64)  # (B, D)
    y = torch.randint(0, 6, (11,))
    grads, losses = [], []
    for naive in (False, True):
        net = _net()
        mse = crnet_loss(net, att, v, y, n_seen=6, pairs=pairs, reduction=reduction, naive=naive)
        mse.backward()
        losses.append(mse.detach())
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=1e-12)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert grads[0][name].abs().sum() > 0, name  # every parameter is reached
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-12, msg=name)


def test_weight_decay_is_the_regulariser_gradient() -> None:
    """Adam(weight_decay=2α, 2β on weights) == Adam on loss1 + α‖w_f‖² + β‖w_g‖² back-propagated (Eq. 10)."""
    alpha, beta = 3e-2, 5e-2
    torch.manual_seed(2)
    att, v, y = torch.rand(6, 16, dtype=torch.float64), torch.rand(8, 24, dtype=torch.float64), torch.arange(8) % 6
    a, b = _net(), _net()
    opt_a = a.make_optimizer(1e-2, alpha, beta)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
    for _ in range(3):
        loss_a = crnet_loss(a, att, v, y, n_seen=6)
        reg = alpha * b.expert_w.square().sum() + beta * sum(w.square().sum() for w in (b.w_a, b.w_x, b.w2))
        loss_b = crnet_loss(b, att, v, y, n_seen=6) + reg
        torch.testing.assert_close(loss_a + a.regulariser(alpha, beta), loss_b)
        for opt, loss in ((opt_a, loss_a), (opt_b, loss_b)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-9, atol=1e-12, msg=name)


def test_trainer_loss_naive_path_matches(stage: StageData) -> None:
    t = CRnet(SMALL, stage, seed=0)
    idx = torch.arange(16)
    fact, naive = t.loss(t.x_train[idx], t.y_train[idx]), t.loss(t.x_train[idx], t.y_train[idx], naive=True)
    assert fact.shape == ()
    torch.testing.assert_close(fact, naive, rtol=1e-5, atol=1e-6)


def test_training_features_stay_the_shared_stage_and_batches_are_standardised(stage: StageData) -> None:
    """N trials on a node share one copy of the stage: the trainer holds the stage's training features themselves
    (no standardised copy of all of them) and standardises each batch with the training images' statistics."""
    t = CRnet({**SMALL, "feat_norm": "std"}, stage, seed=0)
    assert np.shares_memory(t.x_train.numpy(), stage.x_train)
    x = t.prep_features(t.x_train).numpy()  # every training row through the per-batch transform
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(0)[stage.x_train.std(0) > 1e-6], 1.0, rtol=1e-3)


def test_scores_chunked_match_unchunked(stage: StageData, monkeypatch: pytest.MonkeyPatch) -> None:
    t = CRnet(SMALL, stage, seed=0)
    x = t.to_device(stage.x_unseen[:50]).float()
    full = t.scores(x)
    assert full.shape == (50, stage.num_classes)
    monkeypatch.setattr("zsltune.methods.crnet.SCORE_CHUNK_ELEMENTS", 1)  # one image per chunk
    torch.testing.assert_close(t.scores(x), full)


def test_trainer_learns(stage: StageData) -> None:
    t = CRnet({**SMALL, "hidden": 256, "lr": 1e-3}, stage, seed=0)
    before = t.evaluate()
    losses = [t.fit_epoch() for _ in range(20)]
    after = t.evaluate()
    assert losses[-1]["mse"] < 0.5 * losses[0]["mse"], losses
    assert after["H"] > before["H"] + 0.2, (before, after)
    assert after["zsl_top1"] > before["zsl_top1"] + 0.25, (before, after)


def test_checkpoint_round_trip_resumes_bit_identically(stage: StageData) -> None:
    a = CRnet(SMALL, stage, seed=3)
    a.fit_epoch()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # a real checkpoint: no live references into a's tensors
    buf.seek(0)
    b = CRnet(SMALL, stage, seed=99)  # different seed: everything must come from the checkpoint
    b.load_state_dict(torch.load(buf))
    assert b.epoch == a.epoch == 1
    torch.testing.assert_close(b.model.centres, a.model.centres, rtol=0, atol=0)
    la, lb = a.fit_epoch(), b.fit_epoch()
    assert la == lb
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert a.evaluate() == b.evaluate()


def test_slimmed_checkpoint_keeps_the_model_and_drops_the_optimiser(stage: StageData, tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    from zsltune.sweep.callbacks import slim_checkpoint
    from zsltune.sweep.trial import CHECKPOINT_FILE

    a = CRnet(SMALL, stage, seed=3)
    a.fit_epoch()
    (d := tmp_path / "checkpoint_000000").mkdir()
    torch.save({"trainer": a.state_dict(), "device_s": 1.0, "restores": 0}, d / CHECKPOINT_FILE)
    full = (d / CHECKPOINT_FILE).stat().st_size
    assert slim_checkpoint(pafs.LocalFileSystem(), str(d))
    assert not slim_checkpoint(pafs.LocalFileSystem(), str(d))  # already slim: left as it is
    assert sorted(p.name for p in d.iterdir()) == [CHECKPOINT_FILE]  # the temporary file was moved over it
    state = torch.load(d / CHECKPOINT_FILE, weights_only=False)
    assert set(state["trainer"]["state"]) == {"model"} and (d / CHECKPOINT_FILE).stat().st_size < 0.6 * full
    b = CRnet(SMALL, stage, seed=99)
    b.load_state_dict(state["trainer"])  # weights only: the optimiser starts afresh, the model is a's
    assert b.epoch == 1 and b.evaluate() == a.evaluate()
    with pytest.raises(ConfigError, match="no state for 'optimizer'"):  # a full checkpoint still needs all of it
        b.load_state_dict({**state["trainer"], "weights_only": False})


def test_k_larger_than_seen_classes_is_clamped(stage: StageData) -> None:
    t = CRnet({**SMALL, "K": 500}, stage, seed=0)
    assert t.k == stage.n_seen
    assert tuple(t.model.centres.shape) == (stage.n_seen, stage.attribute_dim)
    assert tuple(t.model.expert_w.shape) == (stage.n_seen, stage.attribute_dim, stage.feature_dim)


def test_field_centres_come_from_seen_classes_only(stage: StageData) -> None:
    t = CRnet({**SMALL, "K": stage.n_seen, "att_norm": "raw"}, stage, seed=0)
    centres = t.model.centres.numpy()  # (K, P) with K = M: every seen class is its own field
    dist = np.linalg.norm(stage.attributes[:, None] - centres[None], axis=2)  # (C, K)
    assert dist[: stage.n_seen].min(1).max() < 1e-5  # each seen row is a centre
    assert dist[stage.n_seen :].min(1).min() > 1e-3  # no unseen row is


@pytest.mark.parametrize(
    "config",
    [
        {"nope": 1},
        {"K": 0},
        {"att_norm": "minmax"},
        {"pairs": "some"},
        {"reduction": "max"},
        {"lr": 0.0},
        {"alpha": float("nan")},
        {"hidden": 2.5},
    ],
)
def test_bad_config_raises_config_error(stage: StageData, config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CRnet(config, stage)


def test_unknown_hyperparameter_message_names_it(stage: StageData) -> None:
    with pytest.raises(ConfigError, match="unknown hyperparameter 'learning_rate'"):
        CRnet({"learning_rate": 1e-3}, stage)


def test_use_beta_false_drops_relation_regulariser(stage: StageData) -> None:
    assert CRnet({**SMALL, "use_beta": False, "beta": 1.0}, stage).beta == 0.0
    assert CRnet({**SMALL, "beta": 0.5}, stage).beta == 0.5


def test_evaluate_returns_gzsl_keys_as_finite_floats(stage: StageData) -> None:
    t = CRnet({**SMALL, "pairs": "all", "reduction": "sum"}, stage, seed=0)
    losses = t.fit_epoch()
    assert set(losses) == {"loss", "mse"} and all(isinstance(v, float) for v in losses.values())
    r = t.evaluate()
    assert tuple(r) == (*GZSL_KEYS, "gamma")  # the metrics, then the knob chosen on these images
    assert all(isinstance(v, float) and math.isfinite(v) for v in r.values()), r


def test_search_space_matches_trainer() -> None:
    space = load_space("crnet")
    assert space.method == "crnet" and space.metric == "H" and space.mode == "max"
    assert set(space.names) <= set(CRnet.all_hparams())
    awa2, cub, sun = space.defaults("AWA2"), space.defaults("CUB"), space.defaults("SUN")
    for ds, got in (("AWA2", awa2), ("CUB", cub), ("SUN", sun)):  # the CPU space keeps Table 2's per-dataset values
        paper = CRnet.default_config(ds)
        assert {k: got[k] for k in ("K", "alpha", "use_beta")} == {k: paper[k] for k in ("K", "alpha", "use_beta")}
    assert CRnet.default_config("AWA2")["lr"] == 1e-5 and CRnet.default_config("AWA2")["hidden"] == 2048  # Sec. 4.1
    assert (cub["K"], cub["use_beta"], "beta" in cub) == (4, False, False)  # Table 2
    assert (sun["K"], sun["alpha"], sun["use_beta"]) == (12, 1e-6, False)


def test_space_defaults_build_a_trainer(stage: StageData) -> None:
    cub = load_space(Path(__file__).resolve().parents[2] / "search_spaces" / "crnet.yaml").defaults("CUB")
    config = {**SMALL, **cub}  # the CPU defaults of the demo, CUB's per-dataset ones over them
    t = CRnet(config, stage)
    assert t.k == 4 and t.beta == 0.0
