"""Preprocessing that belongs to a method's config, fitted on the training split only.

Statistics (feature means and scales, attribute means and scales) come from the stage's training images or seen
(training) classes, never from evaluation images: a trainer fits them once in ``__init__`` and applies the same
transform to training and evaluation features. ``tests/methods/test_prep.py`` proves the evaluation rows do not
move them.
"""

from __future__ import annotations

import numpy as np

FEATURE_NORMS = ("none", "std", "l2", "minmax")
ATTRIBUTE_NORMS = ("raw", "l2", "std")


def feature_stats(x_train: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift (D,), scale (D,)) so that ``(x - shift) / scale`` is ``kind``-normalised; from training rows only.

    ``std``: per-dimension mean and standard deviation of the training features (a dimension that never varies
    keeps scale 1). ``minmax``: the training features' per-dimension minimum and range, so they lie in [0, 1] (what
    a generator with a sigmoid output produces; evaluation features may fall outside). ``none`` and ``l2`` (a
    per-row norm, no statistics): shift 0, scale 1.
    """
    d = x_train.shape[1]
    if kind == "minmax":
        lo, hi = x_train.min(0).astype(np.float64), x_train.max(0).astype(np.float64)
        return lo.astype(np.float32), np.where(hi - lo > 1e-8, hi - lo, 1.0).astype(np.float32)
    if kind != "std":
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    x = x_train.astype(np.float64)
    sd = x.std(0)
    return x.mean(0).astype(np.float32), np.where(sd > 1e-8, sd, 1.0).astype(np.float32)


def normalise_attributes(att: np.ndarray, n_seen: int, kind: str) -> np.ndarray:
    """Class attributes (C, P) normalised: ``l2`` per class row; ``std`` per attribute over the seen (training)
    classes only, so the unseen classes' rows never shape the transform; ``raw`` as they are."""
    a = att.astype(np.float32)
    if kind == "l2":
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    if kind == "std":
        seen = a[:n_seen]
        return (a - seen.mean(0)) / np.maximum(seen.std(0), 1e-6)
    return a
