"""The public API re-exported by ``zsltune/__init__.py``: every name in ``zsltune.__all__`` resolves to the object its
module defines, and ``import zsltune`` alone imports neither Ray nor torch (the names load on first use)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import zsltune

REPO = Path(__file__).resolve().parent.parent
#: public name -> the module that documents it; the same object must come back from ``zsltune``
EXPECTED = {
    "SweepOptions": "zsltune.sweep",
    "Trainer": "zsltune.methods",
    "read_results": "zsltune.results",
    "register_method": "zsltune.methods",
    "run_sweep": "zsltune.sweep",
}


def test_all_lists_the_public_api() -> None:
    assert sorted(zsltune.__all__) == sorted(EXPECTED)
    assert set(zsltune.__all__) <= set(dir(zsltune))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_public_name_resolves(name: str) -> None:
    expected = getattr(importlib.import_module(EXPECTED[name]), name)
    assert getattr(zsltune, name) is expected
    namespace: dict[str, object] = {}
    exec(f"from zsltune import {name}", namespace)  # the statement users write
    assert namespace[name] is expected


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'run_sweeps'"):
        _ = zsltune.run_sweeps
    with pytest.raises(ImportError):
        exec("from zsltune import run_sweeps", {})


def test_import_zsltune_imports_neither_ray_nor_torch() -> None:
    """In a fresh interpreter (nothing imported yet), as the ``zsltune`` command starts."""
    probe = (
        "import json, sys; import zsltune; "
        "print(json.dumps({'file': zsltune.__file__, 'heavy': sorted({m.split('.')[0] for m in sys.modules} & "
        "{'ray', 'torch'})}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve() == (REPO / "zsltune" / "__init__.py").resolve()  # the checkout's package
    assert got["heavy"] == [], f"`import zsltune` imported {got['heavy']}"
