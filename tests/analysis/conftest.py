"""Fixtures of the analysis tests: one tiny real CRnet sweep, and one real rerun of it, for the whole folder.

The sweep (3 trials, 2 epochs, hidden 32, FIFO) and the rerun (top 2 x 3 seeds) each start and stop their own
local Ray, as ``zsltune run`` and ``zsltune analyze rerun`` do. They are session-scoped: every module here reads the
same results, so the folder pays for one sweep and one rerun (about a minute on 2 loaded cores), not one per module.
Tests that change a sweep folder work on a copy (``sweep_copy``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

RESULT_FILES = ("trials.parquet", "epochs.parquet", "zsltune.json", "optuna.journal")


@pytest.fixture(scope="session")
def awa2_like_dir(tiny_dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic dataset under the name AWA2, so the report finds CRnet's published AWA2 row."""
    out = tmp_path_factory.mktemp("analysis-data") / "AWA2"
    shutil.copytree(tiny_dataset_dir, out)
    return out


@pytest.fixture(scope="session")
def crnet_sweep(awa2_like_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zsltune.sweep import SweepOptions, run_sweep

    storage = tmp_path_factory.mktemp("analysis-sweeps")
    res = run_sweep(
        SweepOptions(
            space="crnet",
            dataset=str(awa2_like_dir),
            storage=str(storage),
            name="crnet-tiny",
            num_samples=3,
            max_epochs=2,
            iteration_steps=0,  # epochs: a few steps, so the tiny trials still differ (300 steps all reach H 0)
            scheduler="fifo",
            quiet=True,
            overrides={"hidden": 32},
        )
    )
    assert res.counts["completed"] == 3, res.counts
    return res.sweep_dir


@pytest.fixture(scope="session")
def crnet_rerun(crnet_sweep: Path):
    from zsltune.analysis.rerun import rerun

    return rerun(crnet_sweep, top=2, seeds=3, quiet=True)


@pytest.fixture
def sweep_copy(crnet_sweep: Path, tmp_path: Path) -> Callable[..., Path]:
    """``sweep_copy(name)``: a copy of the sweep's result files (no Tune state, no reruns) to mutate."""

    def make(name: str = "copy") -> Path:
        out = tmp_path / name
        out.mkdir()
        for f in RESULT_FILES:
            if (crnet_sweep / f).is_file():
                shutil.copy2(crnet_sweep / f, out / f)
        return out

    return make
