"""A built wheel works on its own: installed (non-editable) into a fresh virtual environment, it carries the search
spaces (``zsltune/search_spaces/*.yaml``) and the analysis package (``zsltune/analysis/``, with its
``paper_results.csv``), both mapped from top-level folders of the checkout by ``setup.py``, holds no top-level
``analysis`` module, and its ``zsltune`` command runs a sweep from a folder that is not the checkout. The editable
install maps ``zsltune.analysis`` the same way.

Nothing touches the network: the wheel is built with the installed setuptools (``--no-build-isolation``) and
installed with ``--no-deps --no-index``; the venv sees this interpreter's packages (torch, ray, ...) through
``--system-site-packages``. Its own site-packages comes first on ``sys.path``, and the editable install's finder
(a meta-path hook appended after the path finder) only answers when nothing on ``sys.path`` has the module, so the
wheel wins; the ``__file__`` assertions check exactly that.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from _procs import project_files

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # slow tests run by default (`python -m pytest -q`); deselect with -m "not slow"


def _source_copy(dst: Path) -> Path:
    """The project's files (tracked, and new ones git does not ignore) copied to ``dst``: the build's ``build/`` and
    ``*.egg-info`` land there, not in the checkout, and no stale ``build/lib`` of the checkout leaks into the wheel."""
    listed = project_files(REPO)
    if listed is None:  # not a git checkout (an unpacked sdist): copy the tree
        shutil.copytree(
            REPO, dst, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".venv")
        )
        return dst
    for rel in listed:
        src = REPO / rel
        if src.is_file():  # a file deleted in the working tree is still listed
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", PIP_NO_INPUT="1", **extra)
    return env


def _check(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_wheel_installs_and_runs_a_sweep_outside_the_checkout(tmp_path: Path) -> None:
    src = _source_copy(tmp_path / "src")
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()

    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _check([*pip_wheel, "-w", str(dist), str(src)], 180, env=_env())
    (wheel,) = dist.glob("zsltune-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (top_level,) = (n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top_level).decode().split() == ["zsltune"]
    shipped = {f"zsltune/analysis/{p.name}" for p in (REPO / "analysis").glob("*.py")} | {
        "zsltune/analysis/paper_results.csv"
    }
    assert shipped <= names, sorted(shipped - names)
    assert not [n for n in names if n.startswith("analysis/")], "a top-level analysis package in the wheel"

    # --without-pip: the venv runs this interpreter's pip (seen through --system-site-packages), which installs
    # into the venv it runs in; ensurepip would take longer and add nothing
    _check([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], 120)
    py = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # this interpreter is itself a venv: --system-site-packages sees only its base
        (purelib,) = venv.glob("lib/python*/site-packages")
        (purelib / "_outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip_install = [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)]
    _check(pip_install, 180, env=_env())

    probe = (
        "import json, zsltune, zsltune.analysis as analysis, zsltune.analysis.paper as paper, zsltune.space as s; "
        "print(json.dumps({'zsltune': zsltune.__file__, 'analysis': analysis.__file__, 'dir': str(s.SPACES_DIR), "
        "'spaces': s.available_spaces(), 'crnet': str(s.load_space('crnet').path), "
        "'paper': str(paper.PAPER_RESULTS), 'rows': len(paper.paper_results())}))"
    )
    got = json.loads(_check([str(py), "-c", probe], 120, cwd=work, env=_env()).stdout.strip().splitlines()[-1])
    root, checkout = venv.resolve(), REPO.resolve()
    assert got["rows"] > 0
    for key in ("zsltune", "analysis", "dir", "crnet", "paper"):
        path = Path(got[key]).resolve()
        assert path.is_relative_to(root) and not path.is_relative_to(checkout), (key, got[key])
    assert {"crnet", "clarel", "linear"} <= set(got["spaces"])
    assert set(got["spaces"]) == {p.stem for p in (REPO / "search_spaces").glob("*.yaml")}  # every YAML shipped

    storage = tmp_path / "storage"
    run = [str(venv / "bin" / "zsltune"), "run", "--space", "linear", "--num-samples", "1", "--max-epochs", "1"]
    run += ["--storage", str(storage), "--name", "w", "--quiet", "--address", "local"]
    env = _env(ZSLTUNE_CACHE=str(tmp_path / "cache"), ZSLTUNE_RESULTS=str(tmp_path / "results"))
    _check(run, 240, cwd=work, env=env)
    trials = pd.read_parquet(storage / "w" / "trials.parquet")
    assert len(trials) == 1, trials
    recorded = json.loads((storage / "w" / "zsltune.json").read_text()).get("space")
    if isinstance(recorded, str):  # the sweep read the space the wheel installed
        assert Path(recorded).resolve().is_relative_to(root), recorded


def test_editable_install_maps_analysis_under_zsltune(tmp_path: Path) -> None:
    """From a folder outside the checkout, the development install (``pip install -e .``) imports
    ``zsltune.analysis`` from the checkout's ``analysis/`` and has no top-level ``analysis`` module."""
    probe = (
        "import importlib.util as u, json; z = u.find_spec('zsltune'); "
        "b = z and u.find_spec('zsltune.analysis.best'); "  # imports zsltune and zsltune.analysis on the way
        "print(json.dumps({'zsltune': z and z.origin, 'best': b and b.origin, 'top': bool(u.find_spec('analysis'))}))"
    )
    got = json.loads(_check([sys.executable, "-c", probe], 120, cwd=tmp_path, env=_env()).stdout.splitlines()[-1])
    if not got["zsltune"] or not Path(got["zsltune"]).resolve().is_relative_to(REPO.resolve()):
        pytest.skip(f"zsltune is not installed editable from this checkout ({got['zsltune']})")
    assert Path(got["best"]).resolve() == (REPO / "analysis" / "best.py").resolve(), got
    assert not got["top"], "a top-level `analysis` is importable: reinstall with `pip install -e .`"
