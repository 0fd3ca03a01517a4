"""ESZSL (Romera-Paredes & Torr, 2015): the closed-form bilinear map between features and class signatures.

Eq. 5 of the paper: ``V = (X Xᵀ + γI)⁻¹ X Y Sᵀ (S Sᵀ + λI)⁻¹`` with ``Y ∈ {-1, 1}`` (one-vs-rest), scores ``xᵀ V s_c``.
Features are used raw, as the paper does (no centring or normalisation). γ and λ are chosen on the val stage by ZSL
top-1 over the val classes, as Xian et al. (2018, GBU) do, and frozen for the test stage.
"""

from __future__ import annotations

import numpy as np

from zsltune.data.protocol import StageData
from zsltune.metrics import zsl_top1

#: γ and λ as multiples of the mean eigenvalue of X Xᵀ and S Sᵀ, so one grid means the same on any feature scale
#: (the paper's absolute 10^-3..10^3 assumes its features' scale)
GRID: tuple[float, ...] = tuple(10.0**k for k in range(-4, 3))


class _Eig:
    """The eigendecompositions ESZSL needs for one training set, so every (γ, λ) of the grid costs one product."""

    def __init__(self, data: StageData) -> None:
        x = data.x_train.astype(np.float64)  # (N, D)
        s = data.attributes[: data.n_seen].T.astype(np.float64)  # (P, Z)
        y = -np.ones((x.shape[0], data.n_seen))
        y[np.arange(x.shape[0]), data.y_train] = 1.0  # (N, Z)
        self.lx, self.qx = np.linalg.eigh(x.T @ x)  # (D,), (D, D)
        self.ls, self.qs = np.linalg.eigh(s @ s.T)  # (P,), (P, P)
        self.m = self.qx.T @ (x.T @ y @ s.T) @ self.qs  # (D, P) in both eigenbases
        self.gx, self.gs = float(self.lx.mean()), float(self.ls.mean())

    def v(self, gamma: float, lam: float) -> np.ndarray:
        """V (D, P) at relative ``gamma``, ``lam``."""
        inv = 1.0 / (self.lx[:, None] + gamma * self.gx) / (self.ls[None, :] + lam * self.gs)  # (D, P)
        return (self.qx @ (self.m * inv) @ self.qs.T).astype(np.float32)


def eszsl_scores(
    data: StageData, *, gamma: float, lam: float, eig: _Eig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores over every stage class for the seen and unseen evaluation images: (N_s, C), (N_u, C)."""
    v = (eig or _Eig(data)).v(gamma, lam)  # (D, P)
    proj = v @ data.attributes.T  # (D, C)
    return data.x_seen @ proj, data.x_unseen @ proj


def eszsl_select(val: StageData) -> dict[str, float]:
    """γ and λ of the grid with the best ZSL top-1 on ``val``'s unseen (val) classes."""
    eig = _Eig(val)
    unseen = np.arange(val.n_seen, val.num_classes)
    best = (-1.0, GRID[0], GRID[0])
    for g in GRID:
        for lam in GRID:
            _, s_u = eszsl_scores(val, gamma=g, lam=lam, eig=eig)
            acc = zsl_top1(s_u, val.y_unseen, unseen_classes=unseen)
            if acc > best[0]:
                best = (acc, g, lam)
    return {"gamma_eszsl": best[1], "lambda_eszsl": best[2]}
