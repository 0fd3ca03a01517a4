"""Data layer: xlsa17 loader, the val/test protocol, and the synthetic feature generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zsltune.data.protocol import STAGES, Stage, StageData, build_stage
from zsltune.data.synth import cache_dir, cached_synth_like, synth_fresh, synth_like
from zsltune.data.xlsa17 import ATTRIBUTE_KINDS, AttributeKind, Dataset, load_dataset
from zsltune.errors import DataError

__all__ = [
    "ATTRIBUTE_KINDS",
    "STAGES",
    "AttributeKind",
    "Dataset",
    "Stage",
    "StageData",
    "build_stage",
    "cached_synth_like",
    "default_data_root",
    "load_dataset",
    "load_stage",
    "resolve_dataset",
    "synth_fresh",
    "synth_like",
]

DEMO = "demo"
# small enough for a sweep of several trials on 2 CPU cores in minutes, big enough to separate configurations
DEMO_SIZE = {"classes": 40, "attributes": 64, "images": 6000, "feature_dim": 512}


def default_data_root() -> Path:
    return Path(os.environ.get("ZSLTUNE_DATA", Path.home() / "xlsa17")).expanduser()


def resolve_dataset(name: str, *, data_root: str | Path | None = None, seed: int = 0, quiet: bool = False) -> Path:
    """The directory holding ``name``'s res101.mat, generating synthetic features into the cache where needed.

    ``name`` is ``demo`` (fully synthetic), a dataset under ``data_root`` (``AWA2``), or a directory path.
    A directory with att_splits.mat but no res101.mat gets synthetic features around its real class side.
    """
    if name == DEMO:
        out = cache_dir() / "synth" / f"demo-{seed}-v3"
        if not (out / "res101.mat").is_file():
            synth_fresh(out, seed=seed, **DEMO_SIZE)
        return out
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    path = Path(name).expanduser()
    directory = path if path.is_dir() else root / name
    if not directory.is_dir():
        known = sorted(p.name for p in root.iterdir() if (p / "att_splits.mat").is_file()) if root.is_dir() else []
        hint = f"datasets under {root}: {', '.join(known)}" if known else f"{root} holds no xlsa17 dataset"
        raise DataError(f"--dataset {name}: not found ({hint}); pass --data-root, a dataset directory, or 'demo'")
    if (directory / "res101.mat").is_file():
        return directory
    if not (directory / "att_splits.mat").is_file():
        raise DataError(f"{directory}: neither res101.mat nor att_splits.mat found; not an xlsa17 dataset directory")
    out = cached_synth_like(directory, seed=seed)
    if not quiet:
        print(
            f"zsltune: {directory} has no res101.mat; using synthetic features around its real class side ({out})",
            file=sys.stderr,
        )
    return out


def load_stage(
    name: str,
    stage: Stage,
    *,
    data_root: str | Path | None = None,
    attributes: AttributeKind = "att",
    seed: int = 0,
    val_share: float = 0.2,
) -> StageData:
    """Resolve, load and cut one stage of a dataset: the one call the sweep makes."""
    directory = resolve_dataset(name, data_root=data_root, seed=seed)
    ds = load_dataset(directory, attributes=attributes, name=Path(name).name if name != DEMO else DEMO)
    return build_stage(ds, stage, val_share=val_share, seed=seed)
