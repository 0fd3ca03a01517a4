"""Every registered method honours the trainer contract (timm-style smoke test over the registry)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from zsltune.data import build_stage, load_dataset
from zsltune.errors import ConfigError, UnknownNameError
from zsltune.methods import GZSL_KEYS, Trainer, get_method, list_methods
from zsltune.space import available_spaces, load_space

#: shrink the sizes that only cost time, so each method runs in a second on the tiny dataset
TINY_SIZES = {"hidden": 32, "batch_size": 32, "embed_dim": 32, "lstm_units": 16, "filters": 8, "word_dim": 16}


@pytest.fixture(scope="module")
def stage(tiny_dataset_dir: Path):
    return build_stage(load_dataset(tiny_dataset_dir), "val")


def tiny_config(cls: type[Trainer]) -> dict:
    return {k: v for k, v in TINY_SIZES.items() if k in cls.defaults}


def test_every_method_has_a_search_space_and_vice_versa() -> None:
    assert set(list_methods()) == set(available_spaces())
    for name in list_methods():
        assert load_space(name).method == name


@pytest.mark.parametrize("name", list_methods())
def test_method_contract(name: str, stage) -> None:
    cls = get_method(name)
    trainer = cls(tiny_config(cls), stage, device="cpu", seed=0, max_epochs=3)
    losses = trainer.fit_epoch()
    assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    assert trainer.epoch == 1
    metrics = trainer.evaluate()
    assert set(GZSL_KEYS) <= set(metrics)  # a method may report more (e.g. CLAREL's α sweep, recall@k)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    assert all(0.0 <= metrics[k] <= 1.0 for k in GZSL_KEYS), metrics

    # a checkpoint round trip resumes bit-identically
    state = copy.deepcopy(trainer.state_dict())  # state_dict() aliases live tensors; a checkpoint is a copy
    a = trainer.fit_epoch()
    clone = cls(tiny_config(cls), stage, device="cpu", seed=123, max_epochs=3)  # as a restarted trial would
    clone.load_state_dict(state)
    assert clone.epoch == 1
    b = clone.fit_epoch()
    assert a == b
    for p, q in zip(trainer.model.parameters(), clone.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", list_methods())
def test_unknown_hyperparameter_is_rejected(name: str, stage) -> None:
    with pytest.raises(ConfigError, match=f"{name}: unknown hyperparameter 'no_such_knob'"):
        get_method(name)({"no_such_knob": 1}, stage)


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as e:
        get_method("resnet")
    assert all(n in str(e.value) for n in list_methods())


def test_seeded_trainers_are_deterministic(stage) -> None:
    cls = get_method("linear")
    runs = [cls({}, stage, seed=7).fit_epoch() for _ in range(2)]
    assert runs[0] == runs[1]
    assert cls({}, stage, seed=8).fit_epoch() != runs[0]
    assert np.isfinite(list(runs[0].values())).all()
