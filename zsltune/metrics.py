"""Evaluation metrics for zero-shot learning and deep metric learning.

Everything here is pure, vectorised numpy: no torch, no ray. Inputs are array-likes (numpy arrays,
lists, or anything ``np.asarray`` accepts); results are plain Python floats, or dicts with a fixed set of
keys (the same keys in every case, with ``nan`` where a value is undefined, e.g. no test samples).

Conventions
-----------
* Class labels index the columns of a score matrix: ``scores[i, c]`` is the score of class ``c`` for
  sample ``i``, so a ``(N, C)`` score matrix covers classes ``0 .. C-1``.
* "Accuracy" in ZSL means *per-class mean* top-1 accuracy (the average over classes of the accuracy
  within each class), as in Xian et al., "Zero-Shot Learning - The Good, the Bad and the Ugly".
* GZSL: ``S`` is the accuracy on seen-class test samples, ``U`` on unseen-class test samples, both with
  predictions made over *all* classes; ``H`` is their harmonic mean. Calibrated stacking
  (Chao et al. 2016, "An Empirical Study and Analysis of Generalized Zero-Shot Learning...") subtracts
  ``gamma`` from every seen-class score before the argmax; sweeping ``gamma`` traces the seen-unseen
  accuracy curve whose area is the AUSUC.

Public functions: :func:`per_class_accuracy`, :func:`harmonic_mean`, :func:`apply_gamma`, :func:`gzsl`,
:func:`zsl_top1`, :func:`calibration_sweep`, :func:`gzsl_report`, :func:`recall_at_k`, :func:`nmi`,
:func:`clustering_nmi`. Shape mismatches and other invalid inputs raise ``ValueError`` with a one-line message.

Metric names are spelled here once (:data:`H`, :data:`U`, :data:`S`, :data:`ZSL_TOP1`, :data:`H_CAL`, ...,
:func:`recall_key`, :func:`oracle_key`); trainers, the sweep and the analysis tables build their lists from them, and
:func:`metric_names` gives the metrics a trainer reports from its metric family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AUSUC",
    "GZSL_KEYS",
    "H_ALPHA",
    "H_CAL",
    "KNOB_METRICS",
    "METRIC_FAMILIES",
    "NMI",
    "PAPER_RECALL_KS",
    "RETRIEVAL_KEYS",
    "ZSL_TOP1",
    "H",
    "S",
    "U",
    "apply_gamma",
    "calibration_sweep",
    "clustering_nmi",
    "gzsl",
    "gzsl_report",
    "harmonic_mean",
    "metric_names",
    "nmi",
    "oracle_key",
    "per_class_accuracy",
    "recall_at_k",
    "recall_key",
    "recall_keys",
    "zsl_top1",
]

# ---- metric names: spelled here only; reports, tables, the sweep and trainers build their lists from these -------
#: GZSL accuracies (no calibration): ``U`` on unseen-class test images, ``S`` on seen ones, ``H`` their harmonic mean
H, U, S = "H", "U", "S"
#: conventional ZSL top-1 (unseen classes compete only with each other); area under the calibration sweep's curve
ZSL_TOP1, AUSUC = "zsl_top1", "AUSUC"
#: H at a knob's value chosen on validation: calibrated stacking's ``gamma``, CLAREL's ``alpha``
H_CAL, H_ALPHA = "H_cal", "H_alpha"
#: normalised mutual information of a k-means clustering of the embeddings (retrieval)
NMI = "NMI"


def recall_key(k: int) -> str:
    """The name of Recall@``k`` in results and tables."""
    return f"recall@{k}"


def recall_keys(ks: Iterable[int]) -> tuple[str, ...]:
    return tuple(recall_key(k) for k in ks)


def oracle_key(name: str) -> str:
    """The test-picked counterpart of a knob's metric: an upper bound no method can claim (``oracle_H_cal``)."""
    return f"oracle_{name}"


