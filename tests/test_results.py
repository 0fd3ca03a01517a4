"""The Parquet sink: keyed upserts, reopening an existing sweep, atomic files, mixed-type columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from zsltune.results import EPOCHS_FILE, TRIAL_COLUMNS, TRIALS_FILE, ResultsSink, read_results


def test_rows_are_upserted_not_doubled(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path, metric="H", mode="max", min_interval_s=0)
    sink.start_trial("a", config={"lr": 0.1, "norm": "l2"}, method="m")
    for epoch, h in [(1, 0.2), (2, 0.5), (2, 0.4), (3, 0.3)]:  # epoch 2 re-reported after a restore
        sink.add_epoch("a", epoch, {"H": h, "loss": 1.0 / epoch})
    sink.end_trial("a", status="completed")
    sink.flush(force=True)
    trials, epochs = read_results(tmp_path)
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert epochs.loc[epochs.epoch == 2, "H"].item() == 0.4
    row = trials.iloc[0]
    assert list(trials.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    assert row["best/H"] == 0.4 and row["best_epoch"] == 2 and row["last/H"] == 0.3
    assert row["config/lr"] == 0.1 and row["config/norm"] == "l2" and row["status"] == "completed"


def test_reopened_sink_continues_where_it_stopped(tmp_path: Path) -> None:
    first = ResultsSink(tmp_path, metric="H", min_interval_s=0)
    first.start_trial("a", config={"lr": 0.1})
    first.add_epoch("a", 1, {"H": 0.1})
    first.flush(force=True)
    second = ResultsSink(tmp_path, metric="H", min_interval_s=0)
    second.add_epoch("a", 1, {"H": 0.15})  # the resumed run re-reports epoch 1
    second.add_epoch("a", 2, {"H": 0.2})
    second.start_trial("b", config={"lr": 0.2})
    second.flush(force=True)
    trials, epochs = read_results(tmp_path)
    assert sorted(trials["trial_id"]) == ["a", "b"]
    assert len(epochs) == 2 and epochs["H"].tolist() == [0.15, 0.2]


def test_min_interval_throttles_and_force_writes(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path, metric="H", min_interval_s=3600)
    sink.add_epoch("a", 1, {"H": 0.1})
    assert sink.flush() is True  # the first write is never throttled
    sink.add_epoch("a", 2, {"H": 0.2})
    assert sink.flush() is False
    assert len(pd.read_parquet(tmp_path / EPOCHS_FILE)) == 1
    assert sink.flush(force=True) is True
    assert len(pd.read_parquet(tmp_path / EPOCHS_FILE)) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_mixed_type_categorical_becomes_string(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path, metric="H", min_interval_s=0)
    sink.start_trial("a", config={"width": 0})
    sink.start_trial("b", config={"width": "auto"})
    sink.flush(force=True)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE)
    assert sorted(trials["config/width"]) == ["0", "auto"]


def test_bad_status_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        ResultsSink(tmp_path, metric="H").end_trial("a", status="exploded")


def test_checkpoint_pruner_keeps_newest_and_recent(tmp_path: Path) -> None:
    import os
    import time
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    from zsltune.sweep.callbacks import CheckpointPruner

    now = time.time()
    for i, age in enumerate([500, 400, 300, 10, 5]):  # checkpoint_000000 is the oldest
        d = tmp_path / f"checkpoint_{i:06d}"
        d.mkdir()
        os.utime(d, (now - age, now - age))
    storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(tmp_path))
    trial = SimpleNamespace(storage=storage)
    CheckpointPruner(keep=2, min_age_s=60).on_checkpoint(0, [], trial, None)
    # the newest two stay; of the rest, only those younger than 60 s (none here but 000003) survive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000003", "checkpoint_000004"]
    CheckpointPruner(keep=1, min_age_s=60).on_checkpoint(0, [], trial, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000003", "checkpoint_000004"]  # 000003 is young
