"""Where a sweep's numbers came from: ``provenance.json`` in every sweep and rerun folder.

The record holds the code (git commit and whether the tree was dirty, when zsltune runs from a checkout; package
versions), the machine (host, CPU, GPU, CUDA), the exact command line, and the data read: the sha256 of each data
file, for a folder of images the hash of its file list with sizes and mtimes (as the decoded cache's key), and for
synthetic data the generator's version, row and seed. A resumed sweep appends its own record under ``resumes``, so a
sweep continued on another commit says so. The space as it ran is copied beside it (:data:`SPACE_COPY`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
#: a rerun's own record, with the sweep's provenance it came from under ``sweep``
RERUN_FILE = "reruns-provenance.json"
#: the search space's YAML as the sweep ran it; analysis reads this copy, not the live file
SPACE_COPY = "space.yaml"
PACKAGES = ("zsltune", "torch", "ray", "optuna", "numpy", "pandas", "pyarrow", "scipy")
#: top-level files of a dataset folder whose bytes are hashed; folders (images/, text_c10/) get a listing hash
HASHED_SUFFIXES = (".mat", ".txt", ".json", ".npy", ".csv")


def git_state(path: Path) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout holding ``path``; empty when it is not in one (an installed wheel)."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(path), *a], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    """Host, OS, CPU model and count, and GPU / CUDA where torch sees one (torch is imported only if loaded)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def sha256(path: Path, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def listing_hash(folder: Path) -> dict[str, Any]:
    """sha256 of a folder's file list (relative path, size, mtime), the way the image cache keys a folder."""
    h, n = hashlib.sha256(), 0
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        n += 1
    return {"files": n, "listing_sha256": h.hexdigest()}


def data_record(directory: Path) -> dict[str, Any]:
    """The data a folder holds: sha256 of its top-level data files, a listing hash of each subfolder."""
    files = {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.is_file() and p.suffix in HASHED_SUFFIXES}
    folders = {p.name: listing_hash(p) for p in sorted(directory.iterdir()) if p.is_dir()}
    return {"path": str(directory), "sha256": files, "folders": folders}


def synthetic_record(name: str, *, seed: int, images: bool = False) -> dict[str, Any]:
    """What made synthetic data: the generator (its version and, for features, its knobs for ``name``) and the
    data seed; the folder's hashes say what it wrote."""
    if images:
        return {"generator": "zsltune.data.synth_images", "data_seed": seed}
    from zsltune.data.synth import GENERATOR_VERSION, twin_params

    return {
        "generator": "zsltune.data.synth",
        "generator_version": GENERATOR_VERSION,
        "twin": asdict(twin_params(name)),
        "data_seed": seed,
    }


def record(*, data: dict[str, Any], argv: list[str] | None = None) -> dict[str, Any]:
    """One run's provenance (the caller adds what it knows of the data, :meth:`DataSource.provenance`)."""
    return {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "git": git_state(Path(__file__).resolve().parent),
        "versions": versions(),
        "machine": machine(),
        "data": data,
    }


def write(
    folder: Path, rec: dict[str, Any], *, space_text: str | None = None, name: str = PROVENANCE_FILE
) -> dict[str, Any]:
    """Write ``rec`` as the folder's provenance (``name``: :data:`RERUN_FILE` for reruns); where one exists (a
    resume) it is kept and ``rec`` appended to its ``resumes``. ``space_text``: the space's YAML, copied once."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    doc = read(folder, name=name)
    if doc is None:
        doc = rec
    else:
        doc.setdefault("resumes", []).append(rec)
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)
    if space_text is not None and not (folder / SPACE_COPY).is_file():
        (folder / SPACE_COPY).write_text(space_text)
    return doc


def read(folder: Path, *, name: str = PROVENANCE_FILE) -> dict[str, Any] | None:
    """The folder's provenance, or None for a folder from before provenance was recorded."""
    from zsltune.errors import DataError

    path = folder / name
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); restore the file or delete it") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a JSON object; restore the file or delete it")
    return doc
