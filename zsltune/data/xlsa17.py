"""Loader for one dataset directory in the xlsa17 layout (Xian et al., "Zero-Shot Learning: the Good, the Bad
and the Ugly").

    res101.mat      features (D, N), labels (N, 1) 1-based, image_files (N, 1) cell
    att_splits.mat  att (P, C), original_att (P, C), allclasses_names (C, 1) cell,
                    trainval_loc, test_seen_loc, test_unseen_loc (1-based), maybe train_loc, val_loc
    *.txt           trainvalclasses, testclasses, trainclasses1..3, valclasses1..3, allclasses

Files in the wild differ: missing keys or class lists are derived, extra keys are ignored. Everything wrong is a
:class:`~zsltune.errors.DataError` naming the file and the fix. ``train_loc``/``val_loc`` are never read: in the
real files they overlap ``test_seen_loc`` (see :mod:`zsltune.data.protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zsltune.errors import DataError

AttributeKind = Literal["att", "original_att", "sent"]
ATTRIBUTE_KINDS: tuple[str, ...] = ("att", "original_att", "sent")
SYNTHETIC_KEY = "zsltune_synthetic"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One xlsa17 dataset in memory. Class ids and image indices are 0-based."""

    name: str
    root: Path
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64 class ids
    attributes: np.ndarray  # (C, P) float32, one row per class
    attribute_kind: str
    class_names: list[str]
    trainval: np.ndarray  # (N_tv,) image indices
    test_seen: np.ndarray  # (N_ts,)
    test_unseen: np.ndarray  # (N_tu,)
    seen_classes: np.ndarray  # trainval classes, sorted
    unseen_classes: np.ndarray  # test classes, sorted
    train_classes: np.ndarray  # val protocol: classes trained on (a subset of seen)
    val_classes: np.ndarray  # val protocol: pseudo-unseen classes (the rest of seen)
    synthetic: bool = False
    image_files: list[str] | None = field(default=None, repr=False)
    # per-image text (zsltune.data.text), attached by load_stage(text=...) for methods that need it
    tokens: np.ndarray | None = field(default=None, repr=False)  # (N, S, L) int32 token ids, 0 = padding
    vocab: list[str] | None = field(default=None, repr=False)  # (V,) words of the token ids
    word_vectors: np.ndarray | None = field(default=None, repr=False)  # (V, W) float32 frozen vectors, or None

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.attributes.shape[0])


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io

    if not path.is_file():
        raise DataError(
            f"{path}: file not found; point --data-root at an xlsa17 dataset directory "
            f"or generate one with `zsltune data synth`"
        )
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise DataError(
            f"{path}: MATLAB v7.3 files are not supported ({e}); re-save it with "
            f"`save -v7` in MATLAB or scipy.io.savemat"
        ) from None
    except Exception as e:
        raise DataError(
            f"{path}: not a readable MATLAB file ({type(e).__name__}: {e}); it may be truncated "
            f"or corrupt: download it again or regenerate it with `zsltune data synth`"
        ) from None


