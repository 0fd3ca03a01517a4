"""zsltune sweeps on a real multi-node Ray cluster (tests/cluster/conftest.py), and the faults they survive.

Each sweep is a real ``zsltune run`` driver subprocess joining the cluster with ``--address``; the tests read its
Parquet files as it runs and kill processes: a worker node's whole process tree, or the driver.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _procs import check_exactly_once, kill_group, read_parquet, run_cmd, snapshot_time, wait_for

from zsltune.results import EPOCHS_FILE, TRIALS_FILE
from zsltune.space import load_space
from zsltune.sweep.address import RAY_DEFAULT, ray_temp_dir, recorded_cluster, resolve_address

pytestmark = pytest.mark.slow

RUN_PY = Path(__file__).resolve().parents[2] / "zsltune" / "run.py"


def _sweep(cluster, data: Path, storage: Path, name: str, *extra: str, space: str = "linear") -> list[str]:
    return run_cmd(data, storage, name, "--address", cluster.address, *extra, space=space)


def _run(cmd: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


# ---- which Ray a driver joins --------------------------------------------------------------------------------
def test_cluster_is_private_and_the_default_address_rule(cluster, tmp_path: Path, monkeypatch) -> None:
    # the cluster recorded itself in its own temp dir only: a plain ray.init() elsewhere never joins it
    assert recorded_cluster(cluster.head_temp_dir) == cluster.address
    for env in ("RAY_TMPDIR", "TMPDIR", "RAY_ADDRESS"):
        monkeypatch.delenv(env, raising=False)
    assert recorded_cluster(ray_temp_dir()) != cluster.address
    # "the head node": Ray's default temp dir holds the record of a live cluster -> Ray's default joins it
    monkeypatch.setenv("RAY_TMPDIR", str(cluster.base))
    assert resolve_address(None) is RAY_DEFAULT
    # nothing recorded -> a private local Ray, whatever else runs on the machine
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert resolve_address(None) == "local"
    # a stale record (the cluster crashed; nothing listens on its port any more) -> local, instead of a hang
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    assert resolve_address(None) == "local"
    # RAY_ADDRESS is Ray's to use; an explicit --address is taken as given
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    assert resolve_address(None) is RAY_DEFAULT
    assert resolve_address("local") == "local" and resolve_address(cluster.address) == cluster.address


def test_script_without_address_on_the_head_node_joins_the_cluster(cluster, tiny_dataset_dir: Path, tmp_path: Path):
    """``ray submit`` runs ``python run.py ARGS`` on the head node with no --address: it must join the cluster."""
    env = {**cluster.env, "RAY_TMPDIR": str(cluster.base)}  # Ray's default temp dir = the head's, as on the head
    cmd = [sys.executable, str(RUN_PY), *run_cmd(tiny_dataset_dir, tmp_path, "submit")[4:]]
    _run([*cmd, "--num-samples", "2", "--max-epochs", "2", "--scheduler", "fifo"], env)
    trials = pd.read_parquet(tmp_path / "submit" / TRIALS_FILE)
    assert (trials["status"] == "completed").all() and len(trials) == 2
    assert set(trials["node"]) <= set(cluster.worker_ids().values())


# ---- spread ------------------------------------------------------------------------------------------------------
def test_trials_spread_over_the_worker_nodes(cluster, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    n, epochs = 4, 8
    cmd = _sweep(cluster, tiny_dataset_dir, tmp_path, "spread", "--num-samples", str(n), "--max-epochs", str(epochs))
    _run([*cmd, "--scheduler", "fifo", "--max-concurrent", "2"], cluster.env)
    trials, rows = check_exactly_once(tmp_path / "spread", n, epochs)
    workers = set(cluster.worker_ids().values())
    assert set(trials["node"]) <= workers and set(rows["node"]) <= workers  # never the head (num_cpus=0)
    assert trials["node"].nunique() >= 2, trials[["trial_id", "node"]]
    assert (trials["failures"] == 0).all()


# ---- out of memory -----------------------------------------------------------------------------------------------
def test_out_of_memory_trial_is_retried_then_fails_with_the_reason(
    cluster, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """One configuration allocates past ``--memory-per-trial``: retried ``--max-failures`` times, then failed with
    the reason; the others complete. CRnet's relation layer is (hidden x D): 16M hidden units = 2 GB per weight."""
    huge, max_failures, n, epochs = 16_000_000, 2, 3, 2
    doc = yaml.safe_load(load_space("crnet").path.read_text())  # type: ignore[union-attr]
    doc.update(max_epochs=epochs, grace_period=epochs)
    doc.pop("profiles", None)  # they name parameters this space drops
    doc["parameters"] = {"hidden": {"type": "categorical", "choices": [huge, 16, 24, 32], "default": huge}}
    space = tmp_path / "crnet-oom.yaml"
    space.write_text(yaml.safe_dump(doc))
    cmd = _sweep(cluster, tiny_dataset_dir, tmp_path, "oom", space=str(space))
    extra = ["--num-samples", str(n), "--sampler", "random", "--scheduler", "fifo", "--max-concurrent", "2"]
    extra += ["--max-failures", str(max_failures), "--memory-per-trial", "1", "--set", "K=1", "--set", "batch_size=128"]
    _run([*cmd, *extra], cluster.env)

    trials = pd.read_parquet(tmp_path / "oom" / TRIALS_FILE)
    rows = pd.read_parquet(tmp_path / "oom" / EPOCHS_FILE)
    assert len(trials) == n and trials["trial_id"].is_unique
    oom, ok = trials[trials["config/hidden"] == huge], trials[trials["config/hidden"] != huge]
    assert len(oom) >= 1 and len(ok) >= 1, trials[["trial_id", "config/hidden", "status"]]  # the defaults ran first
    assert (oom["status"] == "failed").all() and (oom["failures"] == max_failures + 1).all(), oom
    for col in ("error", "last_failure"):
        assert oom[col].str.contains("TrialOutOfMemory: out of memory on host", regex=False).all(), oom[col].tolist()
        assert oom[col].str.contains("1 GB (--memory-per-trial)", regex=False).all(), oom[col].tolist()
    assert not rows["trial_id"].isin(oom["trial_id"]).any()  # it never got through an epoch
    assert (ok["status"] == "completed").all() and (ok["failures"] == 0).all(), ok
    assert ok["error"].isna().all() and ok["last_failure"].isna().all()
    for tid in ok["trial_id"]:
        assert sorted(rows.loc[rows.trial_id == tid, "epoch"]) == list(range(1, epochs + 1))


