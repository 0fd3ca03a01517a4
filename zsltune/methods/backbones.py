"""CNN backbones for image methods, split as DeML splits them: FNet (the early layers, whose feature map the
channel attention reweights) and GNet (the rest, ending in a feature map and its global average).

``small``: a 4-conv network for tests and CPU sweeps (FNet 2 convs, GNet 2 convs; a 64x64 input gives 16x16 FNet and
8x8 GNet maps). ``googlenet``: torchvision's GoogLeNet split at inception_4b / inception_4c (the authors' code), its
weights from a local file (``weights``); nothing is downloaded. torchvision's GoogLeNet has BatchNorm, the Caffe
original does not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zsltune.errors import ConfigError

BACKBONES = ("small", "googlenet")


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)
    )


class Backbone(nn.Module):
    """``fnet(x)`` -> (B, C_f, h, w); ``gnet(u)`` -> (B, C_g, h', w'); ``f_channels``, ``g_channels``."""

    def __init__(self, fnet: nn.Module, gnet: nn.Module, f_channels: int, g_channels: int) -> None:
        super().__init__()
        self.fnet, self.gnet = fnet, gnet
        self.f_channels, self.g_channels = f_channels, g_channels


def make_backbone(name: str, *, width: int = 32, weights: str | None = None) -> Backbone:
    """A fresh backbone ``name``; ``weights``: a local state_dict file for torchvision models."""
    if name == "small":
        w = width
        return Backbone(
            nn.Sequential(_block(3, w), _block(w, 2 * w)),
            nn.Sequential(_block(2 * w, 4 * w), _block(4 * w, 4 * w)),
            2 * w,
            4 * w,
        )
    if name == "googlenet":
        import torchvision

        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"weights {path}: no such file; pass a local GoogLeNet state_dict (nothing is downloaded)"
                )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=False)
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
    raise ConfigError(f"backbone {name!r}: unknown; valid: {', '.join(BACKBONES)}")
