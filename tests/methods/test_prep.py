"""Preprocessing fitted on the training split only, and iterations counted in optimisation steps."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from _spaces import space_defaults

from zsltune.data import build_stage, load_dataset
from zsltune.methods import get_method
from zsltune.methods.prep import feature_stats, normalise_attributes

SMALL = {"hidden": 32, "batch_size": 32}
CRNET = {**space_defaults("crnet"), **SMALL}


@pytest.fixture(scope="module")
def stage(tiny_dataset_dir: Path):
    return build_stage(load_dataset(tiny_dataset_dir), "val")


def test_feature_statistics_come_from_training_rows_only(stage) -> None:
    shift, scale = feature_stats(stage.x_train, "std")
    np.testing.assert_allclose(shift, stage.x_train.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scale, stage.x_train.std(0), rtol=1e-5, atol=1e-6)
    # evaluation images moved far away: the fitted transform (and so every training step) does not move
    moved = dataclasses.replace(stage, x_seen=stage.x_seen * 50 + 7, x_unseen=stage.x_unseen * -30 + 3)
    for kind in ("std", "l2", "minmax"):
        a = get_method("crnet")({**CRNET, "feat_norm": kind}, stage, seed=0)
        b = get_method("crnet")({**CRNET, "feat_norm": kind}, moved, seed=0)
        for ta, tb in zip(a._feat[1:], b._feat[1:], strict=True):
            assert torch.equal(ta, tb)
        assert torch.equal(a.prep_features(a.x_train), b.prep_features(b.x_train)) and a.fit_epoch() == b.fit_epoch()
    lo, span = feature_stats(stage.x_train, "minmax")
    z = (stage.x_train - lo) / span  # the training features span [0, 1] in every varying dimension
    assert z.min() >= 0 and z.max() <= 1 + 1e-6 and np.allclose(z.max(0)[stage.x_train.std(0) > 0], 1, atol=1e-5)
    std = get_method("crnet")({**CRNET, "feat_norm": "std"}, stage, seed=0)
    z = std.prep_features(std.x_train)  # training features as each batch sees them: mean 0, sd 1 per dimension
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0, unbiased=False) - 1).abs().max() < 1e-3


def test_attribute_standardisation_uses_seen_classes_only(stage) -> None:
    a = stage.attributes
    b = a.copy()
    b[stage.n_seen :] = b[stage.n_seen :] * 10 + 1  # unseen rows changed
    za, zb = normalise_attributes(a, stage.n_seen, "std"), normalise_attributes(b, stage.n_seen, "std")
    np.testing.assert_array_equal(za[: stage.n_seen], zb[: stage.n_seen])  # the transform: seen rows only
    np.testing.assert_allclose(za[: stage.n_seen].mean(0), 0, atol=1e-5)


@pytest.mark.parametrize("name", ["crnet", "linear"])
def test_step_iterations_resume_inside_a_pass(name: str, stage) -> None:
    cls = get_method(name)
    cfg = {**space_defaults(name), **{k: v for k, v in SMALL.items() if k in cls.all_hparams()}}
    t = cls(cfg, stage, seed=0, max_epochs=5, iteration_steps=3)  # a pass here is ~14 batches: ends mid-pass
    t.fit_epoch()
    assert (t.epoch, t.step) == (1, 3) and t._queue
    state = copy.deepcopy(t.state_dict())
    a = [t.fit_epoch() for _ in range(6)]  # crosses into the next pass
    clone = cls(cfg, stage, seed=123, max_epochs=5, iteration_steps=3)
    clone.load_state_dict(state)
    assert [clone.fit_epoch() for _ in range(6)] == a and clone.step == 21
    e = cls(cfg, stage, seed=0, max_epochs=5)  # epoch iterations: one pass each
    e.fit_epoch()
    assert e.step == e.steps_per_epoch() and not e._queue
