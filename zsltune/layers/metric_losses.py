"""Deep-metric-learning losses of DeML (Chen & Deng, CVPR 2019), each a small function checkable against its
equation: binomial deviance (Eq. 5), the gradient-reversal layer with DANN's schedule, the adversary's discrepancy
and the released hinge that keep the sub-learners of a scale apart (Eq. 4), and the two regularisers of Eq. 6."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def binomial_deviance(
    z: torch.Tensor, y: torch.Tensor, *, alpha: float = 2.0, beta: float = 0.5, gamma_neg: float = 35.0
) -> torch.Tensor:
    """Eq. 5 for one learner: Σ_{p<q} (1/w_pq) log(1 + exp(-(2 s_pq - 1) α (S_pq - β) γ_pq)) over the batch's pairs,
    S the cosine similarity of embeddings z (B, d), s_pq = 1[y_p = y_q], γ 1 for positives and ``gamma_neg`` for
    negatives, w_pq the number of positive (negative) pairs."""
    zn = F.normalize(z.float(), dim=1)
    sim = zn @ zn.T  # (B, B)
    upper = torch.triu(torch.ones_like(sim, dtype=torch.bool), diagonal=1)
    pos = (y[:, None] == y[None, :]) & upper
    neg = (y[:, None] != y[None, :]) & upper
    sign = torch.where(pos, 1.0, -1.0)
    gamma = torch.where(pos, 1.0, gamma_neg)
    loss = F.softplus(-sign * alpha * (sim - beta) * gamma)  # log(1 + exp(.)), stable
    n_pos, n_neg = pos.sum().clamp_min(1), neg.sum().clamp_min(1)
    return (loss * pos).sum() / n_pos + (loss * neg).sum() / n_neg


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` backward (DANN's gradient-reversal layer)."""
    return _Reverse.apply(x, scale)


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """The reversal's weight at ``progress`` in [0, 1] of training: 2 / (1 + exp(-gamma p)) - 1, from 0 to ~1
    (Ganin et al. 2016, Sec. 5.2.2), so the adversarial term starts after the embeddings have taken shape."""
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def adversary_discrepancy(adversary: nn.Module, zs: list[torch.Tensor]) -> torch.Tensor:
    """DeML's L_adv (Chen & Deng 2019, Eq. 4): Σ_{j<j'} mean min(‖F(ẑ_j) - F(ẑ_j')‖², 2) over one scale's
    sub-learners (B, dim) each, L2-normalised first. The cap at 2 (orthogonal unit vectors) stops the learners
    pushing past orthogonality: uncapped, two learners became antipodal (mean cosine -0.95), as redundant as equal."""
    mapped = [adversary(F.normalize(z.float(), dim=1)) for z in zs]
    total = mapped[0].new_zeros(())
    for a in range(len(mapped)):
        for b in range(a + 1, len(mapped)):
            total = total + ((mapped[a] - mapped[b]) ** 2).sum(1).clamp(max=2.0).mean()
    return total


def hinge_diversity(zs: list[torch.Tensor], margin: float = 2.0) -> torch.Tensor:
    """The authors' released adversary: for each pair j < j' of one scale's sub-learners,
    1/(2N) Σ max(0, margin - ‖ẑ_j - ẑ_j'‖)² on L2-normalised embeddings (pushes the learners apart)."""
    if len(zs) < 2:
        return zs[0].new_zeros(())
    total = zs[0].new_zeros(())
    n = zs[0].shape[0]
    # the sub-learners may differ in width only if d does not divide: compare on the common prefix
    width = min(z.shape[1] for z in zs)
    zn = [F.normalize(z[:, :width].float(), dim=1) for z in zs]
    for a in range(len(zn)):
        for b in range(a + 1, len(zn)):
            dist = (zn[a] - zn[b]).norm(dim=1)
            total = total + (F.relu(margin - dist) ** 2).sum() / (2 * n)
    return total


def activation_decay(zs: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 6, first term without λ₁: 1/(2 IJ N) Σ_learners Σ_images ‖z‖²."""
    n = zs[0].shape[0]
    return sum((z.float() ** 2).sum() for z in zs) / (2 * len(zs) * n)  # type: ignore[return-value]


def row_norm_penalty(weights: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 6, second term without λ₂: Σ over the learners' weight rows of (‖ω_r‖² - 1)² (rows only)."""
    return sum(((w.float() ** 2).sum(1) - 1) ** 2 for w in weights).sum()  # type: ignore[union-attr]
