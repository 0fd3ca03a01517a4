"""Attention maps over a conv map's locations: making them without parameters (DeML's object attention), reading
them (min-max scaling, a crop box, centres) and shaping them (SGMA's compactness and diversity losses), and the
channel clustering that initialises SGMA's heads (:class:`~zsltune.layers.attention.PartAttention`).

Object attention (Chen & Deng, CVPR 2019, Sec. 3.1, Eqs. 2-3), per image: every location a of the feature map U
(C, H, W) is a node; the edge weight to b is D_ab = ‖u_a - u_b‖ · exp(-‖pos_a - pos_b‖² / (2σ²)) (σ = ``sigma`` x W,
the authors' code); columns are normalised to sum to 1, and the mass M (uniform at 1/HW) is propagated T times,
M <- D M. The column-normalised form conserves mass (the row-normalised one keeps a uniform M uniform whatever the
features). The map is min-max normalised; the crop is the box of the locations above ``threshold`` x the map's mean,
made square and clipped to the image (cut out by :func:`~zsltune.layers.crops.crop_resize`).

Maps that sum to 1 (SGMA, Zhu et al., NeurIPS 2019) have a centre, their expected location; coordinates are
normalised to [-1, 1] (pixel centres, as ``align_corners=False``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
    lo = maps.flatten(1).min(1).values[:, None, None]  # (B, 1, 1)
    hi = maps.flatten(1).max(1).values[:, None, None]
    return torch.where(hi - lo > 1e-12, (maps - lo) / (hi - lo).clamp_min(1e-12), torch.ones_like(maps))


@torch.no_grad()
def attention_boxes(maps: torch.Tensor, size: int, *, threshold: float = 1.0, min_side: float = 0.25) -> torch.Tensor:
    """Square crop boxes (B, 4) as x0, y0, x1, y1 in pixels of a ``size`` x ``size`` image, from maps (B, h, w).

    The box of the locations at or above ``threshold`` x the map's mean (the authors take the largest connected
    component; the bounding box of all of them is what this does), made square with side (w + h) / 2, at least
    ``min_side`` x size, clipped inside the image.
    """
    up = F.interpolate(minmax(maps)[:, None], size=(size, size), mode="bilinear", align_corners=False)[
        :, 0
    ]  # (B, S, S)
    keep = up >= threshold * up.flatten(1).mean(1)[:, None, None]  # (B, S, S)
    rows, cols = keep.any(2), keep.any(1)  # (B, S)
    idx = torch.arange(size, device=maps.device)
    big = torch.full_like(rows, size, dtype=torch.long)
    y0 = torch.where(rows, idx, big).min(1).values  # (B,): first kept row
    y1 = torch.where(rows, idx, -1).max(1).values + 1
    x0 = torch.where(cols, idx, big).min(1).values
    x1 = torch.where(cols, idx, -1).max(1).values + 1
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    side = ((x1 - x0 + y1 - y0) / 2).clamp(min=min_side * size, max=size)  # (B,)
    x0 = (cx - side / 2).clamp(0, size) - ((cx + side / 2) - size).clamp_min(0)
    y0 = (cy - side / 2).clamp(0, size) - ((cy + side / 2) - size).clamp_min(0)
    x0, y0 = x0.clamp_min(0), y0.clamp_min(0)
    return torch.stack([x0, y0, x0 + side, y0 + side], 1)  # (B, 4)


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
    from sklearn.cluster import KMeans  # imported here: only SGMA's warm-up clusters, once per trial

    n, c, h, w = u.shape
    peak = u.flatten(2).argmax(2)  # (N, C)
    pos = grid_coords(h, w, u.device)[peak]  # (N, C, 2)
    feats = pos.permute(1, 0, 2).reshape(c, 2 * n).cpu().double().numpy()  # (C, 2N)
    k = min(k, c)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(feats).astype(np.int64)
