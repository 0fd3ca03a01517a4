"""Tests for zsltune.metrics: hand-computed tiny cases, edge cases and brute-force cross-checks."""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest

from zsltune import metrics
from zsltune.metrics import (
    apply_gamma,
    calibration_sweep,
    clustering_nmi,
    gzsl,
    harmonic_mean,
    nmi,
    per_class_accuracy,
    recall_at_k,
    zsl_top1,
)

SWEEP_KEYS = {"gammas", "U", "S", "H", "best_gamma", "best_H", "U_at_best", "S_at_best", "AUSUC"}

# --------------------------------------------------------------------------------------------------
# A tiny GZSL problem with 4 classes: seen {0, 1}, unseen {2, 3}.
# margin = best seen score - best unseen score; "hit" = the group-wise argmax is the true class.
# --------------------------------------------------------------------------------------------------
SEEN = np.array([0, 1])
UNSEEN = np.array([2, 3])
SCORES_SEEN = np.array(
    [
        [0.9, 0.1, 0.5, 0.0],  # y=0: seen argmax 0 (hit), margin  0.4
        [0.2, 0.6, 0.7, 0.0],  # y=0: seen argmax 1 (miss), margin -0.1
        [0.1, 0.8, 0.0, 0.6],  # y=1: seen argmax 1 (hit), margin  0.2
        [0.3, 0.7, 0.0, 0.1],  # y=1: seen argmax 1 (hit), margin  0.6
    ]
)
Y_SEEN = np.array([0, 0, 1, 1])
SCORES_UNSEEN = np.array(
    [
        [0.5, 0.0, 0.8, 0.1],  # y=2: unseen argmax 2 (hit), margin -0.3
        [0.0, 0.9, 0.3, 0.6],  # y=3: unseen argmax 3 (hit), margin  0.3
        [0.4, 0.0, 0.6, 0.2],  # y=3: unseen argmax 2 (miss), margin -0.2
    ]
)
Y_UNSEEN = np.array([2, 3, 3])
TINY = (SCORES_SEEN, Y_SEEN, SCORES_UNSEEN, Y_UNSEEN)
PARTS = {"seen_classes": SEEN, "unseen_classes": UNSEEN}


def _random_gzsl(seed: int, n_seen: int = 300, n_unseen: int = 200, c_seen: int = 6, c_unseen: int = 4):
    rng = np.random.default_rng(seed)
    c = c_seen + c_unseen
    seen, unseen = np.arange(c_seen), np.arange(c_seen, c)
    ys = rng.choice(seen, n_seen)
    yu = rng.choice(unseen, n_unseen)
    ss = rng.normal(size=(n_seen, c))
    ss[np.arange(n_seen), ys] += 1.5
    ss[:, seen] += 0.5  # seen-class bias, as in real GZSL models
    su = rng.normal(size=(n_unseen, c))
    su[np.arange(n_unseen), yu] += 1.5
    su[:, seen] += 0.5
    return (ss, ys, su, yu), {"seen_classes": seen, "unseen_classes": unseen}


# --------------------------------------------------------------------------------------------------
# per_class_accuracy / harmonic_mean
# --------------------------------------------------------------------------------------------------


def test_per_class_accuracy_hand_computed() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    # class 0: 2/3, class 1: 1/2, class 2: 1/1 -> mean 13/18 (overall accuracy would be 4/6)
    assert per_class_accuracy(y_true, y_pred) == pytest.approx(13 / 18)
    assert per_class_accuracy(y_true, y_pred, classes=[0, 1]) == pytest.approx(7 / 12)
    assert isinstance(per_class_accuracy(y_true, y_pred), float)


def test_per_class_accuracy_class_without_samples_is_skipped() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    assert per_class_accuracy(y_true, y_pred, classes=[0, 1, 2, 3]) == pytest.approx(13 / 18)
    assert math.isnan(per_class_accuracy(y_true, y_pred, classes=[7, 8]))
    assert math.isnan(per_class_accuracy(np.array([], dtype=int), np.array([], dtype=int)))


def test_per_class_accuracy_all_wrong_all_right() -> None:
    y = np.array([3, 3, 5, 7, 7, 7])
    assert per_class_accuracy(y, y) == 1.0
    assert per_class_accuracy(y, y + 1) == 0.0