# ---- the driver killed, then resumed against the cluster ---------------------------------------------------------
def test_driver_killed_then_resumed_on_the_cluster(cluster, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    n, epochs = 3, 60
    cmd = _sweep(cluster, tiny_dataset_dir, tmp_path, "killed", "--num-samples", str(n), "--max-epochs", str(epochs))
    # batch_size=1: ~0.1 s epochs of real work, so the trials outlast the polling even on an idle machine.
    # TUNE_GLOBAL_CHECKPOINT_S=1: experiment snapshots every second instead of zsltune's 10 s, so the snapshot a
    # resume starts from surely holds checkpoints of the interrupted trials (with an older one a trial restarts from
    # scratch, or a trial that finished after it reruns: its Parquet rows are then replaced, never doubled)
    env = {**cluster.env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(
        [*cmd, "--scheduler", "fifo", "--max-concurrent", "2", "--set", "batch_size=1"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sweep = tmp_path / "killed"
    seen: dict[str, float] = {}  # trial -> when the Parquet first showed it running with a checkpoint (epoch >= 2)

    def one_done_one_midway_both_in_the_snapshot() -> bool:
        t = read_parquet(sweep / TRIALS_FILE)
        if t is None:
            return False
        running = t[t.status == "running"]
        for tid in running.loc[running.epochs >= 2, "trial_id"]:
            seen.setdefault(tid, time.time())
        snap = snapshot_time(sweep)
        done = (t.status == "completed") & (t.ended_at < pd.Timestamp(snap - 0.5, unit="s", tz="UTC"))
        midway = running[(running.epochs <= epochs - 15) & running.trial_id.map(lambda i: seen.get(i, snap) < snap)]
        return bool(done.any()) and not midway.empty

    try:
        wait_for(one_done_one_midway_both_in_the_snapshot, proc, timeout=180)
    finally:
        kill_group(proc)  # the driver alone: the cluster lives on, and drops the dead job's trial actors
    snap = snapshot_time(sweep)
    before = pd.read_parquet(sweep / TRIALS_FILE)
    cut = pd.Timestamp(snap - 0.5, unit="s", tz="UTC")  # trials.parquet's times are UTC timestamps
    done_before = before.loc[(before.status == "completed") & (before.ended_at < cut), "trial_id"]
    midway = [i for i in before.loc[before.status == "running", "trial_id"] if seen.get(i, snap) < snap]
    assert len(done_before) >= 1 and len(midway) >= 1

    resume = run_cmd(tiny_dataset_dir, tmp_path, "killed", "--resume", "--address", cluster.address)
    _run(resume, env)
    _, rows = check_exactly_once(sweep, n, epochs)
    assert (rows[rows.trial_id.isin(done_before)]["restores"] == 0).all()  # finished trials did not run again
    for tid in midway:  # interrupted ones continued from their checkpoint, not from scratch
        mine = rows[rows.trial_id == tid].sort_values("epoch")
        assert (mine["restores"] >= 1).any() and mine["restores"].iloc[0] == 0, mine[["epoch", "restores"]]
    assert set(rows["node"]) <= set(cluster.worker_ids().values())
    print(
        f"driver killed with {len(done_before)} trial(s) done and {len(midway)} midway; resumed: "
        f"{len(rows)} epoch rows = {n} trials x {epochs} epochs"
    )


# ---- a worker node killed mid-sweep ------------------------------------------------------------------------------
def test_worker_node_killed_its_trial_continues_on_another_node(
    cluster, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    n, epochs = 2, 60
    cmd = _sweep(cluster, tiny_dataset_dir, tmp_path, "nodekill", "--num-samples", str(n), "--max-epochs", str(epochs))
    proc = subprocess.Popen(
        [*cmd, "--scheduler", "fifo", "--max-concurrent", "2", "--max-failures", "2", "--set", "batch_size=1"],
        env=cluster.env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sweep = tmp_path / "nodekill"
    victim: dict[str, object] = {}

    def both_running_midway() -> bool:
        e = read_parquet(sweep / EPOCHS_FILE)
        if e is None or e["trial_id"].nunique() < n:
            return False
        last = e.sort_values("epoch").groupby("trial_id").tail(1)
        if not ((last["epoch"] >= 3) & (last["epoch"] <= epochs - 15)).all() or last["node"].nunique() < 2:
            return False
        row = last.iloc[0]
        victim.update(trial_id=row.trial_id, pid=int(row.pid), node=row.node, epoch=int(row.epoch))
        return True

    try:
        wait_for(both_running_midway, proc, timeout=180)
        node = cluster.node_of_pid(int(victim["pid"]))  # type: ignore[arg-type]
        assert node is not None and node.node_id == victim["node"], (victim, cluster.worker_ids())
        t_kill = time.monotonic()
        cluster.kill(node.name)  # raylet, object store, the trial's worker process: the whole node
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr[-3000:]
    trials, rows = check_exactly_once(sweep, n, epochs)

    mine = rows[rows.trial_id == victim["trial_id"]].sort_values("epoch")
    before, after = mine[mine.node == victim["node"]], mine[mine.node != victim["node"]]
    # epochs 1..k ran on the killed node, k+1..end on another one, restored from the checkpoint of epoch k. Tune
    # registers an epoch's checkpoint in a second round trip to the trial (its "save" task) after the result's
    # callbacks wrote the row, so a node killed in between loses that one checkpoint and the epoch runs again
    assert list(before["epoch"]) == list(range(1, len(before) + 1)) and len(before) >= victim["epoch"] - 1
    assert len(after) >= 1 and int(after["epoch"].min()) == len(before) + 1
    assert (before["restores"] == 0).all() and (after["restores"] >= 1).all()
    assert set(after["node"]) <= set(cluster.worker_ids().values()) - {victim["node"]}
    row = trials.set_index("trial_id").loc[victim["trial_id"]]
    assert row["failures"] >= 1 and pd.isna(row["error"]) and isinstance(row["last_failure"], str)
    other = rows[rows.trial_id != victim["trial_id"]]
    assert (other["restores"] == 0).all() and other["node"].nunique() == 1  # the other trial never noticed
    print(
        f"node {node.name} killed with its trial at epoch >= {victim['epoch']}: epochs 1-{len(before)} ran there, "
        f"{len(after)} more on {after['node'].iloc[0][:8]} (restores {int(after['restores'].max())}); "
        f"{len(rows)} epoch rows = {n} x {epochs}; failures {int(row['failures'])}: {row['last_failure'][:160]}; "
        f"sweep done {time.monotonic() - t_kill:.0f} s after the kill"
    )
