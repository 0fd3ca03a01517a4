"""Data layer: xlsa17 loader, the val/test protocol, the synthetic feature generator, per-image text, and images
(CUB-layout readers, synthetic images, the per-node decoded cache)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from zsltune.data.protocol import STAGES, Stage, StageData, build_stage
from zsltune.data.synth import (
    GENERATOR_VERSION,
    TWINS,
    cache_dir,
    cached_synth_like,
    params_key,
    synth_fresh,
    synth_like,
)
from zsltune.data.xlsa17 import ATTRIBUTE_KINDS, AttributeKind, Dataset, load_dataset
from zsltune.errors import DataError

__all__ = [
    "ATTRIBUTE_KINDS",
    "STAGES",
    "AttributeKind",
    "Dataset",
    "Stage",
    "StageData",
    "attach_text",
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
# small enough for a sweep of several trials on 2 CPU cores in minutes, big enough to separate configurations:
# 40 classes (val stage: 24 seen + 8 unseen), 300 images a class. At this size, val stage, ESZSL has H 0.123
# (U 0.066, S 0.867) and the CPU f-CLSWGAN H 0.318 (benchmarks/README.md, "Calibrated twins")
DEMO_SIZE = {"classes": 40, "attributes": 64, "images": 12000, "feature_dim": 512}


def default_data_root() -> Path:
    return Path(os.environ.get("ZSLTUNE_DATA", Path.home() / "xlsa17")).expanduser()


def resolve_dataset(
    name: str, *, data_root: str | Path | None = None, seed: int = 0, quiet: bool = False, captions: bool = False
) -> Path:
    """The directory holding ``name``'s res101.mat, generating synthetic features into the cache where needed.

    ``name`` is ``demo`` (fully synthetic), a dataset under ``data_root`` (``AWA2``), or a directory path.
    A directory with att_splits.mat but no res101.mat gets synthetic features around its real class side, and,
    with ``captions``, synthetic per-image captions too.
    """
    if name == DEMO:
        out = cache_dir() / "synth" / f"demo-{seed}-v{GENERATOR_VERSION}-{params_key(TWINS[DEMO])}"
        if not (out / "res101.mat").is_file() or (captions and not (out / "text_c10").is_dir()):
            synth_fresh(out, seed=seed, captions=captions, params=TWINS[DEMO], **DEMO_SIZE)
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
    out = cached_synth_like(directory, seed=seed, captions=captions)
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
    text: bool | str | Path | None = None,
    word_vectors: str | Path | None = None,
) -> StageData:
    """Resolve, load and cut one stage of a dataset: the one call the sweep makes.

    ``text``: also load per-image captions as token arrays (``True``: the dataset's ``text_c10``, generated for
    synthetic features; or a ``text_c10`` path), see :func:`attach_text`.
    """
    directory = resolve_dataset(name, data_root=data_root, seed=seed, captions=text is True)
    ds = load_dataset(directory, attributes=attributes, name=Path(name).name if name != DEMO else DEMO)
    if text:
        ds = attach_text(ds, None if text is True else text, word_vectors=word_vectors)
    return build_stage(ds, stage, val_share=val_share, seed=seed)


def attach_text(ds: Dataset, text_root: str | Path | None = None, *, word_vectors: str | Path | None = None) -> Dataset:
    """``ds`` with the token arrays of its captions (``text_root``, default ``ds.root/text_c10``) and, where given
    or found as ``ds.root/word_vectors.{bin,txt}``, frozen word vectors for the vocabulary."""
    from zsltune.data import text

    if ds.image_files is None:
        raise DataError(f"{ds.root / 'res101.mat'}: no 'image_files'; captions cannot be matched to the images")
    root = Path(text_root).expanduser() if text_root is not None else ds.root / text.TEXT_DIR
    if not root.is_dir():
        raise DataError(
            f"{root}: no captions; put Reed et al.'s text_c10 there, pass its path, or write synthetic ones with "
            f"`zsltune data synth --out {ds.root} ... --captions`"
        )
    tokens, vocab = text.load_tokens(root, ds.image_files)
    if word_vectors is None:
        word_vectors = next((ds.root / f for f in text.WORD_VECTOR_FILES if (ds.root / f).is_file()), None)
    vectors = text.load_word_vectors(word_vectors, vocab) if word_vectors is not None else None
    return dataclasses.replace(ds, tokens=tokens, vocab=vocab, word_vectors=vectors)
