"""The GAN pieces against hand computations: gradient penalty, concatenated-gradient penalty, Sinkhorn vs exact OT,
the class-centre memory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from zsltune.layers.gan import CentreMemory, gradient_penalty, sinkhorn_distance, sinkhorn_plan


def test_gradient_penalty_equals_a_hand_computation_on_a_linear_critic() -> None:
    """critic(x, h) = w·x + u·h: ∇_x = w everywhere, so the penalty is (‖w‖ - 1)² whatever the points."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 1)
    critic = lambda x, h: lin(torch.cat([x, h], 1))  # noqa: E731
    x, x_fake, h = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2)
    eps = torch.rand(4, 1)
    got = gradient_penalty(critic, (x, h), (x_fake, h), eps)  # h is the condition: not interpolated
    w = lin.weight.detach()[0, :3]
    assert got.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_gradient_penalty_on_a_tiny_nonlinear_critic_matches_finite_differences() -> None:
    """critic(x) = Σ tanh(a·x)²: the gradient at the interpolate, by central differences, gives the same penalty."""
    torch.manual_seed(1)
    a = torch.randn(3, dtype=torch.float64)
    critic = lambda x: (torch.tanh(x * a) ** 2).sum(1, keepdim=True)  # noqa: E731
    x, x_fake = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    eps = torch.rand(5, 1, dtype=torch.float64)
    got = gradient_penalty(critic, (x,), (x_fake,), eps)
    xt = eps * x + (1 - eps) * x_fake
    grads = torch.zeros_like(xt)
    for j in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[j] = 1e-6
        grads[:, j] = (critic(xt + d) - critic(xt - d))[:, 0] / 2e-6
    want = ((grads.norm(dim=1) - 1) ** 2).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_joint_penalty_uses_the_concatenated_gradient() -> None:
    """D3(x, h) = w·x + u·h interpolated in both inputs: the norm is ‖[w; u]‖, not ‖w‖ or ‖u‖ or their sum."""
    torch.manual_seed(2)
    lin = nn.Linear(5, 1)
    critic = lambda x, h: lin(torch.cat([x, h], 1))  # noqa: E731
    x, x_fake, h, h_fake = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 2)
    got = gradient_penalty(critic, (x, h), (x_fake, h_fake), torch.rand(4, 1))
    w = lin.weight.detach()[0]
    assert got.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    separate = (w[:3].norm() - 1) ** 2 + (w[3:].norm() - 1) ** 2
    assert abs(got.item() - separate.item()) > 1e-3


def test_sinkhorn_matches_exact_optimal_transport_on_three_points() -> None:
    """Uniform marginals on 3 + 3 points: exact OT is the best of the 3! assignments (/3); small ε gets within 1e-3."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    exact = min(sum(cost[i, p[i]] for i in range(3)) for p in itertools.permutations(range(3))) / 3
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    got = sinkhorn_distance(tx, ty, eps=0.005, iters=2000).item()
    assert got == pytest.approx(exact, rel=1e-3)
    plan = sinkhorn_plan(torch.tensor(cost, dtype=torch.float32), eps=0.005, iters=2000)
    assert torch.allclose(plan.sum(0), torch.full((3,), 1 / 3), atol=1e-4)
    assert torch.allclose(plan.sum(1), torch.full((3,), 1 / 3), atol=1e-4)
    # larger ε spreads the plan: the entropic cost is above the exact one
    assert sinkhorn_distance(tx, ty, eps=1.0, iters=200).item() > exact


def test_sinkhorn_gradient_moves_points_onto_their_targets() -> None:
    torch.manual_seed(3)
    y = torch.randn(4, 2)
    x = (y + 0.5 * torch.randn(4, 2)).requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.1)
    start = sinkhorn_distance(x, y).item()
    for _ in range(100):
        loss = sinkhorn_distance(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sinkhorn_distance(x, y).item() < 0.05 * start


def test_centre_memory_keeps_classes_missing_from_a_batch() -> None:
    mem = CentreMemory(3, 2, momentum=0.5)
    v = torch.tensor([[1.0, 1.0], [3.0, 3.0], [10.0, 0.0]])
    out = mem(v, torch.tensor([0, 0, 1]))
    assert torch.allclose(out[0], torch.tensor([2.0, 2.0])) and torch.allclose(out[1], torch.tensor([10.0, 0.0]))
    assert torch.equal(out[2], torch.zeros(2)) and not bool(mem.seen[2])
    out = mem(torch.tensor([[4.0, 4.0]], requires_grad=True), torch.tensor([0]))
    assert torch.allclose(out[0], torch.tensor([3.0, 3.0]))  # 0.5 · memory + 0.5 · batch mean
    assert torch.allclose(out[1], torch.tensor([10.0, 0.0]))  # class 1 absent: its memory
    assert out.requires_grad


def test_alignment_gradient_reaches_each_row_at_the_configured_weight() -> None:
    """γ·W(centres, attributes) through the memory: each row's gradient is γ·∂W/∂c at the memory's value, divided
    by its class's count in the batch, computed here by hand on a leaf tensor (a plain batch mean's Jacobian)."""
    torch.manual_seed(0)
    mem, att, gamma = CentreMemory(3, 4, momentum=0.9), torch.randn(3, 4), 0.7
    mem(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))  # the memory now holds every class: m = 0.9
    v = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 2])
    centres = mem(v, y)
    (gamma * sinkhorn_distance(centres, att)).backward()
    c = centres.detach().clone().requires_grad_(True)  # the same value as a leaf: the plain computation
    (gamma * sinkhorn_distance(c, att)).backward()
    counts = torch.bincount(y, minlength=3).float()
    torch.testing.assert_close(v.grad, c.grad[y] / counts[y, None])


def test_generator_health_tells_a_matching_generator_from_a_swapped_one() -> None:
    from zsltune.layers.gan import generator_health

    torch.manual_seed(0)
    centres = 3 * torch.randn(5, 8)
    y = torch.arange(5).repeat_interleave(40)
    x = centres[y] + torch.randn(200, 8)
    same = generator_health(x, y, centres[y] + 0.5 * torch.randn(200, 8), y, 5)
    assert same["gen_own_nearest"] == 1.0 and 0.4 < same["gen_spread"] < 0.6
    swapped = generator_health(x, y, centres[(y + 1) % 5] + torch.randn(200, 8), y, 5)  # each class drawn as the next
    assert swapped["gen_own_nearest"] == 0.0 and 0.8 < swapped["gen_spread"] < 1.2
