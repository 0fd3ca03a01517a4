"""Differentiable crops by bilinear sampling: one axis-aligned affine crop (:func:`affine_crop`) and the two ways
methods name a crop.

- :func:`crop_resize`: a box in pixels (DeML's object-attention crop, from
  :func:`~zsltune.layers.attention_maps.attention_boxes`).
- :func:`crop_zoom`: a centre in [-1, 1] and a side as a fraction of the image, kept inside it (SGMA's crop-and-zoom
  around a part's map centre; differentiable in the centre and the side, so the part losses reach the attention).

Coordinates are normalised to [-1, 1] over the image (pixel centres, as ``align_corners=False``); samples outside
the image take the border's value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def affine_crop(
    images: torch.Tensor,
    scale: tuple[torch.Tensor, torch.Tensor],
    centre: tuple[torch.Tensor, torch.Tensor],
    out: int,
) -> torch.Tensor:
    """Crops (B, C, out, out) of images (B, C, S, S): the window centred at ``centre`` (x, y), each (B,) in [-1, 1],
    with half-sides ``scale`` (x, y), each (B,) as a fraction of the image's half-side (1: the whole image)."""
    b = images.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)  # (B, 2, 3): output -> input coordinates
    theta[:, 0, 0], theta[:, 0, 2] = scale[0], centre[0]
    theta[:, 1, 1], theta[:, 1, 2] = scale[1], centre[1]
    grid = F.affine_grid(theta, [b, images.shape[1], out, out], align_corners=False)  # (B, out, out, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, out: int) -> torch.Tensor:
    """Crops (B, C, out, out) of images (B, C, S, S) at boxes (B, 4) (x0, y0, x1, y1 in pixels), bilinear."""
    s = images.shape[2]
    x0, y0, x1, y1 = (boxes[:, k] / s * 2 - 1 for k in range(4))  # (B,) each, to [-1, 1]
    return affine_crop(images, ((x1 - x0) / 2, (y1 - y0) / 2), ((x1 + x0) / 2, (y1 + y0) / 2), out)


def crop_zoom(images: torch.Tensor, centres: torch.Tensor, ratio: float | torch.Tensor, out: int) -> torch.Tensor:
    """Square crops around ``centres`` (B, 2) (x, y in [-1, 1]) of side ``ratio`` x the image side (t_s / t; a float
    or (B,)), zoomed to ``out`` x ``out`` by bilinear sampling: (B, C, out, out). The crop is shifted inside the
    image; differentiable in the centres (and the ratio)."""
    b = images.shape[0]
    r = torch.as_tensor(ratio, dtype=images.dtype, device=images.device).expand(b)  # (B,)
    c = torch.maximum(torch.minimum(centres, (1 - r)[:, None]), (r - 1)[:, None])  # (B, 2), the crop stays inside
    return affine_crop(images, (r, r), (c[:, 0], c[:, 1]), out)
