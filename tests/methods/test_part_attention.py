"""SGMA's attention pieces: crop-and-zoom against known images and grid_sample, map centres, the map losses and the
channel clustering (pure functions, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zsltune.layers.attention import PartAttention
from zsltune.layers.attention_maps import (
    channel_clusters,
    compactness,
    diversity,
    grid_coords,
    map_centres,
    map_overlap,
)
from zsltune.layers.crops import affine_crop, crop_resize, crop_zoom


def ramp(size: int = 32) -> torch.Tensor:
    """(1, 2, S, S): channel 0 is x, channel 1 is y (pixel index): bilinear sampling reproduces the positions."""
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.stack([xs, ys])[None]


CROPS = [(0.1, -0.2, 0.5, 24), (-0.3, 0.4, 0.25, 32), (0.0, 0.0, 0.6, 8)]


@pytest.mark.parametrize(("cx", "cy", "ratio", "out"), CROPS)
def test_crop_zoom_samples_the_square_around_the_centre(cx: float, cy: float, ratio: float, out: int) -> None:
    """Output pixel i of a crop of side S = ratio x W centred at pixel c samples x0 + (i + 0.5) S / out - 0.5,
    x0 = c - S / 2: on a ramp image bilinear sampling returns those positions exactly."""
    s = 32
    img = ramp(s)
    got = crop_zoom(img, torch.tensor([[cx, cy]]), ratio, out)[0]  # (2, out, out)
    side = ratio * s
    i = torch.arange(out).float()
    want_x = (cx + 1) / 2 * s - side / 2 + (i + 0.5) * side / out - 0.5
    want_y = (cy + 1) / 2 * s - side / 2 + (i + 0.5) * side / out - 0.5
    assert torch.allclose(got[0], want_x[None, :].expand(out, out), atol=1e-4)
    assert torch.allclose(got[1], want_y[:, None].expand(out, out), atol=1e-4)


def test_crop_zoom_equals_grid_sample_with_the_same_affine_grid() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 40, 40, generator=g)
    centres = torch.tensor([[0.2, -0.1], [-0.5, 0.5], [0.0, 0.3]])
    ratio = 0.4
    theta = torch.tensor([[[ratio, 0.0, cx], [0.0, ratio, cy]] for cx, cy in centres.tolist()])
    grid = F.affine_grid(theta, [3, 3, 20, 20], align_corners=False)
    want = F.grid_sample(img, grid, mode="bilinear", align_corners=False)
    assert torch.allclose(crop_zoom(img, centres, ratio, 20), want, atol=1e-6)


def test_the_two_crop_conventions_share_one_affine_crop() -> None:
    """A pixel box (DeML's crop_resize) and a centre + side (SGMA's crop_zoom) naming the same square give the same
    crop: both are :func:`affine_crop`."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 40, 40, generator=g)
    centres = torch.tensor([[0.2, -0.1], [-0.5, 0.5]])  # inside: no shift, side 0.4 x 40 = 16 px
    px = (centres + 1) / 2 * 40  # (B, 2) centre in pixels
    boxes = torch.cat([px - 8, px + 8], 1)  # (B, 4) x0, y0, x1, y1
    assert torch.allclose(crop_resize(img, boxes, 12), crop_zoom(img, centres, 0.4, 12), atol=1e-5)
    whole = affine_crop(img, (torch.ones(2), torch.ones(2)), (torch.zeros(2), torch.zeros(2)), 40)
    assert torch.allclose(whole, img, atol=1e-5)  # the identity window is the image


def test_crop_without_zoom_at_pixel_edges_is_a_slice() -> None:
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    # side 16 (ratio 0.5), centre at pixel 12 -> the crop is rows/cols 4..19, sampled 1:1
    c = 12 / 32 * 2 - 1
    got = crop_zoom(img, torch.tensor([[c, c]]), 0.5, 16)
    assert torch.allclose(got, img[:, :, 4:20, 4:20], atol=1e-5)


