"""Faults on one machine: the driver killed mid-sweep and resumed, a trial's worker process killed mid-trial.

Each sweep runs as a real ``zsltune run`` subprocess; the test watches its Parquet files and kills processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from _procs import check_exactly_once, kill_group, read_parquet, run_cmd, wait_for

from zsltune.results import EPOCHS_FILE, TRIALS_FILE
from zsltune.sweep.trial import CHECKPOINT_FILE


@pytest.mark.slow
def test_killed_trial_process_resumes_from_its_checkpoint(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    epochs = 80
    cmd = run_cmd(
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
        "--set",
        "batch_size=1",
    )
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sweep = tmp_path / "workerkill"
    victim: dict[str, object] = {}

    def midway() -> bool:
        e = read_parquet(sweep / EPOCHS_FILE)
        t = read_parquet(sweep / TRIALS_FILE)
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
        wait_for(midway, proc)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0, proc.stderr.read()[-2000:] if proc.stderr else ""
    _, rows = check_exactly_once(sweep, 2, epochs)
    mine = rows[rows.trial_id == victim["trial_id"]].sort_values("epoch")
    after = mine[mine.epoch > int(victim["epoch"])]  # type: ignore[call-overload]
    assert (after["restores"] >= 1).any(), "the killed trial was not restored from a checkpoint"
    assert not (after["pid"] == victim["pid"]).all()
    restored_at = int(after.loc[after["restores"] >= 1, "epoch"].min())
    assert restored_at > 1, "the trial restarted from scratch instead of its checkpoint"


def _checkpoints(sweep: Path, trial_id: str) -> list[str]:
    return sorted(p.name for p in (sweep / f"trial_{trial_id}").glob("checkpoint_*"))


@pytest.mark.slow
def test_driver_killed_after_an_end_of_trial_prune_resumes_losing_and_doubling_nothing(
    tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """The driver SIGKILLed mid-sweep, one trial ended (and pruned to its newest checkpoint), another midway: the
    resume has every epoch row once, the ended trial not rerun, and each trial folder ends with one checkpoint."""
    n, epochs = 3, 40
    cmd = run_cmd(
        tiny_dataset_dir, tmp_path, "pruned", "--num-samples", str(n), "--max-epochs", str(epochs),
        "--scheduler", "fifo", "--max-concurrent", "2", "--set", "batch_size=1",
    )  # fmt: skip
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}  # snapshots every second: the prune follows the end fast
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep = tmp_path / "pruned"
    pruned: dict[str, list[str]] = {}

    def pruned_one_and_another_running() -> bool:
        t = read_parquet(sweep / TRIALS_FILE)
        if t is None:
            return False
        for tid in t.loc[t.status == "completed", "trial_id"]:
            if len(ck := _checkpoints(sweep, tid)) == 1:
                pruned[tid] = ck
        running = t[(t.status == "running") & (t.epochs >= 2)]
        return bool(pruned) and any(len(_checkpoints(sweep, i)) >= 2 for i in running.trial_id)

    try:
        wait_for(pruned_one_and_another_running, proc, timeout=180)
    finally:
        kill_group(proc)
    assert all(len(_checkpoints(sweep, tid)) == 1 for tid in pruned)

    resumed = subprocess.run(
        run_cmd(tiny_dataset_dir, tmp_path, "pruned", "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials, rows = check_exactly_once(sweep, n, epochs)
    assert (rows[rows.trial_id.isin(list(pruned))]["restores"] == 0).all()  # the pruned trials did not run again
    for tid in pruned:
        assert _checkpoints(sweep, tid) == pruned[tid]  # its one checkpoint, untouched
    for tid in trials.trial_id:  # the sweep's end left every trial its newest checkpoint only
        assert _checkpoints(sweep, tid) == [f"checkpoint_{epochs - 1:06d}"], (tid, _checkpoints(sweep, tid))
        kept = torch.load(sweep / f"trial_{tid}" / _checkpoints(sweep, tid)[0] / CHECKPOINT_FILE, weights_only=False)
        assert kept["trainer"]["weights_only"] and set(kept["trainer"]["state"]) == set(kept["trainer"]["modules"])