def test_harmonic_mean() -> None:
    assert harmonic_mean(0.5, 0.75) == pytest.approx(0.6)
    assert harmonic_mean(0.0, 0.8) == 0.0
    assert harmonic_mean(0.8, 0.0) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(float("nan"), 0.5))


# --------------------------------------------------------------------------------------------------
# gzsl / zsl_top1 / apply_gamma
# --------------------------------------------------------------------------------------------------


def test_apply_gamma_only_shifts_seen_columns() -> None:
    out = apply_gamma(SCORES_SEEN, seen_classes=SEEN, gamma=0.25)
    np.testing.assert_allclose(out[:, :2], SCORES_SEEN[:, :2] - 0.25)
    np.testing.assert_array_equal(out[:, 2:], SCORES_SEEN[:, 2:])
    assert out is not SCORES_SEEN


def test_gzsl_hand_computed() -> None:
    res = gzsl(*TINY, **PARTS)
    assert set(res) == {"U", "S", "H"}
    # gamma=0: seen-test: class 0 -> 1/2 (row 1 goes unseen), class 1 -> 2/2; unseen-test: class 2 -> 1,
    # class 3 -> 0/2 (row 1 goes seen, row 2 wrong within unseen)
    assert res["S"] == pytest.approx(0.75)
    assert res["U"] == pytest.approx(0.5)
    assert res["H"] == pytest.approx(0.6)
    # gamma=0.35: predicted seen iff margin > 0.35 -> S = (1/2 + 1/2)/2, U = (1 + 1/2)/2
    res = gzsl(*TINY, **PARTS, gamma=0.35)
    assert (res["S"], res["U"], res["H"]) == pytest.approx((0.5, 0.75, 0.6))


def test_gzsl_gamma_extremes() -> None:
    all_unseen = gzsl(*TINY, **PARTS, gamma=10.0)
    assert all_unseen == pytest.approx({"U": 0.75, "S": 0.0, "H": 0.0})
    all_seen = gzsl(*TINY, **PARTS, gamma=-10.0)
    assert all_seen == pytest.approx({"U": 0.0, "S": 0.75, "H": 0.0})


def test_gzsl_gamma_extremes_random() -> None:
    args, parts = _random_gzsl(1)
    assert gzsl(*args, **parts, gamma=1e6)["S"] == 0.0
    assert gzsl(*args, **parts, gamma=-1e6)["U"] == 0.0
    assert gzsl(*args, **parts, gamma=1e6)["H"] == 0.0


def test_gzsl_all_right_and_all_wrong() -> None:
    eye = np.eye(4)
    right = gzsl(eye[[0, 1]], [0, 1], eye[[2, 3]], [2, 3], **PARTS)
    assert right == {"U": 1.0, "S": 1.0, "H": 1.0}
    wrong = gzsl(eye[[1, 0]], [0, 1], eye[[3, 2]], [2, 3], **PARTS)
    assert wrong == {"U": 0.0, "S": 0.0, "H": 0.0}


def test_gzsl_empty_test_set_gives_nan_with_fixed_keys() -> None:
    res = gzsl(SCORES_SEEN, Y_SEEN, np.zeros((0, 4)), np.zeros(0, dtype=int), **PARTS)
    assert set(res) == {"U", "S", "H"}
    assert res["S"] == pytest.approx(0.75)
    assert math.isnan(res["U"]) and math.isnan(res["H"])


def test_zsl_top1_restricts_to_unseen_columns() -> None:
    # Row 0 of the unseen set has its overall argmax on class 2 anyway; row 1 is argmax 3 among unseen
    # even though seen class 1 scores higher; row 2 is wrong within unseen -> class 2: 1, class 3: 1/2.
    assert zsl_top1(SCORES_UNSEEN, Y_UNSEEN, unseen_classes=UNSEEN) == pytest.approx(0.75)
    assert zsl_top1(np.eye(4)[[2, 3]], [2, 3], unseen_classes=UNSEEN) == 1.0
    assert zsl_top1(np.eye(4)[[3, 2]], [2, 3], unseen_classes=UNSEEN) == 0.0


# --------------------------------------------------------------------------------------------------
# calibration_sweep / AUSUC
# --------------------------------------------------------------------------------------------------


