"""CNN backbones for image methods, split as DeML splits them: FNet (the early layers, whose feature map the
channel attention reweights) and GNet (the rest, ending in a feature map and its global average).

``small``: a 4-conv network for tests and CPU sweeps (FNet 2 convs, GNet 2 convs; a 64x64 input gives 16x16 FNet and
8x8 GNet maps). ``googlenet``: torchvision's GoogLeNet split at inception_4b / inception_4c (the authors' code), its
weights from a local file (``weights``); nothing is downloaded. torchvision's GoogLeNet has BatchNorm, the Caffe
original does not. ``resnet18`` / ``resnet50`` (FNet to layer3, GNet layer4) and ``vgg19`` (FNet to pool4, GNet
conv5_1-conv5_4, SGMA's backbone) likewise, each from a local state_dict.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zsltune.errors import ConfigError

BACKBONES = ("small", "googlenet", "resnet18", "resnet50", "vgg19")


def _block(c_in: int, c_out: int, pool: bool = True) -> nn.Sequential:
    """conv 3x3 -> BN -> ReLU (-> MaxPool 2): (B, c_in, h, w) -> (B, c_out, h/2, w/2), or h, w without ``pool``."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class Backbone(nn.Module):
    """``fnet(x)`` -> (B, C_f, h, w); ``gnet(u)`` -> (B, C_g, h', w'); ``f_channels``, ``g_channels``."""

    def __init__(self, fnet: nn.Module, gnet: nn.Module, f_channels: int, g_channels: int) -> None:
        super().__init__()
        self.fnet, self.gnet = fnet, gnet
        self.f_channels, self.g_channels = f_channels, g_channels


def make_backbone(name: str, *, width: int = 32, weights: str | None = None, stride: int = 16) -> Backbone:
    """A fresh backbone ``name``; ``weights``: a local state_dict file for torchvision models; ``stride``: the small
    backbone's total stride (16, or 8 without its last pooling: an 8x8 map of a 64x64 image)."""
    if name == "small":
        w = width
        return Backbone(
            nn.Sequential(_block(3, w), _block(w, 2 * w)),
            nn.Sequential(_block(2 * w, 4 * w), _block(4 * w, 4 * w, pool=stride >= 16)),
            2 * w,
            4 * w,
        )
    if name == "googlenet":
        import torchvision

        net = _load(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True), name, weights)
        names = [
            "conv1",
            "maxpool1",
            "conv2",
            "conv3",
            "maxpool2",
            "inception3a",
            "inception3b",
            "maxpool3",
            "inception4a",
            "inception4b",
        ]
        rest = ["inception4c", "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b"]
        return Backbone(
            nn.Sequential(*(getattr(net, n) for n in names)), nn.Sequential(*(getattr(net, n) for n in rest)), 512, 1024
        )
    if name in ("resnet18", "resnet50"):
        import torchvision

        r = _load(getattr(torchvision.models, name)(weights=None), name, weights)
        f = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
        c = 256 if name == "resnet18" else 1024
        return Backbone(f, r.layer4, c, 2 * c)
    if name == "vgg19":
        import torchvision

        v = _load(torchvision.models.vgg19(weights=None), name, weights).features
        return Backbone(v[:28], v[28:36], 512, 512)  # pool4 | conv5_1..conv5_4 + ReLU (no pool5)
    raise ConfigError(f"backbone {name!r}: unknown; valid: {', '.join(BACKBONES)}")


def _load(net: nn.Module, name: str, weights: str | None) -> nn.Module:
    """``net`` with the state_dict of the local file ``weights`` (None: random initialisation)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights {path}: no such file; pass a local {name} state_dict (nothing is downloaded)")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=False)
    return net
