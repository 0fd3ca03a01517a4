"""Faults on one machine: the driver killed mid-sweep and resumed, a trial's worker process killed mid-trial.

Each sweep runs as a real ``zsltune run`` subprocess; the test watches its Parquet files and kills processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from zsltune.results import EPOCHS_FILE, TRIALS_FILE


def _run_cmd(data: Path, storage: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zsltune.cli",
        "run",
        "--space",
        "linear",
        "--dataset",
        str(data),
        "--storage",
        str(storage),
        "--name",
        name,
        "--quiet",
        *extra,
    ]


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError):
        return None


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early with {proc.returncode}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.2)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), e.g. the local Ray a driver started, and its workers."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its local Ray too), as a crash or OOM kill would."""
    victims = [proc.pid, *_descendants(proc.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _check_exactly_once(sweep: Path, n_trials: int, epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, rows = pd.read_parquet(sweep / TRIALS_FILE), pd.read_parquet(sweep / EPOCHS_FILE)
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "error"]]
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    for tid, g in rows.groupby("trial_id"):
        assert sorted(g["epoch"]) == list(range(1, epochs + 1)), tid
    return trials, rows


@pytest.mark.slow
def test_driver_killed_then_resumed_loses_and_doubles_nothing(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    n, epochs = 4, 60
    cmd = _run_cmd(
        tiny_dataset_dir,
        tmp_path,
        "killed",
        "--num-samples",
        str(n),
        "--max-epochs",
        str(epochs),
        "--scheduler",
        "fifo",
        "--max-concurrent",
        "2",
    )
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep = tmp_path / "killed"

    def one_done_one_midway() -> bool:
        t, e = _read(sweep / TRIALS_FILE), _read(sweep / EPOCHS_FILE)
        return (
            t is not None
            and e is not None
            and (t["status"] == "completed").sum() >= 1
            and ((t["status"] == "running") & (t["epochs"] >= 5)).any()
        )

    try:
        _wait_for(one_done_one_midway, proc)
    finally:
        _kill_group(proc)
    before = pd.read_parquet(sweep / TRIALS_FILE)
    assert (before["status"] == "running").any()

    resumed = subprocess.run(
        _run_cmd(tiny_dataset_dir, tmp_path, "killed", "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _, rows = _check_exactly_once(sweep, n, epochs)
    # trials finished before the kill were not run again
    done_before = before.loc[before.status == "completed", "trial_id"]
    assert (rows[rows.trial_id.isin(done_before)]["restores"] == 0).all()


@pytest.mark.slow
def test_killed_trial_process_resumes_from_its_checkpoint(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    epochs = 80
    cmd = _run_cmd(
        tiny_dataset_dir,
        tmp_path,
        "workerkill",
        "--num-samples",
        "2",
        "--max-epochs",
        str(epochs),
        "--scheduler",
        "fifo",
        "--max-failures",
        "2",
    )
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "workerkill"
    victim: dict[str, object] = {}

    def midway() -> bool:
        e = _read(sweep / EPOCHS_FILE)
        t = _read(sweep / TRIALS_FILE)
        if e is None or t is None:
            return False
        running = t.loc[t.status == "running", "trial_id"]
        cand = e[e.trial_id.isin(running) & (e.epoch >= 5) & (e.epoch <= epochs - 20)]
        if cand.empty:
            return False
        row = cand.sort_values("epoch").iloc[-1]
        victim.update(trial_id=row.trial_id, pid=int(row.pid), epoch=int(row.epoch))
        return True

    try:
        _wait_for(midway, proc)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert proc.returncode == 0, proc.stderr.read()[-2000:] if proc.stderr else ""
    _, rows = _check_exactly_once(sweep, 2, epochs)
    mine = rows[rows.trial_id == victim["trial_id"]].sort_values("epoch")
    after = mine[mine.epoch > int(victim["epoch"])]  # type: ignore[call-overload]
    assert (after["restores"] >= 1).any(), "the killed trial was not restored from a checkpoint"
    assert not (after["pid"] == victim["pid"]).all()
    restored_at = int(after.loc[after["restores"] >= 1, "epoch"].min())
    assert restored_at > 1, "the trial restarted from scratch instead of its checkpoint"