def test_calibration_sweep_hand_computed() -> None:
    res = calibration_sweep(*TINY, **PARTS)
    assert set(res) == SWEEP_KEYS
    # Breakpoints (margins of group-wise hits): -0.3 (unseen), 0.2, 0.3 (unseen), 0.4, 0.6. Weights:
    # seen rows 0, 2, 3 -> 1/4 each; unseen row 0 (class 2, alone) -> 1/2, unseen row 1 -> 1/4.
    np.testing.assert_allclose(res["U"], [0.0, 0.5, 0.5, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(res["S"], [0.75, 0.75, 0.5, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(res["H"], [0.0, 0.6, 0.5, 0.6, 0.375, 0.0])
    assert res["gammas"][0] < -0.3 and res["gammas"][-1] > 0.6
    assert np.all(np.diff(res["gammas"]) > 0)
    # area: 0.5 * 0.75 + 0.25 * 0.5
    assert res["AUSUC"] == pytest.approx(0.5)
    assert res["best_H"] == pytest.approx(0.6)
    assert res["best_gamma"] == pytest.approx(-0.05)  # first maximum: midpoint of -0.3 and 0.2
    assert (res["U_at_best"], res["S_at_best"]) == pytest.approx((0.5, 0.75))
    for key in ("best_gamma", "best_H", "U_at_best", "S_at_best", "AUSUC"):
        assert isinstance(res[key], float)


def test_calibration_sweep_endpoints_and_subsampling() -> None:
    full = calibration_sweep(*TINY, **PARTS)
    small = calibration_sweep(*TINY, **PARTS, num_gammas=3)
    assert small["gammas"].shape == (3,)
    assert small["gammas"][0] == full["gammas"][0] and small["gammas"][-1] == full["gammas"][-1]
    for res in (full, small):
        # first point: everything predicted seen; last point: everything predicted unseen
        assert res["U"][0] == 0.0 and res["S"][0] == pytest.approx(gzsl(*TINY, **PARTS, gamma=-10)["S"])
        assert res["S"][-1] == 0.0 and res["U"][-1] == pytest.approx(gzsl(*TINY, **PARTS, gamma=10)["U"])
        assert 0.0 <= res["AUSUC"] <= 1.0


def test_calibration_sweep_matches_gzsl_and_is_monotone() -> None:
    args, parts = _random_gzsl(2)
    res = calibration_sweep(*args, **parts, num_gammas=None)
    assert np.all(np.diff(res["U"]) >= 0) and np.all(np.diff(res["S"]) <= 0)
    assert res["U"][0] == 0.0 and res["S"][-1] == 0.0
    idx = np.linspace(0, res["gammas"].size - 1, 40).round().astype(int)
    for i in idx:
        direct = gzsl(*args, **parts, gamma=float(res["gammas"][i]))
        assert (res["U"][i], res["S"][i], res["H"][i]) == pytest.approx((direct["U"], direct["S"], direct["H"]))
    assert res["best_H"] == pytest.approx(float(np.max(res["H"])))
    assert 0.0 <= res["AUSUC"] <= res["U"][-1] * res["S"][0] <= 1.0


def test_ausuc_matches_brute_force_fine_grid() -> None:
    args, parts = _random_gzsl(3)
    ss, ys, su, yu = args
    seen = parts["seen_classes"]
    exact = calibration_sweep(*args, **parts, num_gammas=None)
    default = calibration_sweep(*args, **parts)
    # brute force: literal argmax after subtracting gamma from the seen columns, on a fine uniform grid
    lo, hi = exact["gammas"][0], exact["gammas"][-1]
    us, ss_acc = [], []
    for gamma in np.linspace(lo, hi, 2001):
        pred_s = apply_gamma(ss, seen_classes=seen, gamma=gamma).argmax(1)
        pred_u = apply_gamma(su, seen_classes=seen, gamma=gamma).argmax(1)
        ss_acc.append(per_class_accuracy(ys, pred_s))
        us.append(per_class_accuracy(yu, pred_u))
    u_arr, s_arr = np.array(us), np.array(ss_acc)
    order = np.lexsort((-s_arr, u_arr))
    brute = float(np.sum(np.diff(u_arr[order]) * (s_arr[order][1:] + s_arr[order][:-1]) / 2))
    assert exact["AUSUC"] == pytest.approx(brute, abs=3e-3)
    assert default["AUSUC"] == pytest.approx(exact["AUSUC"], abs=1e-2)
    assert 0.0 < exact["AUSUC"] < 1.0


def test_calibration_sweep_empty_set_keeps_keys() -> None:
    res = calibration_sweep(SCORES_SEEN, Y_SEEN, np.zeros((0, 4)), np.zeros(0, dtype=int), **PARTS)
    assert set(res) == SWEEP_KEYS
    assert math.isnan(res["AUSUC"]) and math.isnan(res["best_H"]) and np.isnan(res["U"]).all()


def test_calibration_sweep_is_fast() -> None:
    rng = np.random.default_rng(0)
    n_s, n_u, c = 10_000, 5_000, 200
    seen, unseen = np.arange(150), np.arange(150, c)
    ys, yu = rng.choice(seen, n_s), rng.choice(unseen, n_u)
    ss, su = rng.normal(size=(n_s, c)), rng.normal(size=(n_u, c))
    ss[np.arange(n_s), ys] += 2.0
    su[np.arange(n_u), yu] += 2.0
    start = time.perf_counter()
    res = calibration_sweep(ss, ys, su, yu, seen_classes=seen, unseen_classes=unseen, num_gammas=200)
    assert time.perf_counter() - start < 1.0
    assert res["gammas"].shape == (200,)


# --------------------------------------------------------------------------------------------------
# recall@k
# --------------------------------------------------------------------------------------------------


def _brute_recall(q, g, yq, yg, k, exclude_self):
    hits = []
    for i in range(len(q)):
        d = np.linalg.norm(g - q[i], axis=1)
        if exclude_self:
            d[i] = np.inf
        nearest = np.argsort(d, kind="stable")[:k]
        nearest = nearest[np.isfinite(d[nearest])]
        hits.append(bool(np.any(yg[nearest] == yq[i])))
    return float(np.mean(hits))


def test_recall_at_k_hand_computed() -> None:
    x = np.array([[0.0], [1.0], [10.0], [12.0]])
    y = np.array([0, 1, 0, 1])
    # neighbours by distance (label), self excluded:
    #   0:  1 (1), 10 (0), 12 (1)  -> first same-label neighbour at rank 2
    #   1:  0 (0), 10 (0), 12 (1)  -> rank 3
    #   10: 12 (1), 1 (1), 0 (0)   -> rank 3
    #   12: 10 (0), 1 (1), 0 (0)   -> rank 2
    res = recall_at_k(x, x, y, y, ks=(1, 2, 3), exclude_self=True)
    assert list(res) == ["recall@1", "recall@2", "recall@3"]
    assert res == pytest.approx({"recall@1": 0.0, "recall@2": 0.5, "recall@3": 1.0})


@pytest.mark.parametrize("exclude_self", [False, True])
def test_recall_at_k_matches_brute_force(monkeypatch: pytest.MonkeyPatch, exclude_self: bool) -> None:
    rng = np.random.default_rng(4)
    g = rng.normal(size=(80, 5))
    yg = rng.integers(0, 6, 80)
    if exclude_self:
        q, yq = g, yg
    else:
        q, yq = rng.normal(size=(50, 5)), rng.integers(0, 7, 50)  # label 6 has no gallery match
    ks = (1, 2, 4, 8, 16)
    monkeypatch.setattr(metrics, "_DISTANCE_BLOCK_ELEMENTS", 7 * g.shape[0])  # several row blocks
    res = recall_at_k(q, g, yq, yg, ks=ks, exclude_self=exclude_self)
    for k in ks:
        assert res[f"recall@{k}"] == pytest.approx(_brute_recall(q, g, yq, yg, k, exclude_self))


def test_sop_recall_list_matches_brute_force() -> None:
    """The Stanford Online Products list (1, 10, 100, 1000) on a toy set of 1,100 images in 550 classes of 2, like
    SOP's (most classes 2-12 images): every K against a brute-force neighbour search, and Recall@1000 is not 1."""
    from zsltune.data.image_source import recall_ks

    ks = recall_ks("sop", "anything")
    assert ks == (1, 10, 100, 1000) and recall_ks(None, "/data/Stanford_Online_Products") == ks
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(550), 2)
    x = rng.normal(size=(550, 6))[y] * 0.3 + rng.normal(size=(1100, 6))  # (1100, 6): a weak class signal
    res = recall_at_k(x, x, y, y, ks=ks, exclude_self=True)
    assert list(res) == ["recall@1", "recall@10", "recall@100", "recall@1000"]
    for k in ks:
        assert res[f"recall@{k}"] == pytest.approx(_brute_recall(x, x, y, y, k, True))
    assert res["recall@1"] < res["recall@10"] < res["recall@100"] < res["recall@1000"] < 1.0


@pytest.mark.parametrize("spec", ["1,1,2", "0,4", "top5", "8,4", "2,4"])
def test_recall_list_rejects_bad_input(spec: str) -> None:
    from zsltune.data.image_source import recall_ks
    from zsltune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--recall-at .*: use a preset \(cub, cars, sop\) or increasing K from 1"):
        recall_ks(spec, "CUB")


# --------------------------------------------------------------------------------------------------
# NMI
# --------------------------------------------------------------------------------------------------


def test_nmi_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    for n, k_true, k_pred in [(50, 3, 4), (200, 10, 10), (500, 2, 17), (30, 30, 5)]:
        a = rng.integers(0, k_true, n)
        b = rng.integers(0, k_pred, n)
        assert nmi(a, b) == pytest.approx(sk.normalized_mutual_info_score(a, b), abs=1e-12)
        partly = np.where(rng.random(n) < 0.7, a, b)
        assert nmi(a, partly) == pytest.approx(sk.normalized_mutual_info_score(a, partly), abs=1e-12)


def test_nmi_permutation_and_limit_cases() -> None:
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    relabelled = np.array([5, 5, 9, 9, -1, -1, -1])
    assert nmi(a, relabelled) == pytest.approx(1.0)
    assert nmi(["x", "x", "y"], [1, 1, 0]) == pytest.approx(1.0)
    assert nmi([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    assert nmi([1, 1, 1], [4, 4, 4]) == 1.0
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0


def test_clustering_nmi_on_separated_blobs() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(6)
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    y = np.repeat([0, 1, 2], 20)
    x = centers[y] + rng.normal(scale=0.5, size=(60, 2))
    assert clustering_nmi(x, y) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def test_shape_mismatch_messages() -> None:
    msg = "scores_seen and y_seen must have the same number of rows, got scores_seen (4, 4) and y_seen (3,)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        gzsl(SCORES_SEEN, Y_SEEN[:3], SCORES_UNSEEN, Y_UNSEEN, **PARTS)
    with pytest.raises(ValueError, match=re.escape("got scores_unseen (3, 4) and y_unseen (2,)")):
        calibration_sweep(SCORES_SEEN, Y_SEEN, SCORES_UNSEEN, Y_UNSEEN[:2], **PARTS)
    with pytest.raises(ValueError, match=re.escape("same number of columns (classes)")):
        gzsl(SCORES_SEEN, Y_SEEN, SCORES_UNSEEN[:, :3], Y_UNSEEN, **PARTS)
    with pytest.raises(ValueError, match=re.escape("got y_true (3,) and y_pred (2,)")):
        per_class_accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=re.escape("got y_true (3,) and y_cluster (4,)")):
        nmi([0, 1, 2], [0, 1, 2, 3])
    with pytest.raises(ValueError, match=re.escape("got query_embeddings (3, 2) and y_query (4,)")):
        recall_at_k(np.zeros((3, 2)), np.zeros((5, 2)), np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="same dimension"):
        recall_at_k(np.zeros((3, 2)), np.zeros((5, 3)), np.zeros(3), np.zeros(5))
    with pytest.raises(ValueError, match="exclude_self=True needs as many queries"):
        recall_at_k(np.zeros((3, 2)), np.zeros((5, 2)), np.zeros(3), np.zeros(5), exclude_self=True)


def test_class_partition_and_label_validation() -> None:
    with pytest.raises(ValueError, match="must be disjoint"):
        gzsl(*TINY, seen_classes=[0, 1], unseen_classes=[1, 2, 3])
    with pytest.raises(ValueError, match=re.escape("cover all 4 score columns, got 2 seen + 1 unseen = 3")):
        gzsl(*TINY, seen_classes=[0, 1], unseen_classes=[2])
    with pytest.raises(ValueError, match=re.escape("column indices in [0, 4)")):
        zsl_top1(SCORES_UNSEEN, Y_UNSEEN, unseen_classes=[2, 3, 4])
    with pytest.raises(ValueError, match="y_seen must only contain labels from seen_classes"):
        gzsl(SCORES_SEEN, [0, 0, 1, 2], SCORES_UNSEEN, Y_UNSEEN, **PARTS)
    with pytest.raises(ValueError, match="num_gammas must be an integer >= 2"):
        calibration_sweep(*TINY, **PARTS, num_gammas=1)
