"""Attention pieces of DeML (Chen & Deng, CVPR 2019): the parameter-free object-attention module (Sec. 3.1, Eqs. 2-3:
a random walk over feature-map locations, then a crop of the attended region) and the channel-attention module
(Sec. 3.2).

Object attention, per image: every location a of the feature map U (C, H, W) is a node; the edge weight to b is
D_ab = ‖u_a - u_b‖ · exp(-‖pos_a - pos_b‖² / (2σ²)) (σ = ``sigma`` x W, the authors' code); columns are normalised to
sum to 1, and the mass M (uniform at 1/HW) is propagated T times, M <- D M. The column-normalised form conserves mass
(the row-normalised one keeps a uniform M uniform whatever the features). The map is min-max normalised; the crop is
the box of the locations above ``threshold`` x the map's mean, made square and clipped to the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def random_walk(u: torch.Tensor, *, steps: int = 10, sigma: float | None = 0.15) -> torch.Tensor:
    """Attention maps (B, H, W) of feature maps u (B, C, H, W): T steps of the column-normalised random walk.

    ``sigma``: the Gaussian spatial term's width as a fraction of W (None: no spatial term). The returned map sums
    to 1 per image (the walk conserves mass); a uniform feature map gives a uniform map.
    """
    b, _, h, w = u.shape
    nodes = u.float().flatten(2).transpose(1, 2)  # (B, HW, C)
    d = torch.cdist(nodes, nodes)  # (B, HW, HW) feature distances
    if sigma is not None:
        ys, xs = torch.meshgrid(torch.arange(h, device=u.device), torch.arange(w, device=u.device), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()  # (HW, 2)
        d = d * torch.exp(-(torch.cdist(pos, pos) ** 2) / (2 * (sigma * w) ** 2))[None]
    col = d.sum(1, keepdim=True)  # (B, 1, HW)
    # a node with no out-edges (all features equal) keeps its mass: column-stochastic with an identity fallback
    eye = torch.eye(h * w, device=u.device)[None]
    p = torch.where(col > 1e-12, d / col.clamp_min(1e-12), eye)  # (B, HW, HW), columns sum to 1
    m = torch.full((b, h * w, 1), 1.0 / (h * w), device=u.device)
    for _ in range(steps):
        m = p @ m
    return m.view(b, h, w)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map (B, H, W) scaled to [0, 1] (a constant map becomes all ones)."""
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    return torch.where(hi - lo > 1e-12, (maps - lo) / (hi - lo).clamp_min(1e-12), torch.ones_like(maps))


@torch.no_grad()
def attention_boxes(maps: torch.Tensor, size: int, *, threshold: float = 1.0, min_side: float = 0.25) -> torch.Tensor:
    """Square crop boxes (B, 4) as x0, y0, x1, y1 in pixels of a ``size`` x ``size`` image, from maps (B, h, w).

    The box of the locations at or above ``threshold`` x the map's mean (the authors take the largest connected
    component; the bounding box of all of them is what this does), made square with side (w + h) / 2, at least
    ``min_side`` x size, clipped inside the image.
    """
    up = F.interpolate(minmax(maps)[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    keep = up >= threshold * up.flatten(1).mean(1)[:, None, None]  # (B, S, S)
    rows, cols = keep.any(2), keep.any(1)  # (B, S)
    idx = torch.arange(size, device=maps.device)
    big = torch.full_like(rows, size, dtype=torch.long)
    y0 = torch.where(rows, idx, big).min(1).values
    y1 = torch.where(rows, idx, -1).max(1).values + 1
    x0 = torch.where(cols, idx, big).min(1).values
    x1 = torch.where(cols, idx, -1).max(1).values + 1
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    side = ((x1 - x0 + y1 - y0) / 2).clamp(min=min_side * size, max=size)
    x0 = (cx - side / 2).clamp(0, size) - ((cx + side / 2) - size).clamp_min(0)
    y0 = (cy - side / 2).clamp(0, size) - ((cy + side / 2) - size).clamp_min(0)
    x0, y0 = x0.clamp_min(0), y0.clamp_min(0)
    return torch.stack([x0, y0, x0 + side, y0 + side], 1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, out: int) -> torch.Tensor:
    """Crops (B, C, out, out) of images (B, C, S, S) at boxes (B, 4) (x0, y0, x1, y1 in pixels), bilinear."""
    b, _, s, _ = images.shape
    x0, y0, x1, y1 = (boxes[:, k] / s * 2 - 1 for k in range(4))  # to [-1, 1]
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = (x1 - x0) / 2, (x1 + x0) / 2
    theta[:, 1, 1], theta[:, 1, 2] = (y1 - y0) / 2, (y1 + y0) / 2
    grid = F.affine_grid(theta, [b, images.shape[1], out, out], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ChannelAttention(nn.Module):
    """SE-style channel attention (the paper's CAM): U ⊙ σ(W₂ ReLU(W₁ GAP(U))), bottleneck ``hidden``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(u.mean((2, 3))))))  # (B, C)
        return u * s[:, :, None, None]
