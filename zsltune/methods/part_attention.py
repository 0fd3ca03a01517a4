"""Part attention of SGMA (Zhu et al., NeurIPS 2019): K attention maps from channel groups of the last conv map,
their centres, the crop-and-zoom around each centre, the losses that shape the maps, and the channel clustering
that initialises them.

Map k, per image: channel weights d_k = σ(W₂ ReLU(W₁ GAP(U))) (B, C) pick a group of channels of U (B, C, h, w); the
map is the softmax over locations of the weighted channel mean, standardised per image and sharpened by ``temp``,
so it sums to 1 and its centre is its expected location (differentiable in the map, so the part branch's loss
reaches the attention through the crop). Coordinates are normalised to [-1, 1] (pixel centres, as
``align_corners=False``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PartAttention(nn.Module):
    """K channel-grouping attention heads over a conv map (B, C, h, w) -> maps (B, K, h, w), each summing to 1."""

    def __init__(self, channels: int, k: int, hidden: int, *, temp: float = 2.0) -> None:
        super().__init__()
        self.k, self.temp = k, temp
        self.fc1 = nn.ModuleList(nn.Linear(channels, hidden) for _ in range(k))
        self.fc2 = nn.ModuleList(nn.Linear(hidden, channels) for _ in range(k))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, _, h, w = u.shape
        g = u.mean((2, 3))  # (B, C)
        d = torch.stack([torch.sigmoid(f2(F.relu(f1(g)))) for f1, f2 in zip(self.fc1, self.fc2, strict=True)], 1)
        a = torch.einsum("bkc,bchw->bkhw", d, u) / d.sum(2)[..., None, None].clamp_min(1e-6)  # (B, K, h, w)
        a = a.flatten(2)
        a = (a - a.mean(2, keepdim=True)) / a.std(2, keepdim=True).clamp_min(1e-6)
        return torch.softmax(self.temp * a, 2).view(b, self.k, h, w)

    @torch.no_grad()
    def init_from_clusters(self, labels: np.ndarray, *, strength: float = 3.0) -> None:
        """Head k starts by selecting the channels of cluster k (``labels``: (C,) in [0, K)): σ(±strength)."""
        for k, f2 in enumerate(self.fc2):
            f2.weight.mul_(0.01)
            f2.bias.copy_(torch.where(torch.as_tensor(labels == k), strength, -strength))


def grid_coords(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h·w, 2) x, y of each cell's centre in [-1, 1] (``align_corners=False``), row-major."""
    ys = (torch.arange(h, device=device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], 1)


def map_centres(maps: torch.Tensor) -> torch.Tensor:
    """Expected location (B, K, 2) (x, y in [-1, 1]) of maps (B, K, h, w) that sum to 1."""
    _, _, h, w = maps.shape
    return maps.flatten(2) @ grid_coords(h, w, maps.device)  # (B, K, 2)


def crop_zoom(images: torch.Tensor, centres: torch.Tensor, ratio: float | torch.Tensor, out: int) -> torch.Tensor:
    """Square crops around ``centres`` (B, 2) (x, y in [-1, 1]) of side ``ratio`` x the image side (t_s / t; a float
    or (B,)), zoomed to ``out`` x ``out`` by bilinear sampling: (B, C, out, out). The crop is shifted inside the
    image; differentiable in the centres (and the ratio)."""
    b = images.shape[0]
    r = torch.as_tensor(ratio, dtype=images.dtype, device=images.device).expand(b)
    c = torch.maximum(torch.minimum(centres, (1 - r)[:, None]), (r - 1)[:, None])  # (B, 2), the crop stays inside
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = r, r
    theta[:, :, 2] = c
    grid = F.affine_grid(theta, [b, images.shape[1], out, out], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def compactness(maps: torch.Tensor) -> torch.Tensor:
    """Mean spatial variance of the maps (B, K, h, w) around their centres (coordinates in [-1, 1])."""
    _, _, h, w = maps.shape
    pos = grid_coords(h, w, maps.device)  # (hw, 2)
    mu = map_centres(maps)  # (B, K, 2)
    d2 = ((pos[None, None] - mu[:, :, None]) ** 2).sum(-1)  # (B, K, hw)
    return (maps.flatten(2) * d2).sum(2).mean()


def diversity(maps: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Overlap of each map with the strongest other map at every location, above ``margin`` (MA-CNN's diversity
    loss on peak-normalised maps (B, K, h, w)); 0 for K < 2."""
    k = maps.shape[1]
    if k < 2:
        return maps.new_zeros(())
    m = maps.flatten(2)
    m = m / m.amax(2, keepdim=True).clamp_min(1e-12)  # (B, K, hw), peak 1
    eye = torch.eye(k, dtype=torch.bool, device=maps.device)[None, :, :, None]
    others = m[:, None].expand(-1, k, -1, -1).masked_fill(eye, 0).amax(2)  # (B, K, hw): max over j != k
    return (m * F.relu(others - margin)).mean(2).mean()


def map_overlap(maps: torch.Tensor) -> float:
    """Mean cosine between the flattened maps of different parts (B, K, h, w); 0 for K < 2."""
    k = maps.shape[1]
    if k < 2:
        return 0.0
    m = F.normalize(maps.flatten(2).float(), dim=2)
    cos = m @ m.transpose(1, 2)  # (B, K, K)
    off = ~torch.eye(k, dtype=torch.bool, device=maps.device)
    return float(cos[:, off].mean())


def channel_clusters(u: torch.Tensor, k: int, *, seed: int = 0) -> np.ndarray:
    """Cluster labels (C,) in [0, k) of the channels of conv maps u (N, C, h, w): each channel described by where it
    peaks on each image (N x, y pairs), k-means (MA-CNN's channel grouping, SGMA's pseudo labels)."""
    from sklearn.cluster import KMeans

    n, c, h, w = u.shape
    peak = u.flatten(2).argmax(2)  # (N, C)
    pos = grid_coords(h, w, u.device)[peak]  # (N, C, 2)
    feats = pos.permute(1, 0, 2).reshape(c, 2 * n).cpu().double().numpy()  # (C, 2N)
    k = min(k, c)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(feats).astype(np.int64)
