"""Squeeze-and-excitation channel gates: σ(W₂ ReLU(W₁ GAP(U))) (B, C) from a conv map U (B, C, h, w).

One gate formula (:func:`se_gate`), two modules that hold its weights:

- :class:`ChannelAttention`: one gate that reweights U's channels (DeML's channel-attention module, Chen & Deng,
  CVPR 2019, Sec. 3.2).
- :class:`PartAttention`: K gates, each picking a group of channels whose weighted mean becomes a part's attention
  map (SGMA's channel grouping, Zhu et al., NeurIPS 2019). Map k is the softmax over locations of the weighted
  channel mean, standardised per image and sharpened by ``temp``, so it sums to 1 and its centre
  (:func:`~zsltune.layers.attention_maps.map_centres`) is its expected location.

The modules keep their own parameter names (``fc1``/``fc2``; ``PartAttention``'s as K-long lists, all ``fc1`` built
before any ``fc2``) so their state_dict keys and their initialisation under a fixed seed stay what checkpoints and
seeded runs were made with; only the gate's arithmetic is shared.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def se_gate(g: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor:
    """Channel weights σ(fc2(ReLU(fc1(g)))) (B, C) in (0, 1) of pooled features g (B, C)."""
    return torch.sigmoid(fc2(F.relu(fc1(g))))  # (B, C)


class ChannelAttention(nn.Module):
    """SE-style channel attention (DeML's CAM): U ⊙ σ(W₂ ReLU(W₁ GAP(U))), bottleneck ``hidden``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """The map u (B, C, h, w) with each channel scaled by its gate: (B, C, h, w)."""
        s = se_gate(u.mean((2, 3)), self.fc1, self.fc2)  # (B, C)
        return u * s[:, :, None, None]


class PartAttention(nn.Module):
    """K channel-grouping attention heads over a conv map (B, C, h, w) -> maps (B, K, h, w), each summing to 1."""

    def __init__(self, channels: int, k: int, hidden: int, *, temp: float = 2.0) -> None:
        super().__init__()
        self.k, self.temp = k, temp
        # all K fc1 then all K fc2: the order the seeded initialisation (and the state_dict keys) were made with
        self.fc1 = nn.ModuleList(nn.Linear(channels, hidden) for _ in range(k))
        self.fc2 = nn.ModuleList(nn.Linear(hidden, channels) for _ in range(k))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Maps (B, K, h, w) of a conv map u (B, C, h, w), each a softmax over the h·w locations."""
        b, _, h, w = u.shape
        g = u.mean((2, 3))  # (B, C)
        d = torch.stack([se_gate(g, f1, f2) for f1, f2 in zip(self.fc1, self.fc2, strict=True)], 1)  # (B, K, C)
        a = torch.einsum("bkc,bchw->bkhw", d, u) / d.sum(2)[..., None, None].clamp_min(1e-6)  # (B, K, h, w)
        a = a.flatten(2)  # (B, K, hw)
        a = (a - a.mean(2, keepdim=True)) / a.std(2, keepdim=True).clamp_min(1e-6)  # standardised per image
        return torch.softmax(self.temp * a, 2).view(b, self.k, h, w)

    @torch.no_grad()
    def init_from_clusters(self, labels: np.ndarray, *, strength: float = 3.0) -> None:
        """Head k starts by selecting the channels of cluster k (``labels``: (C,) in [0, K)): σ(±strength)."""
        for k, f2 in enumerate(self.fc2):
            f2.weight.mul_(0.01)  # near-zero weights: the bias alone sets the starting gate
            f2.bias.copy_(torch.where(torch.as_tensor(labels == k), strength, -strength))
