"""A real multi-node Ray cluster on this machine: a head and two worker raylets, each its own ``ray start --block``.

* Private: every node gets ``--temp-dir`` under a fresh ``/tmp/zsl-cluster-*`` folder, so the cluster records
  itself there and never in Ray's default ``/tmp/ray/ray_current_cluster``: a plain ``ray.init()`` elsewhere on the
  machine (other tests, other people's jobs) never joins it. All ports are free ones picked here.
* Token authentication on, as a real cluster has it, with a token of its own passed in the environment
  (``RAY_AUTH_TOKEN``), never written to ``~/.ray``. Drivers get it through :attr:`LocalCluster.env`.
* The head has ``num_cpus=0``, so every trial runs on a worker. Each node has a custom resource naming it.
* Node loss is detected in about 3 s (GCS health checks every second, 3 misses), not Ray's default 30 s.
* Teardown kills exactly the process trees this fixture started (pids from /proc), workers first. ``ray stop``
  would kill every Ray on the machine: never used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _procs import descendants, kill_tree

from zsltune.sweep.address import recorded_cluster

RAY = str(Path(sys.executable).with_name("ray"))
WORKERS = ("w0", "w1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    node_id: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> set[int]:
        """The ``ray start`` process and every Ray process below it (raylet, its trial workers, agents, ...)."""
        return {self.proc.pid, *descendants(self.proc.pid)} if self.alive() else set()


class LocalCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.address = ""  # host:port of the GCS, as the head recorded it
        self.nodes: dict[str, Node] = {}
        self._spawned = 0
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
        #: what a driver of this cluster needs in its environment
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self._node_env = {
            **self.env,
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }

    @property
    def head_temp_dir(self) -> Path:
        """``RAY_TMPDIR=<base>`` makes this Ray's default temp dir: a shell on "the head node" of this cluster."""
        return self.base / "ray"

    # ---- nodes --------------------------------------------------------------------------------------------
    def _start(self, name: str, args: list[str], temp_dir: Path) -> Node:
        temp_dir.mkdir(parents=True, exist_ok=True)
        self._spawned += 1
        log = self.base / f"{name}.{self._spawned}.log"
        cmd = [
            RAY,
            "start",
            "--block",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            "--object-store-memory=200000000",
            "--dashboard-agent-listen-port=0",
            f"--metrics-export-port={free_port()}",
            *args,
        ]
        with log.open("w") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._node_env
            )
        node = Node(name, proc, temp_dir, log)
        self.nodes[name] = node
        return node

    def _wait_started(self, node: Node, timeout: float = 120.0) -> None:
        """Until ``ray start`` says the node runs, and its raylet (which carries the node id) is up."""
        t0 = time.monotonic()
        while True:
            if not node.alive():
                raise RuntimeError(f"ray start of {node.name} exited: {node.log.read_text()[-3000:]}")
            if "Ray runtime started" in node.log.read_text(errors="replace"):
                node.node_id = _raylet_node_id(node.pids())
                if node.node_id:
                    return
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{node.name} did not start in {timeout:.0f} s: {node.log.read_text()[-3000:]}")
            time.sleep(0.25)

    def start_head(self) -> None:
        node = self._start(
            "head",
            [
                "--head",
                f"--port={self.port}",
                "--num-cpus=0",
                '--resources={"zsl_head": 1}',
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
            ],
            self.head_temp_dir,
        )
        self._wait_started(node)
        self.address = recorded_cluster(self.head_temp_dir) or f"127.0.0.1:{self.port}"

    def add_worker(self, name: str, *, wait: bool = True) -> Node:
        node = self._start(
            name,
            [f"--address={self.address}", "--num-cpus=1", f'--resources={{"zsl_{name}": 1}}'],
            self.base / name / "ray",
        )
        if wait:
            self._wait_started(node)
        return node

    def ensure_workers(self) -> None:
        """Bring back any of the two workers a test killed (as an autoscaler would), so each test starts whole."""
        dead = [n for n in WORKERS if n not in self.nodes or not self.nodes[n].alive()]
        for name in dead:
            self.add_worker(name, wait=False)
        for name in dead:
            self._wait_started(self.nodes[name])
        if dead:
            time.sleep(2.0)  # the new raylet registers with the GCS right after it prints its banner

    def worker_ids(self) -> dict[str, str]:
        return {n: node.node_id for n, node in self.nodes.items() if n != "head"}

    def node_of_pid(self, pid: int) -> Node | None:
        """The node whose process tree holds ``pid`` (e.g. the worker process running a trial)."""
        return next((node for node in self.nodes.values() if pid in node.pids()), None)

    def kill(self, name: str) -> list[int]:
        """SIGKILL a node's whole process tree (raylet, object store, its trial workers): the machine is gone."""
        node = self.nodes[name]
        victims = kill_tree(node.proc.pid)
        node.proc.wait(timeout=30)
        return victims

    def shutdown(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + ["head"]:
            node = self.nodes.get(name)
            if node is not None and node.alive():
                kill_tree(node.proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=30)
        # processes that left their tree (re-parented to init) still name our private temp dir: kill those by pid
        for pid in _pids_mentioning(str(self.base)):
            kill_tree(pid)


def _raylet_node_id(pids: set[int]) -> str:
    for pid in pids:
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if args and args[0].endswith(b"/raylet"):
                for a in args:
                    if a.startswith(b"--node_id="):
                        return a.split(b"=", 1)[1].decode()
    return ""


def _pids_mentioning(needle: str) -> list[int]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if needle.encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                out.append(int(cmdline.parent.name))
    return out


@pytest.fixture(scope="session")
def _cluster_session() -> Iterator[LocalCluster]:
    if not Path(RAY).exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    # short and private: Ray's socket paths under it must stay below the 107-character Unix limit
    base = Path(tempfile.mkdtemp(prefix="zsl-cluster-", dir="/tmp"))
    cluster = LocalCluster(base)
    try:
        cluster.start_head()
        for name in WORKERS:
            cluster.add_worker(name, wait=False)
        for name in WORKERS:
            cluster._wait_started(cluster.nodes[name])
        time.sleep(2.0)
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cluster(_cluster_session: LocalCluster) -> LocalCluster:
    """The session's cluster with its head and both workers alive."""
    if not _cluster_session.nodes["head"].alive():
        pytest.fail("the cluster's head node died")
    _cluster_session.ensure_workers()
    return _cluster_session
