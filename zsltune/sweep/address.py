"""Which Ray a sweep's driver joins when ``--address`` is not given (no Ray import: decided before ``ray.init``).

Ray's own default (``ray.init()`` with no address) joins the cluster that the last ``ray start`` on this machine
recorded in ``<ray temp dir>/ray_current_cluster``, even one that has since crashed (the driver then waits for a dead
GCS and fails). zsltune keeps the useful half of that rule and drops the surprising half:

1. ``--address`` given ("auto", "local", host:port, ray://...): used as given.
2. ``RAY_ADDRESS`` set: Ray uses it.
3. A cluster recorded by ``ray start`` on this machine whose GCS accepts a connection (the head node of a cluster,
   where ``ray submit CLUSTER.yaml zsltune/run.py`` runs the script): joined, through Ray's own default, so a cluster
   with token authentication gets the local token as it would for ``ray.init()``.
4. Otherwise (nothing recorded, or a stale record of a cluster that is gone): a private local Ray
   (``address="local"``), whatever other Ray instances run on the machine.

A cluster started with ``ray start --temp-dir DIR`` records itself under ``DIR``, not the default temp dir, so it is
never joined by rule 3 (the multi-node tests rely on this); ``RAY_TMPDIR`` moves the default temp dir.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

#: what :func:`resolve_address` returns for "let ``ray.init`` apply its default" (rules 2 and 3)
RAY_DEFAULT = None


def ray_temp_dir() -> Path:
    """Ray's default temp dir (``$RAY_TMPDIR/ray``, else ``$TMPDIR/ray`` on Linux, else ``/tmp/ray``)."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return Path(base) / "ray"


def recorded_cluster(temp_dir: str | Path | None = None) -> str | None:
    """The GCS address the last ``ray start`` on this machine recorded, or None."""
    path = Path(temp_dir or ray_temp_dir()) / "ray_current_cluster"
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def gcs_reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` (a live GCS; a crashed cluster's port is closed)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return False
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_address(address: str | None) -> str | None:
    """The ``address`` to pass to ``ray.init`` for ``--address`` (rules in the module docstring)."""
    if address:
        return address
    if os.environ.get("RAY_ADDRESS"):
        return RAY_DEFAULT
    recorded = recorded_cluster()
    if recorded and gcs_reachable(recorded):
        return RAY_DEFAULT
    return "local"
