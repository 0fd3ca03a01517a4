"""The two evaluation stages, built so that the search can never see a test image.

``val`` (what every search optimises), from ``trainval_loc`` only:
    train      train-class images of trainval, minus a held-out share per class
    seen       that held-out share                      (pseudo test_seen)
    unseen     trainval images of the val classes       (pseudo test_unseen)
``test`` (analysis reruns only):
    train      all of trainval;  seen = test_seen;  unseen = test_unseen

The real ``train_loc``/``val_loc`` overlap ``test_seen_loc`` (e.g. 4,031 AWA2 images), so they are never used.
A :class:`StageData` holds copies of its own rows only: a ``val`` bundle physically contains no test image, so
nothing downstream (trainer, sweep, object store) can leak one. Classes are renumbered ``0..C-1`` with the stage's
seen classes first, so metrics see seen = ``[0, n_seen)`` and unseen = ``[n_seen, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from zsltune.data.images import CachedImages
from zsltune.data.xlsa17 import Dataset
from zsltune.errors import DataError

Stage = Literal["val", "test"]
STAGES: tuple[str, ...] = ("val", "test")


class Bundle(Protocol):
    """What the trainer contract reads of any stage bundle: a :class:`StageData`, an image stage, a method's own."""

    @property
    def dataset(self) -> str: ...
    @property
    def n_seen(self) -> int: ...
    @property
    def num_classes(self) -> int: ...


class FeatureBundle(Bundle, Protocol):
    """Precomputed features of a stage's splits (a :class:`StageData` is one): what the contract's default
    ``steps_per_epoch`` and GZSL ``evaluate`` read."""

    @property
    def x_train(self) -> np.ndarray: ...
    @property
    def y_train(self) -> np.ndarray: ...
    @property
    def x_seen(self) -> np.ndarray: ...
    @property
    def y_seen(self) -> np.ndarray: ...
    @property
    def x_unseen(self) -> np.ndarray: ...
    @property
    def y_unseen(self) -> np.ndarray: ...


class ImageBundle(Bundle, Protocol):
    """A stage of images by path (:mod:`zsltune.data.image_source`): each split decoded into the node's cache."""

    def cached(self, split: str) -> tuple[CachedImages, np.ndarray]: ...


@dataclass(frozen=True, eq=False)
class StageData:
    """Everything a trainer may see for one stage. Numpy only, so Ray shares it zero-copy."""

    dataset: str
    stage: str
    attribute_kind: str
    synthetic: bool
    attributes: np.ndarray  # (C, P) float32, seen classes first
    n_seen: int
    class_ids: np.ndarray  # (C,) the dataset's class id of each stage class
    class_names: list[str]
    x_train: np.ndarray  # (N_tr, D) float32
    y_train: np.ndarray  # (N_tr,) int64 in [0, n_seen)
    x_seen: np.ndarray  # (N_s, D)
    y_seen: np.ndarray  # (N_s,) in [0, n_seen)
    x_unseen: np.ndarray  # (N_u, D)
    y_unseen: np.ndarray  # (N_u,) in [n_seen, C)
    index_train: np.ndarray  # (N_tr,) row in res101.mat, for provenance and leak checks
    index_seen: np.ndarray
    index_unseen: np.ndarray
    # per-image text, only where the stage was loaded with text (zsltune.data.text): the same rows as x_*
    tokens_train: np.ndarray | None = None  # (N_tr, S, L) int32 token ids, 0 = padding
    tokens_seen: np.ndarray | None = None  # (N_s, S, L)
    tokens_unseen: np.ndarray | None = None  # (N_u, S, L)
    vocab_size: int = 0
    word_vectors: np.ndarray | None = None  # (vocab_size, W) float32 frozen word vectors, or None

    @property
    def num_classes(self) -> int:
        return int(self.attributes.shape[0])

    @property
    def n_unseen(self) -> int:
        return self.num_classes - self.n_seen

    @property
    def feature_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def attribute_dim(self) -> int:
        return int(self.attributes.shape[1])

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "stage": self.stage,
            "synthetic": self.synthetic,
            "attributes": self.attribute_kind,
            "images": {"train": len(self.y_train), "seen": len(self.y_seen), "unseen": len(self.y_unseen)},
            "classes": {"seen": self.n_seen, "unseen": self.n_unseen},
            "feature_dim": self.feature_dim,
            "attribute_dim": self.attribute_dim,
        }


