"""Fixtures for the data-layer tests: a private, mutable copy of the tiny dataset and a .mat editor."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

MatEditor = Callable[..., dict[str, Any]]


def _read_mat(path: Path) -> dict[str, Any]:
    return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}


@pytest.fixture
def tiny_copy(tiny_dataset_dir: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny_dataset_dir`` that the test may change freely."""
    return Path(shutil.copytree(tiny_dataset_dir, tmp_path / tiny_dataset_dir.name))


@pytest.fixture
def edit_mat() -> MatEditor:
    """``edit_mat(path, drop=("key",), key=value, ...)`` rewrites a .mat file; returns the new contents."""

    def edit(path: Path, *, drop: Iterable[str] = (), **changes: Any) -> dict[str, Any]:
        mat = _read_mat(path)
        for key in drop:
            del mat[key]
        mat.update({k: np.asarray(v) for k, v in changes.items()})
        scipy.io.savemat(str(path), mat)
        return mat

    return edit


@pytest.fixture
def read_mat() -> Callable[[Path], dict[str, Any]]:
    """``read_mat(path)``: a .mat file's variables, without scipy's ``__header__`` entries."""
    return _read_mat
