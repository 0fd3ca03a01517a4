"""Shared test fixtures.

* ``ZSLTUNE_CACHE`` points at one temporary directory for the whole session (autouse), so tests never write to
  ``~/.cache/zsltune`` and real-size synthetic datasets (``cached_synth_like``, ``resolve_dataset``) are generated
  at most once per session. Subprocesses inherit it.
* ``ZSLTUNE_DATA`` (the real xlsa17 class side; CI sets ``../shared/data/xlsa17``) is made absolute, resolved
  against the repository root, so it means the same thing whatever the working directory.
* ``real_root``: that absolute path, or a skip when ``ZSLTUNE_DATA`` is unset.
* ``tiny_dataset_dir``: a small fully synthetic xlsa17 dataset (12 classes, 16 attributes, 600 images,
  32-d features), written once per session. Treat it as read-only; copy it (``shutil.copytree``) to mutate it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = {"classes": 12, "attributes": 16, "images": 600, "feature_dim": 32}


def _data_root_from_env() -> Path | None:
    value = os.environ.get("ZSLTUNE_DATA", "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


@pytest.fixture(scope="session", autouse=True)
def _zsltune_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Session-wide cache dir in a temp dir, and an absolute ZSLTUNE_DATA."""
    cache = tmp_path_factory.mktemp("zsltune-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZSLTUNE_CACHE", str(cache))
        root = _data_root_from_env()
        if root is not None:
            mp.setenv("ZSLTUNE_DATA", str(root))
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
        if workers > 1:  # each xdist worker gets its share of the cores: oversubscribed OpenMP threads spin-wait
            import torch

            threads = max(1, (os.cpu_count() or 1) // workers)
            torch.set_num_threads(threads)
            mp.setenv("OMP_NUM_THREADS", str(threads))  # the sweeps a test runs as subprocesses
        yield cache


@pytest.fixture(scope="session")
def real_root() -> Path:
    """Absolute path of the real xlsa17 class side (``ZSLTUNE_DATA``); skips the test when unset."""
    root = _data_root_from_env()
    if root is None:
        pytest.skip("ZSLTUNE_DATA unset")
    assert root.is_dir(), f"ZSLTUNE_DATA={os.environ['ZSLTUNE_DATA']} is set but {root} is not a directory"
    return root


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fully synthetic xlsa17 directory (res101.mat, att_splits.mat, class lists); read-only by convention."""
    from zsltune.data import synth_fresh

    return synth_fresh(tmp_path_factory.mktemp("tiny") / "TINY", seed=0, **TINY)


#: test files (relative to tests/) that cost most, heaviest first (serial seconds on 2 cores, 2026-12-03: cluster 200,
#: learning 180, sweep 165, faults 105, analysis 90, contract 80): under pytest-xdist they start first, so the two
#: workers do not end with one long file running alone
HEAVY_FIRST = (
    "cluster", "methods/test_learning.py", "test_sweep.py", "test_faults.py", "analysis", "sweep/test_contract.py",
    "methods/test_tlvsc.py", "methods/test_crnet_awa2.py", "methods/test_clarel.py", "sweep/test_image_sweep.py",
)  # fmt: skip
#: folders whose files share session fixtures (the analysis sweep and rerun) or would contend as two fake clusters:
#: one xdist worker runs each whole
ONE_WORKER_FOLDERS = ("analysis", "cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests for ``--dist loadgroup`` (a file, or a folder of ONE_WORKER_FOLDERS, per group) and put the
    heaviest groups first; the order within a group is unchanged."""

    def group(item: pytest.Item) -> str:
        rel = Path(str(item.path)).resolve().relative_to(REPO_ROOT / "tests").as_posix()
        return rel.split("/")[0] if rel.split("/")[0] in ONE_WORKER_FOLDERS else rel

    groups = {item.nodeid: group(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {g: HEAVY_FIRST.index(g) if g in HEAVY_FIRST else len(HEAVY_FIRST) for g in groups.values()}
    items.sort(key=lambda item: rank[groups[item.nodeid]])  # stable: collection order within a rank
