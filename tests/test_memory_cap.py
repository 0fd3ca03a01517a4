"""--memory-per-trial's host cap, out-of-memory reasons (host and CUDA), and how failures and resumes reach Parquet."""

from __future__ import annotations

import resource
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from zsltune.methods import TrialOutOfMemory
from zsltune.results import ResultsSink
from zsltune.sweep.callbacks import ParquetCallback
from zsltune.sweep.options import SweepOptions, TrialSpec, prepare
from zsltune.sweep.trial import host_memory_cap, out_of_memory

MB = 2**20


def _spec(**kw) -> TrialSpec:
    base = {
        "method": "linear",
        "max_epochs": 2,
        "seed": 0,
        "cpus_per_trial": 1.0,
        "gpus_per_trial": 0.0,
        "checkpoint_every": 1,
        "overrides": {},
        "memory_per_trial": 0.1,
    }
    return TrialSpec(**{**base, **kw})


def test_host_cap_fails_an_allocation_past_it_and_is_lifted_after() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with pytest.raises(RuntimeError) as err, host_memory_cap(0.1) as capped:
        assert capped
        small = torch.ones(20 * MB, dtype=torch.uint8)  # within the cap
        torch.empty(300 * MB, dtype=torch.uint8)  # past it
    assert small.sum() == 20 * MB
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    oom = out_of_memory(err.value, _spec())
    assert isinstance(oom, TrialOutOfMemory) and "\n" not in str(oom)
    assert str(oom) == (
        "out of memory on host (cpu): an allocation of 300.0 MiB failed past the trial's host-memory cap of 0.1 GB "
        "(--memory-per-trial)"
    )
    assert torch.empty(300 * MB, dtype=torch.uint8).numel() == 300 * MB  # lifted


def test_no_cap_without_the_option() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with host_memory_cap(None) as capped:
        assert not capped and resource.getrlimit(resource.RLIMIT_DATA) == before


def test_out_of_memory_reasons_name_device_request_and_cap() -> None:
    with pytest.raises(MemoryError) as err, host_memory_cap(0.1):
        np.ones(400 * MB, dtype=np.uint8)
    assert "an allocation of 400.0 MiB failed past the trial's host-memory cap of 0.1 GB" in str(
        out_of_memory(err.value, _spec())
    )
    assert "machine's free memory (no --memory-per-trial cap)" in str(
        out_of_memory(MemoryError(), _spec(memory_per_trial=None))
    )
    cuda = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.68 GiB total)")
    text = str(out_of_memory(cuda, _spec(gpus_per_trial=0.25)))
    assert text.startswith("out of memory on cuda") and "an allocation of 20.0 MiB" in text
    assert "CUDA-memory cap of 25%" in text and "(--gpus-per-trial 0.25)" in text
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), _spec()) is None
    assert out_of_memory(ValueError("out of memory"), _spec()) is None


def test_memory_per_trial_must_be_positive(tmp_path: Path) -> None:
    from zsltune.errors import ConfigError

    with pytest.raises(ConfigError, match="--memory-per-trial must be > 0 GB"):
        prepare(SweepOptions(space="linear", storage=str(tmp_path), memory_per_trial=0))


def test_failures_and_last_failure_columns(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path, metric="H")
    sink.start_trial("a", config={"lr": 0.1})
    sink.start_trial("b", config={"lr": 0.2})
    sink.record_failure("a", "node died")  # retried...
    sink.start_trial("a", config={"lr": 0.1})
    sink.end_trial("a", status="completed")  # ...and then fine
    for reason in ("oom 1", "oom 2"):
        sink.record_failure("b", reason)
    sink.end_trial("b", status="failed", error="oom 2")
    sink.flush(force=True)
    trials = pd.read_parquet(sink.trials_path).set_index("trial_id")
    assert trials.loc["a", "failures"] == 1 and trials.loc["a", "last_failure"] == "node died"
    assert pd.isna(trials.loc["a", "error"])
    assert trials.loc["b", "failures"] == 2 and trials.loc["b", "error"] == trials.loc["b", "last_failure"] == "oom 2"
    assert ResultsSink(tmp_path, metric="H").trials["b"]["failures"] == 2  # survives a reopen (--resume)


def test_resume_drops_trials_the_snapshot_never_knew(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path, metric="H")
    for tid in ("old", "orphan"):
        sink.start_trial(tid, config={})
        sink.add_epoch(tid, 1, {"H": 0.5})
    sink.flush(force=True)
    cb = ParquetCallback(tmp_path, metric="H", mode="max", max_epochs=2, meta={}, quiet=True)
    cb.on_step_begin(0, [SimpleNamespace(trial_id="old"), SimpleNamespace(trial_id="new")])
    trials, epochs = pd.read_parquet(tmp_path / "trials.parquet"), pd.read_parquet(tmp_path / "epochs.parquet")
    assert list(trials["trial_id"]) == ["old"] and list(epochs["trial_id"]) == ["old"]
    # a restore that failed (no known trial in common) drops nothing
    cb2 = ParquetCallback(tmp_path, metric="H", mode="max", max_epochs=2, meta={}, quiet=True)
    cb2.on_step_begin(0, [SimpleNamespace(trial_id="other")])
    assert list(pd.read_parquet(tmp_path / "trials.parquet")["trial_id"]) == ["old"]
