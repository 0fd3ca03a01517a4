"""Closed-form ridge baseline: a linear map from features to attributes, classes by cosine to prototypes.

The reference point every method must beat, and the check that synthetic features carry attribute signal.
"""

from __future__ import annotations

import numpy as np

from zsltune.data.protocol import StageData
from zsltune.metrics import gzsl_report


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def ridge_fit(x: np.ndarray, targets: np.ndarray, *, lam: float = 1.0) -> np.ndarray:
    """W (D, P) minimising ||x W - targets||² + lam ||W||², x (N, D) centred by the caller or not."""
    x64 = x.astype(np.float64)
    gram = x64.T @ x64  # (D, D)
    gram[np.diag_indices_from(gram)] += lam
    return np.linalg.solve(gram, x64.T @ targets.astype(np.float64)).astype(np.float32)


def ridge_scores(data: StageData, *, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores over all stage classes for the seen and unseen evaluation images: (N_s, C), (N_u, C)."""
    protos = _unit(data.attributes)  # (C, P)
    mean = data.x_train.mean(0)
    w = ridge_fit(data.x_train - mean, protos[data.y_train], lam=lam)  # (D, P)
    return (_unit((data.x_seen - mean) @ w) @ protos.T, _unit((data.x_unseen - mean) @ w) @ protos.T)


def ridge_report(data: StageData, *, lam: float = 1.0) -> dict[str, float]:
    """The GZSL report (H, U, S, zsl_top1, AUSUC, H_cal, gamma) of the ridge baseline on ``data``'s own split."""
    s_seen, s_unseen = ridge_scores(data, lam=lam)
    return gzsl_report(s_seen, data.y_seen, s_unseen, data.y_unseen, n_seen=data.n_seen)


def colour_histograms(pixels: np.ndarray, *, bins: int = 4, chunk: int = 1024) -> np.ndarray:
    """L2-normalised joint RGB histograms (N, bins³) of uint8 images (N, H, W, 3): the retrieval baseline that
    sees colour and nothing else (synthetic retrieval classes share colours, so it should stay well below a
    trained network)."""
    out = np.zeros((pixels.shape[0], bins**3), np.float32)
    for s in range(0, pixels.shape[0], chunk):
        q = (np.asarray(pixels[s : s + chunk]) // (256 // bins)).astype(np.int64)  # (n, H, W, 3)
        code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]  # (n, H, W)
        flat = code.reshape(code.shape[0], -1) + np.arange(code.shape[0])[:, None] * bins**3
        out[s : s + chunk] = np.bincount(flat.ravel(), minlength=code.shape[0] * bins**3).reshape(-1, bins**3)
    return _unit(out)
