"""Pieces of adversarial feature generators, each checkable against its equation: MLP blocks, the WGAN-GP gradient
penalty (one critic input or several, with the concatenated gradient), an entropic optimal-transport (Sinkhorn)
distance, and a running memory of class centres.

Used by TL-VSC (:mod:`zsltune.methods.tlvsc`) and the f-CLSWGAN baseline (:mod:`zsltune.baseline.clswgan`); nothing
here knows either. Tests: ``tests/methods/test_gan.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def mlp(d_in: int, hidden: int, d_out: int, *, out: nn.Module | None = None) -> nn.Sequential:
    """``d_in -> hidden -> d_out`` with LeakyReLU(0.2) and N(0, 0.02) weights (f-CLSWGAN / f-VAEGAN-D2)."""
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, d_out)]
    if out is not None:
        layers.append(out)
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: Sequence[torch.Tensor],
    fake: Sequence[torch.Tensor],
    eps: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP: E[(‖∇ critic(x̃_1, ..., x̃_k)‖ - 1)²], x̃_i = ε·real_i + (1-ε)·fake_i with one ε (B, 1) per row.

    Inputs whose real and fake are the same tensor (a condition such as the class embedding of D1(x, h)) are
    passed as they are and not differentiated; the gradient of every interpolated input is concatenated before the
    norm (the joint critic D3 of TL-VSC: ‖[∇_x̃ D3; ∇_h̃ D3]‖).
    """
    inputs, moving = [], []
    for r, f in zip(real, fake, strict=True):
        if r is f:
            inputs.append(r)
        else:
            t = (eps * r.detach() + (1 - eps) * f.detach()).requires_grad_(True)  # (B, d_i)
            inputs.append(t)
            moving.append(t)
    out = critic(*inputs)  # (B, 1)
    grads = torch.autograd.grad(out.sum(), moving, create_graph=True)
    norm = torch.cat([g.flatten(1) for g in grads], dim=1).norm(2, dim=1)  # (B,)
    return ((norm - 1) ** 2).mean()


@torch.no_grad()
def sinkhorn_plan(cost: torch.Tensor, *, eps: float, iters: int) -> torch.Tensor:
    """The entropic OT plan (n, m) between uniform marginals for ``cost`` (n, m), in the log domain.

    ``eps`` is relative to the cost's mean, so one value serves costs of any scale.
    """
    n, m = cost.shape
    c = cost.float() / cost.float().mean().clamp_min(1e-12)
    log_a = torch.full((n,), -torch.log(torch.tensor(float(n))), device=cost.device)
    log_b = torch.full((m,), -torch.log(torch.tensor(float(m))), device=cost.device)
    f, g = torch.zeros(n, device=cost.device), torch.zeros(m, device=cost.device)
    for _ in range(iters):
        f = eps * (log_a - torch.logsumexp((g[None, :] - c) / eps, dim=1))
        g = eps * (log_b - torch.logsumexp((f[:, None] - c) / eps, dim=0))
    return torch.exp((f[:, None] + g[None, :] - c) / eps)  # (n, m), rows sum to 1/n, columns to 1/m


def sinkhorn_distance(x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.1, iters: int = 100) -> torch.Tensor:
    """⟨P, C⟩ for squared-Euclidean C between point sets x (n, d) and y (m, d), P the Sinkhorn plan.

    The plan is computed without gradient; the distance's gradient flows through C only, which at convergence is
    the gradient of the entropic OT cost (envelope theorem) at a fraction of the memory of unrolled iterations.
    """
    cost = torch.cdist(x, y) ** 2  # (n, m)
    plan = sinkhorn_plan(cost.detach(), eps=eps, iters=iters)
    return (plan * cost).sum()


@torch.no_grad()
def generator_health(
    x_real: torch.Tensor, y_real: torch.Tensor, x_gen: torch.Tensor, y_gen: torch.Tensor, classes: int
) -> dict[str, float]:
    """How close generated features are to the real ones, per class: ``gen_own_nearest``, the share of classes whose
    generated mean is nearer its own real mean than any other class's; ``gen_spread``, the mean within-class sd of
    the generated features over that of the real ones. Features (N, D) in one space, labels in [0, classes)."""

    def stats(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = torch.bincount(y, minlength=classes).clamp_min(1).to(x.dtype)[:, None]  # (C, 1)
        mean = torch.zeros(classes, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, y, x) / n  # (C, D)
        var = torch.zeros_like(mean).index_add(0, y, (x - mean[y]) ** 2) / n
        return mean, var.sqrt().mean(1)  # (C, D), (C,)

    real_mean, real_sd = stats(x_real, y_real)
    gen_mean, gen_sd = stats(x_gen, y_gen)
    own = torch.cdist(gen_mean, real_mean).argmin(1) == torch.arange(classes, device=x_real.device)
    return {
        "gen_own_nearest": float(own.float().mean()),
        "gen_spread": float(gen_sd.mean() / real_sd.mean().clamp_min(1e-12)),
    }


class CentreMemory(nn.Module):
    """Running per-class means of a batch statistic, so a loss on class centres is defined when a batch holds few
    (or no) images of a class: classes in the batch get the value ``m·memory + (1-m)·batch mean`` with the gradient
    of the batch mean itself (straight through the memory), the others their memory (no gradient). Through the mix,
    a row's gradient would be scaled by 1-m (0.1 at m 0.9), so a loss weight γ on the centres would act as γ/10;
    straight through, γ means what it says. The memory is a buffer, so it travels in checkpoints."""

    def __init__(self, classes: int, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("centres", torch.zeros(classes, dim))
        self.register_buffer("seen", torch.zeros(classes, dtype=torch.bool))

    def forward(self, v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Centres (C, d) after a batch v (B, d) with labels y (B,); updates the memory."""
        c, d = self.centres.shape
        sums = torch.zeros(c, d, device=v.device, dtype=v.dtype).index_add(0, y, v)  # (C, d)
        counts = torch.bincount(y, minlength=c).to(v.dtype)  # (C,)
        present = counts > 0
        mean = sums / counts.clamp_min(1)[:, None]
        m = torch.where(self.seen, torch.tensor(self.momentum, device=v.device), torch.zeros((), device=v.device))
        mixed = m[:, None] * self.centres + (1 - m[:, None]) * mean
        mixed = mixed.detach() + (mean - mean.detach())  # value of the mix, gradient of the batch mean
        out = torch.where(present[:, None], mixed, self.centres)
        with torch.no_grad():
            self.centres.copy_(out.detach())
            self.seen |= present
        return out