#: what every GZSL trainer reports (:func:`gzsl_report`), in this order, besides the chosen ``gamma``
GZSL_KEYS: tuple[str, ...] = (H, U, S, ZSL_TOP1, AUSUC, H_CAL)
#: what every retrieval trainer reports: recall@K for each K of the stage's list (:func:`metric_names`), and NMI
RETRIEVAL_KEYS: tuple[str, ...] = (recall_key(1), NMI)
#: the metrics each family reports, whatever the method and data (a method may report more)
METRIC_FAMILIES: dict[str, tuple[str, ...]] = {"gzsl": GZSL_KEYS, "retrieval": RETRIEVAL_KEYS}
#: knob -> the metric reported at its value (chosen on validation, frozen for the test stage)
KNOB_METRICS: dict[str, str] = {"gamma": H_CAL, "alpha": H_ALPHA}
#: the Recall@K columns deep-metric-learning papers print
PAPER_RECALL_KS: tuple[int, ...] = (1, 2, 4, 8)


def metric_names(family: str, *, recall_ks: Sequence[int] | None = None) -> tuple[str, ...]:
    """The metrics a trainer of metric family ``family`` reports on its data (``()`` for an unknown family).

    ``recall_ks``: a retrieval stage's Recall@K list (data-side: ``--recall-at``), in place of the family's recall@1.
    """
    if family == "retrieval" and recall_ks is not None:
        return (*recall_keys(recall_ks), NMI)
    return METRIC_FAMILIES.get(family, ())


SWEEP_KEYS: tuple[str, ...] = (
    "gammas",
    "U",
    "S",
    "H",
    "best_gamma",
    "best_H",
    "U_at_best",
    "S_at_best",
    "AUSUC",
)

# Upper bound on the number of entries of one (B, M) distance block in recall_at_k (32 MiB in float64).
_DISTANCE_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {_shape(arr)}")
    return arr