def _holdout(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask holding out ``share`` of each class's images (at least one, never all of a class)."""
    mask = np.zeros(labels.shape[0], dtype=bool)
    order = rng.permutation(labels.shape[0])
    lab = labels[order]
    sort = np.argsort(lab, kind="stable")
    counts = np.bincount(lab)
    starts = np.cumsum(counts) - counts
    rank = np.arange(lab.shape[0]) - np.repeat(starts, counts)  # position of each image within its class
    n_hold = np.where(counts >= 2, np.clip(np.round(counts * share), 1, counts - 1), 0)
    mask[order[sort]] = rank < np.repeat(n_hold, counts)
    return mask


def build_stage(ds: Dataset, stage: Stage, *, val_share: float = 0.2, seed: int = 0) -> StageData:
    """Build the ``val`` or ``test`` stage of ``ds``; ``val_share`` of each train class is held out as val-seen."""
    if stage not in STAGES:
        raise DataError(f"stage must be one of {', '.join(STAGES)}, got '{stage}'")
    if not 0.0 < val_share < 1.0:
        raise DataError(f"val_share must satisfy 0 < val_share < 1, got {val_share}")
    if stage == "val":
        seen_cls, unseen_cls = ds.train_classes, ds.val_classes
        tv_labels = ds.labels[ds.trainval]
        pool = ds.trainval[np.isin(tv_labels, seen_cls)]
        held = _holdout(ds.labels[pool], val_share, np.random.default_rng(seed))
        idx_train, idx_seen = pool[~held], pool[held]
        idx_unseen = ds.trainval[np.isin(tv_labels, unseen_cls)]
    else:
        seen_cls, unseen_cls = ds.seen_classes, ds.unseen_classes
        idx_train, idx_seen, idx_unseen = ds.trainval, ds.test_seen, ds.test_unseen
    if idx_train.size == 0 or idx_unseen.size == 0:
        raise DataError(
            f"{ds.root}: the {stage} stage has {idx_train.size} training and {idx_unseen.size} "
            f"unseen images; check the class lists and locs"
        )

    class_ids = np.concatenate([seen_cls, unseen_cls])
    remap = np.full(ds.num_classes, -1, dtype=np.int64)
    remap[class_ids] = np.arange(class_ids.size)

    def rows(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ds.features[idx], remap[ds.labels[idx]]  # (n, D) copy, (n,)

    (x_tr, y_tr), (x_s, y_s), (x_u, y_u) = rows(idx_train), rows(idx_seen), rows(idx_unseen)
    tok = ds.tokens
    text: dict[str, Any] = {}
    if tok is not None:  # copies of the stage's own rows, like the features
        text = {
            "tokens_train": tok[idx_train],
            "tokens_seen": tok[idx_seen],
            "tokens_unseen": tok[idx_unseen],
            "vocab_size": len(ds.vocab) if ds.vocab is not None else int(tok.max()) + 1,
            "word_vectors": ds.word_vectors,
        }
    return StageData(
        dataset=ds.name,
        stage=stage,
        attribute_kind=ds.attribute_kind,
        synthetic=ds.synthetic,
        attributes=np.ascontiguousarray(ds.attributes[class_ids]),
        n_seen=int(seen_cls.size),
        class_ids=class_ids,
        class_names=[ds.class_names[i] for i in class_ids],
        x_train=x_tr,
        y_train=y_tr,
        x_seen=x_s,
        y_seen=y_s,
        x_unseen=x_u,
        y_unseen=y_u,
        index_train=idx_train,
        index_seen=idx_seen,
        index_unseen=idx_unseen,
        **text,
    )
