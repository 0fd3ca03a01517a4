"""``--budget compute`` without Ray: a trial's horizon, TL-VSC's step counting every critic batch, the schedulers' time
attribute, and the options that cannot take it in one line (the real sweep: tests/test_sweep.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from zsltune.data import load_stage
from zsltune.errors import ConfigError
from zsltune.methods import get_method
from zsltune.space import load_space
from zsltune.sweep import SweepOptions, prepare
from zsltune.sweep.budget import MAX_ITERATIONS_FACTOR, horizon, reached
from zsltune.sweep.options import load_options, refuse_changes, save_options
from zsltune.sweep.search import make_scheduler

#: TL-VSC at test sizes (the space's defaults otherwise: batch 64, n_critic 5)
TLVSC_SMALL = {"hidden": 16, "n_syn": 5, "cls_epochs": 1, "pre_epochs": 1}


def test_horizon_rounds_up_and_is_capped() -> None:
    assert horizon(10, own=384.0, unit=384.0) == 10
    assert horizon(10, own=1024.0, unit=384.0) == 4  # 3.75 iterations' worth: the one that crosses it runs
    assert horizon(4, own=32.0, unit=64.0) == 8
    assert horizon(3, own=1.0, unit=1000.0) == 3 * MAX_ITERATIONS_FACTOR  # a near-free step cannot run for ever
    assert horizon(1, own=1e9, unit=1.0) == 1
    assert reached({"epoch": 4, "horizon": 4}, 10) and not reached({"epoch": 3, "horizon": 4}, 10)
    assert reached({"epoch": 10}, 10) and not reached({"epoch": 9}, 10)  # an iteration budget: max_epochs


def test_tlvsc_step_cost_counts_every_critic_batch(tiny_dataset_dir: Path) -> None:
    stage = load_stage(str(tiny_dataset_dir), "val")
    defaults = {**get_method("tlvsc").default_config("tiny"), **load_space("tlvsc").defaults("tiny"), **TLVSC_SMALL}
    t = get_method("tlvsc")({**defaults, "batch_size": 256, "n_critic": 3}, stage, iteration_steps=200)
    assert t.step_cost() == 256 * (3 + 1)
    assert t.iteration_cost() == 200 * 256 * 4
    assert t.iteration_cost(defaults) == 200 * 64 * (5 + 1)  # the unit: an iteration of the defaults
    assert horizon(10, own=t.iteration_cost(), unit=t.iteration_cost(defaults)) == 4  # not 10, as ASHA counted
    t.iteration_steps = None  # an iteration is an epoch: N / (batch x n_critic) generator iterations
    n = len(stage.y_train)
    assert t.iteration_cost() == max(1, n // (256 * 3)) * 1024
    assert t.iteration_cost(defaults) == max(1, n // (64 * 5)) * 384
    linear = get_method("linear")({"batch_size": 32}, stage)
    assert linear.step_cost() == 32  # the shared default: the config's batch_size


def test_schedulers_count_compute() -> None:
    space = load_space("tlvsc")
    for name in ("asha", "hyperband", "median"):
        kw = {"metric": "H", "mode": "max", "max_epochs": 10, "grace": 4, "seed": 0}
        assert make_scheduler(name, space, **kw, budget="compute")._time_attr == "compute"
        assert make_scheduler(name, space, **kw)._time_attr == "training_iteration"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"budget": "steps"}, "--budget must be one of iterations, compute, got steps"),
        ({"budget": "compute", "scheduler": "pbt"}, "--budget compute and --scheduler pbt: PBT clones a trial's"),
    ],
)
def test_bad_budget_is_one_line(tmp_path: Path, change: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        prepare(SweepOptions(space="tlvsc", storage=str(tmp_path), name="bad", **change))
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "bad").exists()


def test_budget_is_stored_and_a_resume_keeps_it(tmp_path: Path) -> None:
    stored = SweepOptions(space="tlvsc", budget="compute")
    save_options(stored, tmp_path)
    assert load_options(tmp_path).budget == "compute"
    refuse_changes(SweepOptions(space=""), stored)  # a resume without --budget continues the stored one
    with pytest.raises(ConfigError, match="--resume: --budget compute differs from the sweep's stored iterations"):
        refuse_changes(replace(stored, space=""), SweepOptions(space="tlvsc"))
