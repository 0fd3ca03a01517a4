"""Helpers of the fault tests (tests/test_faults.py, tests/cluster/): sweeps as subprocesses, /proc process trees.

Every kill here is aimed at processes a test started, by pid, with the tree read from /proc: never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from zsltune.results import EPOCHS_FILE, TRIALS_FILE


def run_cmd(data: Path, storage: Path, name: str, *extra: str, space: str = "linear") -> list[str]:
    """``zsltune run`` of a quiet sweep on ``data`` into ``storage/name``, as a subprocess command line."""
    return [
        sys.executable,
        "-m",
        "zsltune.cli",
        "run",
        "--space",
        space,
        "--dataset",
        str(data),
        "--storage",
        str(storage),
        "--name",
        name,
        "--quiet",
        *extra,
    ]


def read_parquet(path: Path) -> pd.DataFrame | None:
    """The file, or None while it does not exist yet (files are replaced atomically, never half-written)."""
    try:
        return pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError):
        return None


def wait_for(pred: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``pred`` until true; fail if ``proc`` exits first or ``timeout`` seconds pass."""
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early with {proc.returncode}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.2)


def descendants(pid: int) -> list[int]:
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


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and everything below it, as a crash or the OOM killer would; returns the pids signalled."""
    victims = [pid, *descendants(pid)]
    for p in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return victims


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a driver and everything it started (its local Ray too), and reap it."""
    kill_tree(proc.pid)
    proc.wait(timeout=30)


def snapshot_time(sweep: Path) -> float:
    """When Tune last saved the experiment state (what ``--resume`` starts from); 0 before the first save.

    A resume continues each trial from the checkpoint this snapshot records: a trial that finished after it runs
    its last epochs again (its Parquet rows are replaced, never doubled).
    """
    return max((p.stat().st_mtime for p in sweep.glob("experiment_state-*.json")), default=0.0)


def check_exactly_once(
    sweep: Path, n_trials: int, epochs: int, *, completed: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial once in trials.parquet; each of ``completed`` (default: all) completed with epochs 1..``epochs``
    exactly once each in epochs.parquet."""
    trials, rows = pd.read_parquet(sweep / TRIALS_FILE), pd.read_parquet(sweep / EPOCHS_FILE)
    assert len(trials) == n_trials and trials["trial_id"].is_unique, trials[["trial_id", "status"]]
    done = set(trials["trial_id"]) if completed is None else completed
    mine = trials[trials.trial_id.isin(done)]
    assert (mine["status"] == "completed").all(), mine[["trial_id", "status", "error"]]
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    for tid, g in rows[rows.trial_id.isin(done)].groupby("trial_id"):
        assert sorted(g["epoch"]) == list(range(1, epochs + 1)), tid
    assert set(rows.loc[rows.trial_id.isin(done), "trial_id"]) == done
    return trials, rows


def project_files(repo: Path) -> list[str] | None:
    """The checkout's files (tracked, and new ones git does not ignore), relative; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=repo,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [f for f in out.decode().split("\0") if f]