def _key(mat: dict[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in mat:
        present = ", ".join(sorted(k for k in mat if not k.startswith("__")))
        present = present or "none; the file may be truncated or corrupt"
        raise DataError(f"{path}: missing key '{key}' (keys present: {present})")
    return np.asarray(mat[key])


def _locs(mat: dict[str, Any], key: str, path: Path, n: int) -> np.ndarray:
    raw = _key(mat, key, path)
    if raw.size and not np.issubdtype(raw.dtype, np.number):
        raise DataError(f"{path}: '{key}' must hold integer image indices, got dtype {raw.dtype}")
    loc = raw.astype(np.float64).ravel()
    if loc.size and (np.any(loc != np.round(loc)) or loc.min() < 1 or loc.max() > n):
        raise DataError(
            f"{path}: '{key}' indices must be 1-based integers in 1..{n} (the number of images in "
            f"res101.mat), got values in {loc.min():g}..{loc.max():g}"
        )
    return loc.astype(np.int64) - 1


def _strings(cell: np.ndarray) -> list[str]:
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        while isinstance(item, np.ndarray) and item.size:
            item = item.ravel()[0]
        out.append(str(item).strip() if not isinstance(item, np.ndarray) else "")
    return out


def _read_list(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [n for n in names if n]


def _class_ids(names: list[str], index: dict[str, int], path: Path) -> np.ndarray:
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(
            f"{path}: class '{unknown[0]}' is not among the dataset's class names "
            f"({len(unknown)} unknown); the class list does not belong to this att_splits.mat"
        )
    return np.array(sorted({index[n] for n in names}), dtype=np.int64)


def _check_subset(labels: np.ndarray, allowed: np.ndarray, what: str, path: Path) -> None:
    bad = np.setdiff1d(np.unique(labels), allowed)
    if bad.size:
        raise DataError(
            f"{path}: labels of {what} include class id {int(bad[0]) + 1} (1-based), which the class "
            f"list does not allow ({bad.size} such classes); labels disagree with the class lists"
        )


def derive_val_classes(seen: np.ndarray, *, seed: int = 0, share: float = 0.25) -> np.ndarray:
    """A seeded split of the seen classes into pseudo-unseen val classes, for files without class lists."""
    n_val = min(len(seen) - 1, max(1, round(share * len(seen))))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(seen, size=n_val, replace=False))


def read_class_side(root: str | Path) -> tuple[np.ndarray, list[str]]:
    """(attributes (C, P) float32, class names) of an xlsa17 folder's ``att_splits.mat``, nothing else."""
    path = Path(root).expanduser() / "att_splits.mat"
    mat = _loadmat(path)
    att = _key(mat, "att", path)
    names = (
        _strings(mat["allclasses_names"]) if "allclasses_names" in mat else [str(i + 1) for i in range(att.shape[1])]
    )
    return np.ascontiguousarray(att.T, dtype=np.float32), [f"{i + 1:03d}.{n}" for i, n in enumerate(names)]


def load_dataset(
    root: str | Path, *, attributes: AttributeKind = "att", split: int = 1, name: str | None = None
) -> Dataset:
    """Load an xlsa17 dataset directory; ``split`` picks trainclasses{split}/valclasses{split}."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: dataset directory not found; pass --data-root DIR with DIR/NAME/att_splits.mat, "
            f"or generate one with `zsltune data synth --out {root}`"
        )
    if attributes not in ATTRIBUTE_KINDS:
        raise DataError(f"attributes must be one of {', '.join(ATTRIBUTE_KINDS)}, got '{attributes}'")

    res_path, att_path = root / "res101.mat", root / "att_splits.mat"
    res = _loadmat(res_path)
    feats = _key(res, "features", res_path)
    labels_raw = _key(res, "labels", res_path)
    if labels_raw.size == 0 or not np.issubdtype(labels_raw.dtype, np.number):
        raise DataError(
            f"{res_path}: 'labels' must be a non-empty numeric N x 1 array, got shape "
            f"{labels_raw.shape} dtype {labels_raw.dtype}"
        )
    if np.any(labels_raw != np.round(labels_raw)):  # also NaN
        raise DataError(f"{res_path}: 'labels' must be integer class ids, got non-integer values")
    labels = labels_raw.astype(np.int64).ravel() - 1
    n = labels.shape[0]
    if feats.ndim != 2 or n not in feats.shape or not np.issubdtype(feats.dtype, np.number):
        raise DataError(
            f"{res_path}: 'features' must be a numeric D x N matrix with N = {n} (the number of "
            f"labels), got shape {feats.shape} dtype {feats.dtype}"
        )
    features = np.ascontiguousarray(feats.T if feats.shape[1] == n else feats, dtype=np.float32)  # (N, D)
    if not np.isfinite(features).all():
        raise DataError(f"{res_path}: 'features' contains NaN or inf; the file is corrupt")
    synthetic = bool(np.asarray(res.get(SYNTHETIC_KEY, 0)).ravel()[:1].sum())
    image_files = _strings(res["image_files"]) if "image_files" in res else None

    splits = _loadmat(att_path)
    if attributes == "sent":
        sent_path = root / "sent_splits.mat"
        att = _key(_loadmat(sent_path), "att", sent_path)
        att_src = sent_path
    else:
        att = _key(splits, attributes, att_path)
        att_src = att_path
    if att.ndim != 2 or not np.issubdtype(att.dtype, np.number):
        raise DataError(f"{att_src}: '{attributes}' must be a numeric P x C matrix, got shape {att.shape}")
    n_cls = int(labels.max()) + 1
    if labels.min() < 0:
        raise DataError(f"{res_path}: 'labels' must be 1-based class ids >= 1, got {int(labels.min()) + 1}")
    if att.shape[1] < n_cls:
        raise DataError(
            f"{att_src}: '{attributes}' has {att.shape[1]} columns (classes) but res101.mat labels "
            f"go up to {n_cls}; the two files do not belong together"
        )
    attr = np.ascontiguousarray(att.T, dtype=np.float32)  # (C, P)
    n_cls = attr.shape[0]

    trainval = _locs(splits, "trainval_loc", att_path, n)
    test_seen = _locs(splits, "test_seen_loc", att_path, n)
    test_unseen = _locs(splits, "test_unseen_loc", att_path, n)
    for a, b, an, bn in (
        (trainval, test_seen, "trainval_loc", "test_seen_loc"),
        (trainval, test_unseen, "trainval_loc", "test_unseen_loc"),
        (test_seen, test_unseen, "test_seen_loc", "test_unseen_loc"),
    ):
        common = np.intersect1d(a, b)
        if common.size:
            raise DataError(
                f"{att_path}: {an} and {bn} share {common.size} images (e.g. {int(common[0]) + 1}); "
                f"the splits must be disjoint"
            )

    if "allclasses_names" in splits:
        class_names = _strings(splits["allclasses_names"])
    else:
        class_names = _read_list(root / "allclasses.txt") or [f"class_{i + 1:03d}" for i in range(n_cls)]
    if len(class_names) != n_cls:
        raise DataError(
            f"{att_path}: {len(class_names)} class names for {n_cls} attribute columns; "
            f"fix allclasses_names or allclasses.txt"
        )
    index = {c: i for i, c in enumerate(class_names)}

    tv_list, test_list = _read_list(root / "trainvalclasses.txt"), _read_list(root / "testclasses.txt")
    seen = _class_ids(tv_list, index, root / "trainvalclasses.txt") if tv_list else np.unique(labels[trainval])
    unseen = _class_ids(test_list, index, root / "testclasses.txt") if test_list else np.unique(labels[test_unseen])
    if np.intersect1d(seen, unseen).size:
        raise DataError(
            f"{root}: trainvalclasses.txt and testclasses.txt share classes; seen and unseen classes must be disjoint"
        )
    _check_subset(labels[trainval], seen, "trainval_loc", res_path)
    _check_subset(labels[test_seen], seen, "test_seen_loc", res_path)
    _check_subset(labels[test_unseen], unseen, "test_unseen_loc", res_path)

    tr_path, va_path = root / f"trainclasses{split}.txt", root / f"valclasses{split}.txt"
    tr_list, va_list = _read_list(tr_path), _read_list(va_path)
    if tr_list and va_list:
        train_classes = _class_ids(tr_list, index, tr_path)
        val_classes = _class_ids(va_list, index, va_path)
        for ids, p in ((train_classes, tr_path), (val_classes, va_path)):
            if np.setdiff1d(ids, seen).size:
                raise DataError(
                    f"{p}: lists classes outside trainvalclasses; the val split must come from the seen classes only"
                )
        if np.intersect1d(train_classes, val_classes).size:
            raise DataError(f"{tr_path} and {va_path} share classes; they must be disjoint")
    else:
        val_classes = derive_val_classes(seen, seed=split)
        train_classes = np.setdiff1d(seen, val_classes)

    return Dataset(
        name=name or root.name,
        root=root,
        features=features,
        labels=labels,
        attributes=attr,
        attribute_kind=attributes,
        class_names=class_names,
        trainval=trainval,
        test_seen=test_seen,
        test_unseen=test_unseen,
        seen_classes=seen,
        unseen_classes=unseen,
        train_classes=train_classes,
        val_classes=val_classes,
        synthetic=synthetic,
        image_files=image_files,
    )