def test_crops_stay_inside_the_image_and_follow_the_centre() -> None:
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    corner = crop_zoom(img, torch.tensor([[1.0, -1.0]]), 0.5, 16)
    assert torch.allclose(corner, img[:, :, 0:16, 16:32], atol=1e-5)  # shifted inside: the top-right quarter
    centre = torch.tensor([[0.1, 0.2]], requires_grad=True)
    crop_zoom(img, centre, 0.5, 16).sum().backward()
    assert centre.grad is not None and centre.grad.abs().sum() > 0  # differentiable in the centre


def test_map_centres_compactness_and_diversity() -> None:
    h = w = 4
    one = torch.zeros(1, 2, h, w)
    one[0, 0, 1, 2] = 1.0  # part 0 at row 1, col 2
    one[0, 1, 3, 0] = 1.0  # part 1 at row 3, col 0
    c = map_centres(one)[0]
    assert torch.allclose(c, torch.tensor([[0.25, -0.25], [-0.75, 0.75]]))  # x, y of those cell centres
    assert float(compactness(one)) == 0.0
    spread = torch.full((1, 2, h, w), 1.0 / (h * w))
    assert float(compactness(spread)) > 0.3
    assert float(diversity(one)) == 0.0  # disjoint maps do not overlap
    same = torch.cat([one[:, :1], one[:, :1]], 1)
    assert float(diversity(same)) > 0.0 and map_overlap(same) == pytest.approx(1.0)
    assert map_overlap(one) == pytest.approx(0.0)
    assert float(diversity(one[:, :1])) == 0.0 and map_overlap(one[:, :1]) == 0.0  # K = 1
    assert grid_coords(2, 2).tolist() == [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]


def test_channel_clusters_group_channels_by_where_they_fire() -> None:
    """Channels 0-3 peak top-left, 4-7 bottom-right on every image: two clusters, one per group; heads initialised
    from them select their own cluster's channels."""
    g = torch.Generator().manual_seed(3)
    u = torch.rand(20, 8, 6, 6, generator=g) * 0.1
    u[:, :4, 0:2, 0:2] += 1.0 + torch.rand(20, 4, 2, 2, generator=g)
    u[:, 4:, 4:6, 4:6] += 1.0 + torch.rand(20, 4, 2, 2, generator=g)
    labels = channel_clusters(u, 2, seed=0)
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]
    att = PartAttention(8, 2, 4)
    att.init_from_clusters(labels)
    maps = att(u[:5])  # (5, 2, 6, 6)
    centres = map_centres(maps)
    first = int(labels[0])  # the head started on channels 0-3 looks top-left, the other bottom-right
    assert (centres[:, first] < -0.3).all() and (centres[:, 1 - first] > 0.3).all()
    assert torch.allclose(maps.sum((2, 3)), torch.ones(5, 2))
    assert np.isin(labels, [0, 1]).all()


def test_torchvision_backbones_by_name_from_a_local_file(tmp_path: Path) -> None:
    """A torchvision backbone by name takes its weights from a local state_dict (nothing downloaded); a missing
    file is one line naming it; the small backbone's stride 8 keeps an 8x8 map of a 64x64 image."""
    import torchvision

    from zsltune.errors import ConfigError
    from zsltune.layers.backbones import make_backbone

    net = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(net.layer4[1].conv2.weight, 0.5)
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    b = make_backbone("resnet18", weights=str(tmp_path / "r18.pt"))
    assert torch.all(b.gnet[1].conv2.weight == 0.5)
    assert b.gnet(b.fnet(torch.zeros(1, 3, 64, 64))).shape == (1, b.g_channels, 2, 2)
    with pytest.raises(ConfigError, match=r"weights .*nope.pt: no such file; pass a local resnet18 state_dict"):
        make_backbone("resnet18", weights=str(tmp_path / "nope.pt"))
    small = make_backbone("small", width=4, stride=8)
    assert small.gnet(small.fnet(torch.zeros(1, 3, 64, 64))).shape == (1, 16, 8, 8)
