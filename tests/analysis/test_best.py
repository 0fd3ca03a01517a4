"""`analyze best` on a real tiny CRnet sweep: ranking, --by, several sweeps, a sweep still running, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from zsltune.analysis.best import best, default_out, rank_trials, write_best
from zsltune.analysis.sweepdir import load_sweep
from zsltune.errors import ConfigError, DataError
from zsltune.results import ResultsSink


def test_best_ranks_completed_val_trials_by_the_sweep_metric(crnet_sweep: Path) -> None:
    trials = pd.read_parquet(crnet_sweep / "trials.parquet")
    table = best(crnet_sweep)
    assert table.attrs["by"] == "H" and table.attrs["mode"] == "max"
    assert list(table["rank"]) == [1, 2, 3] and set(table["trial_id"]) == set(trials["trial_id"])
    assert (table["stage"] == "val").all() and (table["status"] == "completed").all()
    assert table["val/H"].is_monotonic_decreasing
    by_id = trials.set_index("trial_id")
    for _, row in table.iterrows():  # the sweep's own best/<m> at its best epoch, costs and epochs carried over
        src = by_id.loc[row["trial_id"]]
        assert row["val/H"] == pytest.approx(src["best/H"]) and row["val/U"] == pytest.approx(src["best/U"])
        assert row["best_epoch"] == src["best_epoch"] and row["epochs"] == 2
        assert row["wall_s"] == pytest.approx(src["wall_s"]) and row["device_s"] == pytest.approx(src["device_s"])
        assert row["config/hidden"] == 32 and "hidden=32" in row["config"]
    assert len(best(crnet_sweep, top=2)) == 2


def test_best_by_another_metric_uses_that_metrics_best_epoch(crnet_sweep: Path) -> None:
    epochs = pd.read_parquet(crnet_sweep / "epochs.parquet")
    table = best(crnet_sweep, by="zsl_top1")
    assert table.attrs["by"] == "zsl_top1" and table["val/zsl_top1"].is_monotonic_decreasing
    for _, row in table.iterrows():
        rows = epochs[epochs["trial_id"] == row["trial_id"]].sort_values("epoch")
        assert row["val/zsl_top1"] == pytest.approx(rows["zsl_top1"].max())
        assert row["best_epoch"] == rows.loc[rows["zsl_top1"].idxmax(), "epoch"]
    low = best(crnet_sweep, by="loss/loss")  # losses rank lowest first
    assert low.attrs["mode"] == "min" and low["val/loss/loss"].is_monotonic_increasing


def test_best_writes_csv_and_markdown_next_to_the_sweep(crnet_sweep: Path, sweep_copy) -> None:
    d = sweep_copy("written")
    table = best(d)
    csv, md = write_best(table, default_out([d]))
    assert csv == d / "best.csv" and md == d / "best.md"
    back = pd.read_csv(csv)
    assert list(back["trial_id"]) == list(table["trial_id"]) and "config/lr" in back
    text = md.read_text()
    assert "validation-stage" in text and "| rank | trial_id | val/H |" in text and text.count("\n| ") >= 4


def test_best_over_several_sweeps(crnet_sweep: Path, sweep_copy) -> None:
    other = sweep_copy("second")
    table = best([crnet_sweep, other])
    assert len(table) == 6 and set(table["sweep"]) == {crnet_sweep.name, "second"}
    assert list(table["rank"]) == list(range(1, 7)) and table["val/H"].is_monotonic_decreasing
    assert default_out([crnet_sweep, other]) in (crnet_sweep.parent, Path("/"), *crnet_sweep.parents)


def test_best_on_a_sweep_still_running(sweep_copy) -> None:
    d = sweep_copy("running")
    trials = pd.read_parquet(d / "trials.parquet")
    live = trials.iloc[[0]].assign(trial_id="live0001", status="running", epochs=1)
    live["best/H"] = 0.99  # better than every finished trial, but not finished
    pd.concat([trials, live], ignore_index=True).to_parquet(d / "trials.parquet", index=False)
    (d / "epochs.parquet").unlink()  # the first epoch file not written yet
    table = best(d)
    assert "live0001" not in set(table["trial_id"]) and len(table) == 3
    everything = best(d, include_all=True)
    assert everything.iloc[0]["trial_id"] == "live0001" and everything.iloc[0]["status"] == "running"


def test_best_errors_name_the_path_and_the_fix(tmp_path: Path, crnet_sweep: Path) -> None:
    with pytest.raises(DataError, match=r"no trials\.parquet \(no Parquet results\)"):
        best(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        best(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"--by recall@1: no such metric in .*; available: .*H.*U"):
        best(crnet_sweep, by="recall@1")
    with pytest.raises(ConfigError, match="--top must be >= 1"):
        best(crnet_sweep, top=0)
    # an empty sweep: a trial has started, none has completed (written by the sweep's own Parquet sink)
    empty = tmp_path / "empty"
    sink = ResultsSink(empty, metric="H")
    sink.start_trial("t0", config={"lr": 0.1}, stage="val", method="linear", dataset="TINY")
    sink.flush(force=True)
    with pytest.raises(DataError, match=r"empty sweep: no completed trial at the val stage \(trials: 1 running\)"):
        rank_trials(load_sweep(empty))
