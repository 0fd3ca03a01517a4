"""What a Ray cluster can grow to: the autoscaler's node types and their maximum counts, and how many trials fit.

A cluster launched by ``ray up`` (or any head started with ``ray start --head --autoscaling-config=FILE``) runs an
autoscaler in its monitor process on the head, which reads that file: node types, their resources (filled in from
the instance type by ``ray up`` on AWS and GCP), ``min_workers``/``max_workers`` and the cluster's ``max_workers``.
Ray 2.60 publishes no Python API for it: :func:`autoscaler_limits` looks first at the cluster config the GCS holds
where something reported one (``ray._private.state``; KubeRay and Anyscale do), else finds that cluster's monitor
(``monitor.py --gcs-address=<this GCS>``) among the head's processes, from the driver where it runs on the head and
from a zero-CPU task there otherwise, and reads its ``--autoscaling-config`` file. None: no autoscaler (a ``ray
start`` cluster, a local Ray); the cluster stays as it is, and what it holds now is all a sweep gets.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]  # Ray resources of one node (CPU, GPU, memory in bytes, custom)
    max_count: int  # how many such nodes the autoscaler may run (the head: 1)


@dataclass(frozen=True)
class ClusterLimits:
    types: tuple[NodeType, ...]
    max_workers: int | None  # the cluster-wide cap on worker nodes (None: no cap but the types')
    source: str  # where they were read, for the progress line

    def describe(self) -> str:
        workers = [t for t in self.types if t.max_count and t.name != "__head__"]
        return ", ".join(f"{t.max_count} x {t.name} ({_res(t.resources)})" for t in workers) or "no worker types"


def _res(r: dict[str, float]) -> str:
    parts = [f"{r[k]:g} {k}" for k in ("CPU", "GPU") if k in r]
    if "memory" in r:
        parts.append(f"{r['memory'] / 1024**3:.0f} GB")
    return ", ".join(parts) or "resources unknown"


def trials_per_node(r: dict[str, float], *, cpus: float, gpus: float, memory: int) -> int:
    """How many trials of (cpus, gpus, memory bytes) one node of resources ``r`` holds at once."""
    fit = [r.get("CPU", 0.0) / cpus]
    if gpus > 0:
        fit.append(r.get("GPU", 0.0) / gpus)
    if memory and "memory" in r:  # a node type without a memory figure: the scheduler decides on the node
        fit.append(r["memory"] / memory)
    return math.floor(min(fit) + 1e-9)


def max_trials(limits: ClusterLimits, *, cpus: float, gpus: float, memory: int) -> int:
    """Trials at once on the largest cluster the autoscaler may build (the best-fitting worker types first)."""
    budget = limits.max_workers if limits.max_workers is not None else math.inf
    total = 0
    for t in sorted(limits.types, key=lambda t: -trials_per_node(t.resources, cpus=cpus, gpus=gpus, memory=memory)):
        n = t.max_count if t.name == "__head__" else min(t.max_count, budget)
        if t.name != "__head__":
            budget -= n
        total += int(n) * trials_per_node(t.resources, cpus=cpus, gpus=gpus, memory=memory)
    return total


def autoscaler_limits() -> ClusterLimits | None:
    """The limits of the connected cluster's autoscaler, or None where it has none."""
    return _from_gcs() or _from_head_monitor()


def _from_gcs() -> ClusterLimits | None:
    try:
        from ray._private.state import state

        cfg = state.get_cluster_config()
    except Exception:  # an older or newer Ray without it: try the head's file
        return None
    if cfg is None or not cfg.node_group_configs:
        return None
    types = tuple(
        NodeType(g.name, {k: float(v) for k, v in g.resources.items()}, g.max_count if g.max_count >= 0 else 10**6)
        for g in cfg.node_group_configs
    )
    return ClusterLimits(types, None, "the cluster config in the GCS")


def _from_head_monitor() -> ClusterLimits | None:
    ctx = ray.get_runtime_context()
    gcs = ctx.gcs_address
    head = [n for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})]
    if not head:
        return None
    if head[0].get("NodeID") == ctx.get_node_id():
        # the driver runs on the head (`ray submit`, a local Ray): read its /proc here. A task would start a worker
        # that imports this package, torch with it: 3-15 s before every sweep on a busy 2-core machine
        cfg = _monitor_config(gcs)
        return limits_from_config(cfg) if cfg else None
    task = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001}, max_retries=0)(_monitor_config)
    try:
        cfg = ray.get(task.remote(gcs), timeout=60)
    except Exception:  # the head refuses tasks, or a dead monitor: nothing known, as without an autoscaler
        return None
    return limits_from_config(cfg) if cfg else None


def _monitor_config(gcs_address: str) -> dict[str, Any] | None:
    """On the head: the autoscaling config file of the monitor serving ``gcs_address`` (matched by port)."""
    import yaml

    port = gcs_address.rsplit(":", 1)[-1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = [a.decode(errors="replace") for a in cmdline.read_bytes().split(b"\0") if a]
            if not any(a.endswith("monitor.py") for a in args[:3]):
                continue
            opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
            if opts.get("gcs-address", "").rsplit(":", 1)[-1] != port or not opts.get("autoscaling-config"):
                continue
            return yaml.safe_load(Path(opts["autoscaling-config"]).expanduser().read_text())
    return None


def limits_from_config(cfg: dict[str, Any]) -> ClusterLimits:
    """The node types of a cluster-launcher config (``available_node_types``, ``head_node_type``, ``max_workers``)."""
    head = cfg.get("head_node_type")
    types = []
    for name, t in (cfg.get("available_node_types") or {}).items():
        r = {k: float(v) for k, v in (t.get("resources") or {}).items()}
        count = 1 if name == head else int(t.get("max_workers", cfg.get("max_workers", 0)) or 0)
        types.append(NodeType("__head__" if name == head else name, r, count))
    mw = cfg.get("max_workers")
    return ClusterLimits(tuple(types), int(mw) if mw is not None else None, "the autoscaling config on the head")


__all__ = ["ClusterLimits", "NodeType", "autoscaler_limits", "limits_from_config", "max_trials", "trials_per_node"]