def _as_int_labels(values: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = _as_1d(values, name)
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_scores(values: ArrayLike, name: str) -> NDArray[np.floating[Any]]:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {_shape(arr)}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN, got {int(np.isnan(arr).sum())} NaN entries")
    return arr


def _check_same_rows(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of rows, "
            f"got {name_a} {_shape(a)} and {name_b} {_shape(b)}"
        )


def _as_class_set(values: ArrayLike, name: str, num_classes: int) -> NDArray[np.int64]:
    """Sorted unique class indices, each a valid column index of a (N, num_classes) score matrix."""
    arr = np.unique(_as_int_labels(values, name))
    if arr.size == 0:
        raise ValueError(f"{name} must name at least one class, got an empty array")
    if arr[0] < 0 or arr[-1] >= num_classes:
        raise ValueError(
            f"{name} must be column indices in [0, {num_classes}) of the score matrix, "
            f"got values from {arr[0]} to {arr[-1]}"
        )
    return arr


def _class_partition(
    seen_classes: ArrayLike, unseen_classes: ArrayLike, num_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    seen = _as_class_set(seen_classes, "seen_classes", num_classes)
    unseen = _as_class_set(unseen_classes, "unseen_classes", num_classes)
    overlap = np.intersect1d(seen, unseen)
    if overlap.size:
        raise ValueError(
            f"seen_classes and unseen_classes must be disjoint, got {overlap.size} shared classes "
            f"(first: {overlap[:5].tolist()})"
        )
    if seen.size + unseen.size != num_classes:
        raise ValueError(
            f"seen_classes and unseen_classes must together cover all {num_classes} score columns, "
            f"got {seen.size} seen + {unseen.size} unseen = {seen.size + unseen.size}"
        )
    return seen, unseen


def _check_labels_within(labels: np.ndarray, classes: np.ndarray, labels_name: str, classes_name: str) -> None:
    outside = np.setdiff1d(labels, classes)
    if outside.size:
        raise ValueError(
            f"{labels_name} must only contain labels from {classes_name}, "
            f"got {outside.size} other label(s) (first: {outside[:5].tolist()})"
        )


def _check_scores_labels(
    scores: ArrayLike, labels: ArrayLike, scores_name: str, labels_name: str
) -> tuple[NDArray[np.floating[Any]], NDArray[np.int64]]:
    s = _as_scores(scores, scores_name)  # (N, C)
    y = _as_int_labels(labels, labels_name)  # (N,)
    _check_same_rows(s, y, scores_name, labels_name)
    return s, y


# --------------------------------------------------------------------------------------------------
# basic accuracies
# --------------------------------------------------------------------------------------------------


def per_class_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, classes: ArrayLike | None = None) -> float:
    """Mean over classes of the top-1 accuracy within each class (the ZSL standard).

    ``classes`` are the classes to average over (default: the classes present in ``y_true``). Samples
    whose true label is not in ``classes`` are ignored; a listed class with no samples is skipped (it
    does not count as 0). Returns ``nan`` when no listed class has a sample.
    """
    yt = _as_1d(y_true, "y_true")  # (N,)
    yp = _as_1d(y_pred, "y_pred")  # (N,)
    _check_same_rows(yt, yp, "y_true", "y_pred")
    cls = np.unique(yt) if classes is None else np.unique(_as_1d(classes, "classes"))  # (K,)
    if cls.size == 0 or yt.size == 0:
        return float("nan")
    pos = np.searchsorted(cls, yt)  # (N,)
    pos_clipped = np.minimum(pos, cls.size - 1)
    member = (pos < cls.size) & (cls[pos_clipped] == yt)  # (N,)
    idx = pos_clipped[member]
    counts = np.bincount(idx, minlength=cls.size)  # (K,)
    correct = np.bincount(idx, weights=(yt == yp)[member], minlength=cls.size)  # (K,)
    present = counts > 0
    if not present.any():
        return float("nan")
    return float(np.mean(correct[present] / counts[present]))


def harmonic_mean(u: float, s: float) -> float:
    """Harmonic mean ``2us / (u + s)``; 0 when ``u + s == 0``, ``nan`` if either input is ``nan``."""
    u, s = float(u), float(s)
    if math.isnan(u) or math.isnan(s):
        return float("nan")
    if u + s == 0:
        return 0.0
    return 2.0 * u * s / (u + s)


def apply_gamma(scores: ArrayLike, *, seen_classes: ArrayLike, gamma: float) -> NDArray[np.floating[Any]]:
    """Calibrated stacking: a copy of ``scores`` (N, C) with ``gamma`` subtracted from seen-class columns.

    Larger ``gamma`` favours unseen classes; ``gamma = 0`` leaves the scores unchanged.
    """
    s = _as_scores(scores, "scores")  # (N, C)
    seen = _as_class_set(seen_classes, "seen_classes", s.shape[1])
    out = s.astype(np.result_type(s.dtype, np.float64), copy=True)  # (N, C)
    out[:, seen] -= gamma
    return out


def gzsl(
    scores_seen: ArrayLike,
    y_seen: ArrayLike,
    scores_unseen: ArrayLike,
    y_unseen: ArrayLike,
    *,
    seen_classes: ArrayLike,
    unseen_classes: ArrayLike,
    gamma: float = 0.0,
) -> dict[str, float]:
    """Generalised ZSL accuracies ``{"U", "S", "H"}`` with calibrated stacking.

    ``scores_seen`` (N_s, C) / ``y_seen`` (N_s,) are the test samples of seen classes, ``scores_unseen``
    (N_u, C) / ``y_unseen`` (N_u,) those of unseen classes. ``seen_classes`` and ``unseen_classes`` must
    partition the C score columns. Each sample is predicted as the argmax over all C columns after
    subtracting ``gamma`` from the seen-class columns. ``S`` is the per-class accuracy of the seen-test
    samples over ``seen_classes``, ``U`` that of the unseen-test samples over ``unseen_classes``, and
    ``H = 2US / (U + S)`` (0 when ``U + S == 0``). An empty test set gives ``nan`` for its accuracy
    and for ``H``.
    """
    ss, ys = _check_scores_labels(scores_seen, y_seen, "scores_seen", "y_seen")
    su, yu = _check_scores_labels(scores_unseen, y_unseen, "scores_unseen", "y_unseen")
    if ss.shape[1] != su.shape[1]:
        raise ValueError(
            f"scores_seen and scores_unseen must have the same number of columns (classes), "
            f"got scores_seen {_shape(ss)} and scores_unseen {_shape(su)}"
        )
    seen, unseen = _class_partition(seen_classes, unseen_classes, ss.shape[1])
    _check_labels_within(ys, seen, "y_seen", "seen_classes")
    _check_labels_within(yu, unseen, "y_unseen", "unseen_classes")

    pred_s = apply_gamma(ss, seen_classes=seen, gamma=gamma).argmax(axis=1)  # (N_s,)
    pred_u = apply_gamma(su, seen_classes=seen, gamma=gamma).argmax(axis=1)  # (N_u,)
    s_acc = per_class_accuracy(ys, pred_s, classes=seen)
    u_acc = per_class_accuracy(yu, pred_u, classes=unseen)
    return {U: u_acc, S: s_acc, H: harmonic_mean(u_acc, s_acc)}


def zsl_top1(scores_unseen: ArrayLike, y_unseen: ArrayLike, *, unseen_classes: ArrayLike) -> float:
    """Conventional ZSL accuracy: argmax restricted to the unseen-class columns, per-class mean.

    ``scores_unseen`` is (N, C) over all C classes; only the columns in ``unseen_classes`` compete.
    """
    s, y = _check_scores_labels(scores_unseen, y_unseen, "scores_unseen", "y_unseen")
    unseen = _as_class_set(unseen_classes, "unseen_classes", s.shape[1])  # (C_u,)
    _check_labels_within(y, unseen, "y_unseen", "unseen_classes")
    pred = unseen[s[:, unseen].argmax(axis=1)]  # (N,)
    return per_class_accuracy(y, pred, classes=unseen)


# --------------------------------------------------------------------------------------------------
# calibration sweep / AUSUC
# --------------------------------------------------------------------------------------------------


def _margins_and_hits(
    scores: np.ndarray, y: np.ndarray, seen: np.ndarray, unseen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: best-seen minus best-unseen score, and whether each group's argmax is correct.

    With calibrated stacking a sample is predicted seen iff ``margin > gamma``; the class predicted
    within each group does not depend on gamma.
    """
    rows = np.arange(scores.shape[0])
    s_part = scores[:, seen]  # (N, C_s)
    u_part = scores[:, unseen]  # (N, C_u)
    s_arg = s_part.argmax(axis=1)  # (N,)
    u_arg = u_part.argmax(axis=1)  # (N,)
    margin = s_part[rows, s_arg].astype(np.float64) - u_part[rows, u_arg]  # (N,)
    return margin, seen[s_arg] == y, unseen[u_arg] == y


def _per_class_weights(y: np.ndarray) -> np.ndarray:
    """Weight of each sample in a per-class mean accuracy: 1 / (class count * number of classes)."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * counts.size)  # (N,)


def _nan_sweep(gammas: np.ndarray) -> dict[str, Any]:
    nan_curve = np.full(gammas.shape, np.nan)
    return {
        "gammas": gammas,
        "U": nan_curve,
        "S": nan_curve.copy(),
        "H": nan_curve.copy(),
        "best_gamma": float("nan"),
        "best_H": float("nan"),
        "U_at_best": float("nan"),
        "S_at_best": float("nan"),
        "AUSUC": float("nan"),
    }


def calibration_sweep(
    scores_seen: ArrayLike,
    y_seen: ArrayLike,
    scores_unseen: ArrayLike,
    y_unseen: ArrayLike,
    *,
    seen_classes: ArrayLike,
    unseen_classes: ArrayLike,
    num_gammas: int | None = 200,
) -> dict[str, Any]:
    """Sweep the calibrated-stacking ``gamma`` and report the seen-unseen curve and its area (AUSUC).

    Arguments are as in :func:`gzsl`. The curve only changes where ``gamma`` crosses the margin
    (best seen score minus best unseen score) of a sample whose group-wise prediction is correct, so the
    candidate grid is: one value below every margin (all predictions seen: ``U = 0``, ``S`` maximal),
    the midpoints between consecutive distinct such margins, and one value above every margin (all
    predictions unseen: ``S = 0``, ``U`` maximal). With ``num_gammas=None``, or when there are at most
    ``num_gammas`` candidates, every candidate is used and the curve (hence the AUSUC) is exact;
    otherwise ``num_gammas`` candidates are taken evenly by rank (quantiles of the margins), always
    keeping both end points.

    Returns a dict with keys ``gammas``, ``U``, ``S``, ``H`` (float64 arrays of shape (G,), ``gammas``
    increasing) and ``best_gamma``, ``best_H``, ``U_at_best``, ``S_at_best`` (the grid point with the
    largest H, first one on ties) and ``AUSUC`` (floats). AUSUC is the trapezoid-rule area under S as a
    function of U, over the curve sorted by U including both end points; it lies in [0, 1]. Values at
    a grid ``gamma`` equal ``gzsl(..., gamma=gamma)``. If either test set is empty, all curve values
    and scalars are ``nan``.
    """
    ss, ys = _check_scores_labels(scores_seen, y_seen, "scores_seen", "y_seen")
    su, yu = _check_scores_labels(scores_unseen, y_unseen, "scores_unseen", "y_unseen")
    if ss.shape[1] != su.shape[1]:
        raise ValueError(
            f"scores_seen and scores_unseen must have the same number of columns (classes), "
            f"got scores_seen {_shape(ss)} and scores_unseen {_shape(su)}"
        )
    if num_gammas is not None and (isinstance(num_gammas, bool) or int(num_gammas) < 2):
        raise ValueError(f"num_gammas must be an integer >= 2 or None, got {num_gammas!r}")
    seen, unseen = _class_partition(seen_classes, unseen_classes, ss.shape[1])
    _check_labels_within(ys, seen, "y_seen", "seen_classes")
    _check_labels_within(yu, unseen, "y_unseen", "unseen_classes")

    m_s, hit_s, _ = _margins_and_hits(ss, ys, seen, unseen)  # (N_s,) each
    m_u, _, hit_u = _margins_and_hits(su, yu, seen, unseen)  # (N_u,) each
    all_m = np.concatenate([m_s, m_u])  # (N_s + N_u,)
    if all_m.size == 0:
        raise ValueError("calibration_sweep needs at least one test sample, got 0 seen and 0 unseen")
    if not np.isfinite(all_m).all():
        raise ValueError(
            "calibration_sweep needs finite margins (best seen score minus best unseen score), "
            f"got {int((~np.isfinite(all_m)).sum())} non-finite margins; check the scores for inf"
        )

    # Candidate gammas: below all margins, midpoints between contributing breakpoints, above all margins.
    lo, hi = float(all_m.min()), float(all_m.max())
    pad = max(1e-3 * (hi - lo), 1e-6 * max(1.0, abs(lo), abs(hi)))
    breaks = np.unique(np.concatenate([m_s[hit_s], m_u[hit_u]]))  # (K,) sorted
    mids = breaks[:-1] + 0.5 * np.diff(breaks)  # (K-1,)
    gammas = np.concatenate([[lo - pad], mids, [hi + pad]])  # (K+1,)
    if num_gammas is not None and gammas.size > num_gammas:
        keep = np.unique(np.rint(np.linspace(0, gammas.size - 1, int(num_gammas))).astype(np.int64))
        gammas = gammas[keep]  # (G,)

    if ys.size == 0 or yu.size == 0:
        return _nan_sweep(gammas)

    # S(gamma): weighted count of correct seen-test samples still predicted seen (margin > gamma).
    w_s = _per_class_weights(ys)[hit_s]
    order_s = np.argsort(m_s[hit_s], kind="stable")
    ms_sorted = m_s[hit_s][order_s]  # (K_s,)
    suffix = np.concatenate([np.cumsum(w_s[order_s][::-1])[::-1], [0.0]])  # (K_s + 1,)
    s_curve = suffix[np.searchsorted(ms_sorted, gammas, side="right")]  # (G,)

    # U(gamma): weighted count of correct unseen-test samples predicted unseen (margin <= gamma).
    w_u = _per_class_weights(yu)[hit_u]
    order_u = np.argsort(m_u[hit_u], kind="stable")
    mu_sorted = m_u[hit_u][order_u]  # (K_u,)
    prefix = np.concatenate([[0.0], np.cumsum(w_u[order_u])])  # (K_u + 1,)
    u_curve = prefix[np.searchsorted(mu_sorted, gammas, side="right")]  # (G,)

    with np.errstate(invalid="ignore", divide="ignore"):
        h_curve = 2.0 * u_curve * s_curve / (u_curve + s_curve)  # (G,)
    h_curve[(u_curve + s_curve) == 0] = 0.0

    best = int(np.argmax(h_curve))
    order = np.lexsort((-s_curve, u_curve))  # by U ascending, then S descending
    u_sorted, s_sorted = u_curve[order], s_curve[order]
    ausuc = float(np.sum(np.diff(u_sorted) * (s_sorted[1:] + s_sorted[:-1]) * 0.5))
    return {
        "gammas": gammas,
        "U": u_curve,
        "S": s_curve,
        "H": h_curve,
        "best_gamma": float(gammas[best]),
        "best_H": float(h_curve[best]),
        "U_at_best": float(u_curve[best]),
        "S_at_best": float(s_curve[best]),
        "AUSUC": ausuc,
    }


def gzsl_report(
    s_seen: np.ndarray,
    y_seen: np.ndarray,
    s_unseen: np.ndarray,
    y_unseen: np.ndarray,
    *,
    n_seen: int,
    gamma: float | None = None,
) -> dict[str, float]:
    """U, S, H (uncalibrated), ZSL top-1, AUSUC, and calibrated stacking: ``H_cal`` at ``gamma``.

    Score columns ``0 .. n_seen-1`` are the seen classes, the rest the unseen ones. Keys: :data:`GZSL_KEYS` in that
    order, then ``gamma``. ``gamma=None`` (validation: where the knob is chosen): ``gamma`` is the H-best offset of
    the calibration sweep on these images and ``H_cal`` its H. A given ``gamma`` (the test stage, frozen from
    validation) is applied as it is; the H-best offset on these images is then reported only as ``oracle_gamma`` /
    ``oracle_H_cal``.
    """
    c = s_seen.shape[1] if s_seen.size else s_unseen.shape[1]
    seen, unseen = np.arange(n_seen), np.arange(n_seen, c)
    g = gzsl(s_seen, y_seen, s_unseen, y_unseen, seen_classes=seen, unseen_classes=unseen)
    cal = calibration_sweep(s_seen, y_seen, s_unseen, y_unseen, seen_classes=seen, unseen_classes=unseen)
    out = {
        H: g["H"],
        U: g["U"],
        S: g["S"],
        ZSL_TOP1: zsl_top1(s_unseen, y_unseen, unseen_classes=unseen),
        AUSUC: float(cal["AUSUC"]),
        H_CAL: float(cal["best_H"]),
        "gamma": float(cal["best_gamma"]),
    }
    if gamma is not None:
        at = gzsl(s_seen, y_seen, s_unseen, y_unseen, seen_classes=seen, unseen_classes=unseen, gamma=gamma)
        out.update({oracle_key(H_CAL): out[H_CAL], "oracle_gamma": out["gamma"], H_CAL: at["H"], "gamma": float(gamma)})
    return out


# --------------------------------------------------------------------------------------------------
# retrieval / clustering (deep metric learning)
# --------------------------------------------------------------------------------------------------


def recall_at_k(
    query_embeddings: ArrayLike,
    gallery_embeddings: ArrayLike,
    y_query: ArrayLike,
    y_gallery: ArrayLike,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    exclude_self: bool = False,
) -> dict[str, float]:
    """Recall@k: fraction of queries whose k nearest gallery items (Euclidean) include one of their label.

    Returns ``{"recall@k": value}`` for each k in ``ks`` (in that order). ``exclude_self=True`` is for
    query == gallery: gallery item i is never a neighbour of query i (the diagonal is dropped), which
    requires as many queries as gallery items. A query with no same-label gallery item counts as a
    miss. Ties in distance are resolved in favour of the same-label item. Distances are computed in
    blocks of rows, so 10k x 10k fits in a few tens of MiB; ``nan`` for every k if there are no queries.
    """
    q = np.asarray(query_embeddings)  # (N, D)
    g = np.asarray(gallery_embeddings)  # (M, D)
    if q.ndim != 2 or g.ndim != 2:
        raise ValueError(
            f"query_embeddings and gallery_embeddings must be 2-D (samples, dim), got {_shape(q)} and {_shape(g)}"
        )
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query_embeddings and gallery_embeddings must have the same dimension, "
            f"got query_embeddings {_shape(q)} and gallery_embeddings {_shape(g)}"
        )
    yq = _as_1d(y_query, "y_query")  # (N,)
    yg = _as_1d(y_gallery, "y_gallery")  # (M,)
    _check_same_rows(q, yq, "query_embeddings", "y_query")
    _check_same_rows(g, yg, "gallery_embeddings", "y_gallery")
    if exclude_self and q.shape[0] != g.shape[0]:
        raise ValueError(
            f"exclude_self=True needs as many queries as gallery items (query == gallery), "
            f"got query_embeddings {_shape(q)} and gallery_embeddings {_shape(g)}"
        )
    ks_list = [int(k) for k in ks]
    if not ks_list or min(ks_list) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {tuple(ks)!r}")
    keys = list(recall_keys(ks_list))
    n, m = q.shape[0], g.shape[0]
    if n == 0:
        return dict.fromkeys(keys, float("nan"))

    dtype = np.result_type(q.dtype, g.dtype, np.float32)
    q = q.astype(dtype, copy=False)
    g = g.astype(dtype, copy=False)
    g_sq = np.einsum("ij,ij->i", g, g)  # (M,)
    # per query: number of other-label gallery items strictly closer than its nearest same-label item
    rank = np.empty(n, dtype=np.int64)  # (N,)
    has_pos = np.empty(n, dtype=bool)  # (N,)
    block = max(1, _DISTANCE_BLOCK_ELEMENTS // max(m, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        qb = q[start:stop]  # (B, D)
        # squared Euclidean distance up to a per-row constant (|q|^2), which does not change the ranking
        dist = g_sq[None, :] - 2.0 * (qb @ g.T)  # (B, M)
        if exclude_self:
            rows = np.arange(stop - start)
            dist[rows, start + rows] = np.inf
        same = yq[start:stop, None] == yg[None, :]  # (B, M)
        nearest_pos = np.where(same, dist, np.inf).min(axis=1)  # (B,)
        has_pos[start:stop] = np.isfinite(nearest_pos)
        rank[start:stop] = (dist < nearest_pos[:, None]).sum(axis=1)
    return {key: float(np.mean(has_pos & (rank < k))) for key, k in zip(keys, ks_list, strict=True)}


def nmi(y_true: ArrayLike, y_cluster: ArrayLike) -> float:
    """Normalised mutual information with arithmetic-mean normalisation, in nats.

    Matches ``sklearn.metrics.normalized_mutual_info_score`` (default ``average_method="arithmetic"``),
    including its limit cases: 1.0 when both labelings have a single cluster (or no samples), 0.0 when
    the mutual information is 0. Invariant to permutations of the label values.
    """
    yt = _as_1d(y_true, "y_true")  # (N,)
    yc = _as_1d(y_cluster, "y_cluster")  # (N,)
    _check_same_rows(yt, yc, "y_true", "y_cluster")
    _, ti = np.unique(yt, return_inverse=True)  # (N,)
    _, ci = np.unique(yc, return_inverse=True)  # (N,)
    n_t = int(ti.max()) + 1 if ti.size else 0
    n_c = int(ci.max()) + 1 if ci.size else 0
    if n_t == n_c and n_t <= 1:
        return 1.0
    if n_t == 1 or n_c == 1:
        return 0.0

    total = float(yt.size)
    a = np.bincount(ti, minlength=n_t).astype(np.float64)  # (T,) row marginals
    b = np.bincount(ci, minlength=n_c).astype(np.float64)  # (K,) column marginals
    # Sparse contingency: only the non-zero (class, cluster) cells, so T x K never has to be dense.
    cells, n_ij = np.unique(ti.astype(np.int64) * n_c + ci, return_counts=True)  # (Z,)
    row, col = np.divmod(cells, n_c)
    p_ij = n_ij / total
    terms = p_ij * (np.log(n_ij) - math.log(total)) + p_ij * (2.0 * math.log(total) - np.log(a[row] * b[col]))
    terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
    mi = max(float(terms.sum()), 0.0)
    if mi == 0.0:
        return 0.0
    pa, pb = a / total, b / total
    h_true = float(-np.sum(pa * np.log(pa)))
    h_cluster = float(-np.sum(pb * np.log(pb)))
    return mi / (0.5 * (h_true + h_cluster))


def clustering_nmi(embeddings: ArrayLike, y_true: ArrayLike, *, n_clusters: int | None = None, seed: int = 0) -> float:
    """NMI between ``y_true`` and a k-means clustering of ``embeddings`` (N, D).

    Runs ``sklearn.cluster.KMeans(n_clusters, n_init=10, random_state=seed)``; ``n_clusters`` defaults
    to the number of distinct labels in ``y_true``. scikit-learn is imported only when this is called.
    """
    x = np.asarray(embeddings)  # (N, D)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (samples, dim), got shape {_shape(x)}")
    y = _as_1d(y_true, "y_true")  # (N,)
    _check_same_rows(x, y, "embeddings", "y_true")
    k = int(np.unique(y).size) if n_clusters is None else int(n_clusters)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"n_clusters must be between 1 and the number of samples {x.shape[0]}, got {k}")
    from sklearn.cluster import KMeans

    assignment = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)  # (N,)
    return nmi(y, assignment)
