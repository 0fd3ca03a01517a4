"""SGMA: semantic-guided multi-attention localisation for zero-shot learning (Zhu et al., NeurIPS 2019).

A CNN embeds the whole image; K attention maps over its last conv map (channel groups,
:class:`~zsltune.layers.attention.PartAttention`; centres and map losses in :mod:`zsltune.layers.attention_maps`) each
give a centre; a 2-FC cropping net places a square crop from each map (``crop_method: net``, the paper's localisation,
Sec. 3.2; its shift bounded by half the first crop's side), zoomed to ``part_size`` by bilinear sampling
(:func:`~zsltune.layers.crops.crop_zoom`), so the part branches' losses train the crops and, through them, the attention
end to end. ``centre``: a crop of side ``crop_ratio`` around the map's centre (gradient through the centre);
``detached``: the same with the centre detached (an ablation: the maps then learn only from compactness, diversity
and the shared backbone). The K parts go through a second CNN (or the first: ``share_cnn``). Each of
the K + 1 branches embeds its pooled map into the attribute space: a NormFace softmax (``scale`` x the cosine to
every seen class's attribute vector) plus a class-centre triplet loss (the class's attribute vector closer than any
other's by ``margin``); the maps are shaped by a compactness and a diversity loss. Scores: the branches' mean cosine
to every stage class; GZSL with calibrated stacking (the ``gamma`` knob, frozen from validation).

Attention initialisation (``clusters``): after ``warmup_steps`` of the whole-image branch alone (the paper clusters
the channels of a pretrained CNN; nothing is pretrained here), k-means on where each channel peaks over training
images groups the channels into K clusters, and head k starts by selecting cluster k. ``random``: the heads keep
their random initialisation. The paper's backbone is an ImageNet VGG19 at 448 px; CPU sweeps here train the
``small`` 4-conv backbone from scratch on 64x64 synthetic part images (``backbone: vgg19`` with ``weights:`` a local
file for the paper's setting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune.data.image_source import AttributeImageStage
from zsltune.data.sources import DataInfo
from zsltune.errors import ConfigError
from zsltune.layers.attention import PartAttention
from zsltune.layers.attention_maps import channel_clusters, compactness, diversity, map_centres
from zsltune.layers.backbones import BACKBONES, make_backbone
from zsltune.layers.crops import crop_zoom
from zsltune.methods.base import LossMeter
from zsltune.methods.hparams import HP, Bool, Choice, Float, Int
from zsltune.methods.hparams import Path as PathHP
from zsltune.methods.image_trainer import ImageTrainer
from zsltune.methods.registry import register_method


class CropNet(nn.Module):
    """The cropping net (``crop_method: net``, Zhu et al. 2019, Sec. 3.2): 2 FC layers from a map (pooled to 8x8)
    to (t_x, t_y, t_s); starts at the map's centre with side ``ratio``, so training begins as ``centre`` does."""

    def __init__(self, ratio: float, hidden: int = 32) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, hidden), nn.Linear(hidden, 3)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.ratio = ratio

    def forward(self, m: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map (B, h, w) and its centre (B, 2) -> crop centre (B, 2) and side (B,) as fractions of the image."""
        t = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(m[:, None], 8).flatten(1) * 64)))  # (B, 3)
        # the shift is bounded by half the starting crop's side (a stabilisation): a crop at least that large holds
        # the map's centre, so the part losses move it around the attended region instead of off it (unbounded,
        # crops left the parts; bounded by the current side instead, map hits fell to chance on seed 0)
        shift = self.ratio * torch.tanh(t[:, :2])  # (B, 2), in half-image units
        return (centre + shift).clamp(-1, 1), (self.ratio * torch.exp(0.5 * torch.tanh(t[:, 2])))


class SGMANet(nn.Module):
    """Whole-image CNN, K attention heads, the parts' CNN and K + 1 embeddings into the attribute space."""

    def __init__(self, c: Mapping[str, Any], att_dim: int) -> None:
        super().__init__()
        k = int(c["K"])
        net = {"width": int(c["width"]), "weights": c["weights"], "stride": 8}  # 8x8 maps of 64x64 images
        self.whole = make_backbone(c["backbone"], **net)
        ch = self.whole.g_channels
        self.parts = None if k == 0 or c["share_cnn"] else make_backbone(c["backbone"], **net)
        self.attention = PartAttention(ch, k, int(c["bottleneck"]), temp=float(c["map_temp"])) if k else None
        self.crop_method = str(c["crop_method"])
        self.croppers = nn.ModuleList(CropNet(float(c["crop_ratio"])) for _ in range(k * (self.crop_method == "net")))
        self.embed = nn.ModuleList(nn.Linear(ch, att_dim) for _ in range(k + 1))
        self.k, self.ratio, self.part_size = k, float(c["crop_ratio"]), int(c["part_size"])

    def conv(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        net = net or self.whole
        return net.gnet(net.fnet(x))  # (B, C, h, w)

    def localise(self, maps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | float]]:
        """Each part's crop from the maps (B, K, h, w): centre (B, 2) in [-1, 1] and side (a fraction of the image)."""
        out: list[tuple[torch.Tensor, torch.Tensor | float]] = []
        for j, ctr in enumerate(map_centres(maps).unbind(1)):  # (B, 2) each
            if self.croppers:  # net: the cropping net places the crop, trained by the part losses through the zoom
                out.append(self.croppers[j](maps[:, j], ctr))
            else:  # detached: the ablation in which no part loss reaches the attention
                out.append((ctr.detach() if self.crop_method == "detached" else ctr, self.ratio))
        return out

    def forward(self, x: torch.Tensor, *, parts: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Embeddings [(B, P)] x (1 + K) (the whole image first; only it when ``parts`` is off) and the maps
        (B, K, h, w) (None for K = 0)."""
        u = self.conv(x)  # (B, C, h, w)
        out = [self.embed[0](u.mean((2, 3)))]
        if not (parts and self.k):
            return out, None
        assert self.attention is not None
        maps = self.attention(u)  # (B, K, h, w)
        crops = [crop_zoom(x, ctr, side, self.part_size) for ctr, side in self.localise(maps)]
        up = self.conv(torch.cat(crops), self.parts)  # (K·B, C, h', w'), parts on the batch axis
        pooled = up.mean((2, 3)).chunk(self.k)
        return out + [emb(p) for emb, p in zip(self.embed[1:], pooled, strict=True)], maps


@register_method("sgma")
class SGMA(ImageTrainer[AttributeImageStage]):
    """SGMA on raw images with xlsa17 splits (the ``xlsa17-images`` source); metric family gzsl."""

    data_source: ClassVar[str] = "xlsa17-images"
    metric: ClassVar[str] = "H_cal"
    # the paper's configuration (Zhu et al., 2019, Sec. 4, with its rebuttal); margin, diversity margin and the lr range
    # from the implementation notes
    hparams: ClassVar[dict[str, HP]] = {
        "K": Int(default=2, low=0, help="attention maps (parts); 0: the whole image only"),
        "share_cnn": Bool(
            default=False, help="the parts go through the whole image's CNN (else a second CNN shared by the parts)"
        ),
        "crop_method": Choice(
            ("net", "centre", "detached"),
            default="net",
            help="net: a 2-FC cropping net places each crop (the paper's); centre: a square around the map's centre; "
            "detached: the same with the centre detached, so the part losses never reach the attention (ablation)",
        ),
        "attention_init": Choice(
            ("clusters", "random"), default="clusters", help="heads start from channel clusters, or at random"
        ),
        "scale": Float(default=16.0, gt=0, help="NormFace scale s of the embedding softmax"),
        "margin": Float(
            default=0.8, low=0, help="class-centre triplet margin (on unit vectors: squared distances in [0, 4])"
        ),
        "triplet_weight": Float(default=1.0, low=0),
        "compact_weight": Float(default=1.0, low=0),
        "diversity_weight": Float(default=1.0, low=0),
        "diversity_margin": Float(default=0.2, low=0, high=1),
        "map_temp": Float(
            default=4.0, gt=0, help="sharpness of the maps: softmax over locations of temp x the standardised map"
        ),
        "crop_ratio": Float(default=0.4, gt=0, high=1, help="crop side / image side (t_s / t)"),
        "part_size": Int(default=224, low=8, help="side of a zoomed part, pixels"),
        "warmup_steps": Int(
            default=200, low=0, help="whole-image steps before the channels are clustered and the parts train"
        ),
        "lr": Float(default=1e-4, gt=0, help="backbone lr (Adam)"),
        "head_lr_mult": Float(default=10.0, gt=0, help="lr multiplier of the attention heads, croppers and embeddings"),
        "weight_decay": Float(default=1e-4, low=0),
        "batch_size": Int(default=8, low=2),
        "bottleneck": Int(low=1, default=32, help="attention heads' hidden width"),
        # on by default: xlsa17's attribute vectors are non-negative, so any two classes' cosine is already about
        # 0.58 (AWA2, CUB); centring leaves only the between-class differences to the NormFace cosine
        "centre_att": Bool(default=True, help="subtract the seen classes' mean attribute vector before normalising"),
        # runnable without files: the paper's VGG19 at 448 px needs a local weights file (sgma-paper.yaml)
        "backbone": Choice(BACKBONES, default="small"),
        "width": Int(low=1, default=32, help="small backbone: channels of its first conv"),
        "weights": PathHP(help="a local weights file for a torchvision backbone (nothing is downloaded)"),
        "crop": Int(low=8, default=64, help="training crop of the cached images (the centre crop in evaluation)"),
    }

    def __init__(self, config: Mapping[str, Any], data: AttributeImageStage, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # pixels, labels of the training split: see ImageTrainer
        c = self.config
        att = torch.as_tensor(np.asarray(data.attributes), dtype=torch.float32)  # (C, P), seen classes first
        if c["centre_att"]:
            att = att - att[: data.n_seen].mean(0)
        self.att = F.normalize(att, dim=1).to(self.device)  # (C, P) class embeddings
        self.model = SGMANet(c, att.shape[1]).to(self.device)
        self.clustered = int(c["K"]) == 0 or c["attention_init"] == "random"
        if not self.clustered and int(c["warmup_steps"]) == 0:  # the channels of the network as it starts
            self.cluster_channels()
        heads = [p for m in (self.model.attention, self.model.croppers, self.model.embed) if m for p in m.parameters()]
        ids = {id(p) for p in heads}
        body = [p for p in self.model.parameters() if id(p) not in ids]
        lr = float(c["lr"])
        self.optimizer = torch.optim.Adam(
            [{"params": body, "lr": lr}, {"params": heads, "lr": lr * float(c["head_lr_mult"])}],
            weight_decay=float(c["weight_decay"]),
        )

    @classmethod
    def check_rules(cls, config: Mapping[str, Any], info: DataInfo) -> None:
        crop = config.get("crop")
        if crop is not None and config.get("backbone", "small") == "small" and crop < 16:
            raise ConfigError(f"sgma: crop >= 16 must hold for the small backbone (4 poolings), got crop={crop}")

    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // int(self.config["batch_size"]))

    @property
    def parts_on(self) -> bool:
        """Whether the part branches are in use: past the warm-up, with the heads initialised."""
        return self.clustered and self.step >= int(self.config["warmup_steps"])

    def extra_state(self) -> dict[str, Any]:
        return {"clustered": self.clustered}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.clustered = bool(state.get("clustered", self.clustered))

    # ---- training -------------------------------------------------------------------------------------------
    def cluster_channels(self, n: int = 256) -> np.ndarray:
        """Group the whole-image CNN's last-layer channels into K clusters and start head k on cluster k."""
        rows = torch.randperm(len(self.labels), generator=self.generator, device=self.device)[:n].cpu().numpy()
        self.model.eval()
        with torch.no_grad():
            u = self.model.conv(self.images(np.sort(rows), train=False))  # (n, C, h, w)
        self.model.train()
        labels = channel_clusters(u, int(self.config["K"]), seed=self.seed)
        assert self.model.attention is not None
        self.model.attention.init_from_clusters(labels)
        self.clustered = True
        return labels

    def branch_losses(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NormFace softmax over the seen classes and the class-centre triplet of one branch's embeddings (B, P)."""
        c = self.config
        zn = F.normalize(z.float(), dim=1)
        a = self.att[: self.data.n_seen]  # (S, P)
        cos = zn @ a.T  # (B, S)
        ce = F.cross_entropy(float(c["scale"]) * cos, y)
        d2 = 2 - 2 * cos  # squared distances of unit vectors
        pos = d2.gather(1, y[:, None])[:, 0]
        neg = d2.scatter(1, y[:, None], float("inf")).min(1).values
        return ce, F.relu(float(c["margin"]) + pos - neg).mean()

    def train_steps(self, steps: int) -> dict[str, float]:
        c, meter = self.config, LossMeter(self.device, torch.float64)
        bs = int(c["batch_size"])
        for i, batch in enumerate(self.next_batches(steps, len(self.labels), bs)):
            warm = self.step + i < int(c["warmup_steps"])  # the whole image only
            rows = np.sort(batch.cpu().numpy())  # in row order, images and labels alike
            x, y = self.images(rows, train=True), torch.as_tensor(self.labels[rows], device=self.device)
            with self.autocast():
                zs, maps = self.model(x, parts=not warm)
            terms = [self.branch_losses(z, y) for z in zs]
            ce = sum(t[0] for t in terms) / len(terms)
            tri = sum(t[1] for t in terms) / len(terms)
            comp = compactness(maps.float()) if maps is not None else torch.zeros((), device=self.device)
            div = diversity(maps.float(), float(c["diversity_margin"])) if maps is not None else comp * 0
            loss = ce + float(c["triplet_weight"]) * tri + float(c["compact_weight"]) * comp
            loss = loss + float(c["diversity_weight"]) * div
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if not self.clustered and self.step + i + 1 >= int(c["warmup_steps"]):  # the warm-up is over
                self.cluster_channels()
            meter.add({"loss": loss, "softmax": ce, "triplet": tri, "compact": comp, "diversity": div})
        return meter.means(steps)

    # ---- evaluation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def crop_centres(self, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
        """Where the parts are cropped: centres (N, K, 2) (x, y in [-1, 1]) of images (N, R, R, 3) uint8."""
        out = []
        for x in self.eval_batches(pixels, batch):
            maps = self.model.attention(self.model.conv(x))  # (B, K, h, w)
            out.append(torch.stack([c for c, _ in self.model.localise(maps)], 1).cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def forward_cached(self, pixels: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (N, C) against every stage class (mean cosine over the branches) and the maps (N, K, h, w)."""
        scores, maps = [], []
        for x in self.eval_batches(pixels, batch):
            zs, m = self.model(x, parts=self.parts_on)
            scores.append(sum(F.normalize(z.float(), dim=1) @ self.att.T for z in zs).cpu() / len(zs))
            if m is not None:
                maps.append(m.float().cpu())
        return torch.cat(scores).numpy(), (torch.cat(maps).numpy() if maps else None)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        (seen, y_seen), (unseen, y_unseen) = self.cached_split("seen"), self.cached_split("unseen")
        s_seen, _ = self.forward_cached(seen.pixels)
        s_unseen, _ = self.forward_cached(unseen.pixels)
        return self.gzsl_metrics(s_seen, y_seen, s_unseen, y_unseen)
