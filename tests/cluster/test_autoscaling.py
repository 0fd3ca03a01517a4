"""A sweep on an autoscaling cluster that starts with no worker: Ray's fake multi-node provider on this machine.

The head is started here (``RAY_FAKE_CLUSTER=1 ray start --head --num-cpus=0 --autoscaling-config=FILE``, a private
``--temp-dir``, a free port); its autoscaler launches worker raylets (2 CPUs + 1 logical GPU each, at most 2) as
processes under its monitor, so the head's process tree holds the whole cluster and is killed by pid at the end.
``ray.cluster_utils.AutoscalingCluster`` is not used: as installed it reads a missing ``example.yaml`` and runs
``ray stop --force``, which would kill every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _procs import kill_tree, run_cmd

from zsltune.results import TRIALS_FILE

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
WORKER = "ray.worker.gpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def cluster_config(port: int) -> dict:
    """A complete cluster-launcher config for the fake provider: every key the autoscaler reads, commands empty."""
    return {
        "cluster_name": "zsl-fake",
        "max_workers": 2,
        "upscaling_speed": 2.0,  # both workers in the first launch round
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": f"127.0.0.1:{port}",  # else the workers dial 6379
            "launch_multiple": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "min_workers": 0, "max_workers": 0},
            WORKER: {
                "resources": {"CPU": 2, "GPU": 1, "object_store_memory": 100_000_000},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _pids_mentioning(needle: str) -> list[int]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if needle.encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                out.append(int(cmdline.parent.name))
    return out


#: token authentication on, as a real cluster has it, with a token of its own (never written to ~/.ray)
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")},
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}


def ray_status(address: str) -> str:
    out = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, timeout=60, env=ENV)
    return out.stdout


@pytest.fixture(scope="module")
def fake_cluster() -> Iterator[str]:
    """The GCS address of a fresh autoscaling head with no worker; the head's process tree is killed afterwards."""
    if not Path(RAY).exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    base = Path(tempfile.mkdtemp(prefix="zsl-fake-", dir="/tmp"))  # short: Unix socket paths under it
    port = _free_port()
    config = base / "cluster.yaml"
    config.write_text(yaml.safe_dump(cluster_config(port)))
    env = {**ENV, "RAY_FAKE_CLUSTER": "1"}
    log = base / "head.log"
    cmd = [
        RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=0", f"--autoscaling-config={config}",
        f"--temp-dir={base / 'ray'}", "--disable-usage-stats", "--include-dashboard=false",
        "--object-store-memory=100000000", "--dashboard-agent-listen-port=0", f"--metrics-export-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
    ]  # fmt: skip
    with log.open("w") as fh:
        head = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    address = f"127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"the head did not start: {log.read_text()[-3000:]}")
            time.sleep(0.25)
        while "Autoscaler" not in ray_status(address):  # the monitor has reported once: it reads the config
            if time.monotonic() - t0 > 120:
                raise RuntimeError("the autoscaler did not report")
            time.sleep(1)
        yield address
    finally:
        kill_tree(head.pid)  # never `ray stop`: other Ray instances run on this machine
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        for pid in _pids_mentioning(str(base)):  # anything that left the tree still names our temp dir
            kill_tree(pid)
        shutil.rmtree(base, ignore_errors=True)


def launched_workers(status: str) -> int:
    """Worker nodes ``ray status`` lists (Active: " 2 ray.worker.gpu"; Pending: "<id>: ray.worker.gpu, <state>").

    With the fake provider on this machine the autoscaler keys nodes by their id while the raylets register under
    the machine's IP, so launched workers stay listed as pending ("uninitialized") even while they run trials.
    """
    n = 0
    for ln in status.split("Recent failures:", 1)[0].splitlines():
        words = ln.split()
        if WORKER in ln and words:
            n += int(words[0]) if words[0].isdigit() else 1
    return n


def cluster_resources(address: str) -> tuple[dict, dict]:
    """(total, available) resources as the GCS has them, from a throwaway driver."""
    code = f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
    code += "print(json.dumps([ray.cluster_resources(), ray.available_resources()]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    total, avail = json.loads(out.stdout.strip().splitlines()[-1])
    return total, avail


def _max_overlap(trials: pd.DataFrame) -> int:
    events = sorted([(t, 1) for t in trials.started_at] + [(t, -1) for t in trials.ended_at])  # an end first at a tie
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_no_node_the_autoscaler_may_start_fits_one_trial(fake_cluster: str, tiny_dataset_dir: Path, tmp_path: Path):
    """Runs first (the module's cluster still has no worker): a trial bigger than any node type is one line."""
    cmd = run_cmd(tiny_dataset_dir, tmp_path, "toobig", "--address", fake_cluster, "--gpus-per-trial", "2")
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("zsltune: error: ")]
    assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "--gpus-per-trial 2: no node the cluster's autoscaler may start fits one trial" in errors[0], errors
    assert f"2 x {WORKER} (2 CPU, 1 GPU" in errors[0], errors
    assert not (tmp_path / "toobig" / "tuner.pkl").exists()


def test_sweep_grows_the_cluster_from_no_worker(fake_cluster: str, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    assert "Active:\n (no active nodes)" in ray_status(fake_cluster) or WORKER not in ray_status(fake_cluster)
    n = 4
    cmd = run_cmd(
        tiny_dataset_dir, tmp_path, "grow", "--address", fake_cluster, "--num-samples", str(n), "--max-epochs", "6",
        "--scheduler", "fifo", "--gpus-per-trial", "0.5", space="crnet",
    )  # fmt: skip
    cmd.remove("--quiet")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    statuses: list[str] = []
    while proc.poll() is None and time.monotonic() - t0 < 400:  # watch the scaling as a user would
        statuses.append(ray_status(fake_cluster))
        time.sleep(3)
    if proc.poll() is None:
        kill_tree(proc.pid)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    wall = time.monotonic() - t0

    # the driver planned for the cluster's maximum, not its empty start, and said so
    assert "up to 4 at once" in err and f"2 x {WORKER}" in err, err[-3000:]
    assert "waiting for resources" in err, err[-3000:]
    trials = pd.read_parquet(tmp_path / "grow" / TRIALS_FILE)
    assert len(trials) == n and (trials["status"] == "completed").all(), trials[["trial_id", "status", "error"]]
    assert trials["node"].nunique() == 2  # both workers were added and ran trials
    overlap = _max_overlap(trials)
    assert overlap >= 3, trials[["trial_id", "node", "started_at", "ended_at"]]
    assert launched_workers(statuses[0]) == 0 and max(map(launched_workers, statuses)) == 2, statuses[-1]
    # nothing left running: both workers still up, and every CPU and GPU the trials held is free again
    deadline = time.monotonic() + 60
    while True:
        total, avail = cluster_resources(fake_cluster)
        free = all(avail.get(k, 0) == total.get(k, 0) for k in ("CPU", "GPU"))
        if free or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert total.get("CPU") == 4 and total.get("GPU") == 2 and free, (total, avail)
    first_grown = next(i for i, s in enumerate(statuses) if launched_workers(s) == 2) * 3
    print(
        f"fake autoscaler: {n} trials, at most {overlap} at once on {trials['node'].nunique()} added workers; "
        f"both workers launched ~{first_grown} s after the driver started; sweep {wall:.0f} s\n"
        f"{statuses[first_grown // 3]}"
    )
