"""TL-VSC: the generator learns the class-conditional feature means, the ablation rows switch the right parts on,
checkpoints hold every network and optimiser, and a collapsed generator ends the trial."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from _spaces import space_defaults

from zsltune.data import load_stage, synth_fresh
from zsltune.methods import TrialDiverged, get_method

SMALL = {**space_defaults("tlvsc"), "hidden": 64, "batch_size": 32, "n_syn": 20, "cls_epochs": 3, "pre_epochs": 5}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory):
    out = synth_fresh(
        tmp_path_factory.mktemp("tlvsc") / "T", seed=1, classes=12, attributes=16, images=1200, feature_dim=32,
        difficulty=0.5,
    )  # fmt: skip
    return load_stage(str(out), "val")


pytestmark = pytest.mark.usefixtures("one_thread")


def class_mean_gap(t) -> float:
    """Mean over seen classes of ‖mean generated feature - mean real training feature‖."""
    with torch.no_grad():
        gaps = []
        for k in range(t.data.n_seen):
            real = t.x_train[t.y_train == k].mean(0)
            z = torch.randn(200, t.model.d_z, generator=torch.Generator().manual_seed(k))
            fake = t.model.generate(t.att[k].expand(200, -1), z).mean(0)
            gaps.append(float((real - fake).norm()))
    return sum(gaps) / len(gaps)


def test_generated_class_means_approach_the_real_ones(stage) -> None:
    t = get_method("tlvsc")(SMALL, stage, seed=0, max_epochs=6, iteration_steps=100)
    before = class_mean_gap(t)  # a ReLU generator starts at 0, already nearer the data than a sigmoid's 0.5
    for _ in range(6):
        losses = t.fit_epoch()
    after = class_mean_gap(t)
    assert after < 0.7 * before, (before, after)
    assert {"w1", "gp1", "w2", "gp2", "w3", "gp3", "wass", "cls", "spread"} <= set(losses)  # health, per iteration
    assert t.evaluate()["H_cal"] > 0


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory):
    """A small calibrated twin (the demo's generator row: unseen classes borrow their look from seen ones), val stage:
    12 seen + 4 unseen classes, 64-d features."""
    from zsltune.data.synth import TWINS

    out = synth_fresh(
        tmp_path_factory.mktemp("tlvsc") / "TWIN", seed=3, classes=20, attributes=32, images=2000, feature_dim=64,
        difficulty=0.7, params=TWINS["demo"],
    )  # fmt: skip
    return load_stage(str(out), "val")


def test_space_defaults_generate_on_the_real_manifold_and_beat_a_crude_generator(twin) -> None:
    """After 750 generator iterations at the space's defaults: generated seen-class means nearest their own real
    mean (>= 90% of classes), within-class spread 0.5-2x the real one, and the recognition softmax's uncalibrated H
    above what the same softmax gets from a crude generator (ridge class means + real seen residuals)."""
    from zsltune.baseline.clswgan import crude_unseen_features
    from zsltune.methods import Trainer
    from zsltune.space import load_space

    config = load_space("tlvsc").defaults(twin.dataset)
    t = get_method("tlvsc")(config, twin, seed=0, max_epochs=3, iteration_steps=250)
    for _ in range(3):
        t.fit_epoch()
    got = t.evaluate()
    assert got["gen_own_nearest"] >= 0.9 and 0.5 <= got["gen_spread"] <= 2.0, got
    t.fit_classifier(crude_unseen_features(twin, int(config["n_syn"]), seed=0))
    crude = Trainer.evaluate(t)  # the same softmax, fitted on the crude generator's unseen features
    assert got["H"] > crude["H"] + 0.05, (got["H"], crude["H"])


@pytest.mark.parametrize("row", ["gen", "gen+inf", "gen+inf+feat", "full"])
def test_ablation_rows_switch_their_parts(stage, row: str) -> None:
    t = get_method("tlvsc")({**SMALL, "ablation": row}, stage, seed=0, max_epochs=2, iteration_steps=5)
    d2 = [p.detach().clone() for p in t.model.D2.parameters()]
    inf = [p.detach().clone() for p in t.model.I_out.parameters()]
    losses = t.fit_epoch()
    moved = lambda before, mod: any(not torch.equal(a, b) for a, b in zip(before, mod.parameters(), strict=True))  # noqa: E731
    assert moved(d2, t.model.D2) == (row != "gen") and moved(inf, t.model.I_out) == (row != "gen")
    assert ("wass" in losses) == (row == "full") and ("w3" in losses) == (row != "gen")
    width = stage.feature_dim + (SMALL["hidden"] + stage.attribute_dim if row in ("gen+inf+feat", "full") else 0)
    assert t.classifier.in_features == width


def test_checkpoint_restores_every_network_and_optimiser(stage) -> None:
    cls = get_method("tlvsc")
    a = cls(SMALL, stage, seed=0, max_epochs=3, iteration_steps=10)
    a.fit_epoch()
    a.evaluate()
    assert {"model", "opt_gi", "opt_d", "c_pre", "classifier"} <= set(a.stateful())
    state = copy.deepcopy(a.state_dict())
    b = cls(SMALL, stage, seed=7, max_epochs=3, iteration_steps=10)
    b.load_state_dict(state)
    for name in ("model", "c_pre", "classifier"):
        for (k, p), (_, q) in zip(
            getattr(a, name).state_dict().items(), getattr(b, name).state_dict().items(), strict=True
        ):
            assert torch.equal(p, q), (name, k)  # parameters and buffers (the class-centre memory)
    for name in ("opt_gi", "opt_d"):
        sa, sb = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert a.fit_epoch() == b.fit_epoch()
    assert a.evaluate() == b.evaluate()


def test_a_collapsed_generator_ends_the_trial(stage) -> None:
    t = get_method("tlvsc")(SMALL, stage, seed=0, max_epochs=3, iteration_steps=5)
    t.fit_epoch()
    t.peak_spread = 0.5  # it had learned the data's spread ...
    with torch.no_grad():  # ... then every output saturates: one point whatever z and h
        last = t.model.G[2]
        last.weight.zero_()
        last.bias.fill_(-30.0)
    for p in t.model.G.parameters():
        p.requires_grad_(False)
    with pytest.raises(TrialDiverged, match="generator collapsed"):
        t.fit_epoch()


def test_the_recognition_classifier_never_sees_an_evaluation_image(stage) -> None:
    import dataclasses

    moved = dataclasses.replace(stage, x_seen=stage.x_seen * 3 + 1, x_unseen=stage.x_unseen * -2)
    a = get_method("tlvsc")(SMALL, stage, seed=0, max_epochs=2, iteration_steps=5)
    b = get_method("tlvsc")(SMALL, moved, seed=0, max_epochs=2, iteration_steps=5)
    a.fit_epoch(), b.fit_epoch()
    a.fit_classifier(), b.fit_classifier()
    for p, q in zip(a.classifier.parameters(), b.classifier.parameters(), strict=True):
        assert torch.equal(p, q)


def test_default_space_fits_the_declarations() -> None:
    from zsltune.space import load_space

    space = load_space("tlvsc")
    assert space.metric == "H" and space.iteration_steps  # the paper's metric, once the generator earns it
    assert {p.name for p in space.params} >= {"ablation", "beta", "alpha1", "gamma_wass", "alpha2", "lambda_gp"}
    assert Path(str(space.path)).name == "tlvsc.yaml"
