"""DeML: hybrid-attention decoupled metric learning for zero-shot image retrieval (Chen & Deng, CVPR 2019).

I scales x J channel-attention branches = I·J learners of ⌊d/(IJ)⌋ dimensions each. Scale i has its own backbone
copy (FNet, then GNet; :mod:`zsltune.layers.backbones`); its J channel-attention modules
(:mod:`zsltune.layers.attention`) reweight the FNet map, GNet runs on each reweighted map, and a bias-free linear
learner embeds the pooled result. Scale i+1 sees the crop that scale i's object attention (a random walk on its first
branch's GNet map, :mod:`zsltune.layers.attention_maps`) picks from scale i's input, resized back to the input size
(:mod:`zsltune.layers.crops`). Losses (:mod:`zsltune.layers.metric_losses`): binomial
deviance per learner (Eq. 5), averaged; the sub-learners of a scale kept apart by the released hinge or by an
adversary through a gradient-reversal layer (Eq. 4); activation decay λ₁ and the learners' row-norm penalty λ₂
(Eq. 6). Batches are ``batch_classes`` classes x ``per_class`` images. Evaluation: each learner's embedding
L2-normalised, concatenated, normalised again; Recall@K (query excluded; the stage's list: 1, 2, 4, 8 on CUB and
Cars, 1, 10, 100, 1000 on Stanford Online Products) and NMI on the stage's evaluation
classes (the validation classes in a search, the test classes in a rerun).

Choices the paper leaves open are flags: ``adversary`` (hinge as released, or grl), ``sigma`` of the walk's spatial
term (0: off), ``crop_threshold``. Differences from the paper for CPU sweeps: the ``small`` backbone on 64x64
synthetic images instead of an ImageNet GoogLeNet at 227 (``backbone: googlenet`` with ``weights:`` a local file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune import metrics
from zsltune.data.image_source import ImageStage
from zsltune.data.sources import DataInfo
from zsltune.errors import ConfigError
from zsltune.layers.attention import ChannelAttention
from zsltune.layers.attention_maps import attention_boxes, random_walk
from zsltune.layers.backbones import BACKBONES, make_backbone
from zsltune.layers.crops import crop_resize
from zsltune.layers.metric_losses import (
    activation_decay,
    adversary_discrepancy,
    binomial_deviance,
    dann_coefficient,
    hinge_diversity,
    reverse_gradient,
    row_norm_penalty,
)
from zsltune.methods.base import LossMeter
from zsltune.methods.hparams import HP, Choice, Float, Int
from zsltune.methods.hparams import Path as PathHP
from zsltune.methods.image_trainer import ImageTrainer
from zsltune.methods.registry import register_method


def orthogonal_adversary(dim: int) -> nn.Module:
    """The ``grl`` adversary F: a linear map kept orthogonal (unit rows, mutually orthogonal). A deviation from the
    paper, which leaves F free: a free linear F wins the max-min game by shrinking, and one with unit rows by turning
    them to the directions where the sub-learners already agree (their differences span few directions: the
    smaller half of them holds 1-2% of the variance). An orthogonal F can do neither; L_adv then no longer depends
    on F, and through the reversal the learners maximise their discrepancy on the unit sphere."""
    return nn.utils.parametrizations.orthogonal(nn.Linear(dim, dim, bias=False))


class Scale(nn.Module):
    """One scale: a backbone copy, J channel-attention modules and J learners."""

    def __init__(self, backbone: str, width: int, weights: str | None, j: int, bottleneck: int, dim: int) -> None:
        super().__init__()
        self.net = make_backbone(backbone, width=width, weights=weights)
        self.cams = nn.ModuleList(ChannelAttention(self.net.f_channels, bottleneck) for _ in range(j))
        self.learners = nn.ModuleList(nn.Linear(self.net.g_channels, dim, bias=False) for _ in range(j))
        for lin in self.learners:
            nn.init.xavier_uniform_(lin.weight)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Embeddings [(B, dim)] x J and the first branch's GNet map (B, C, h, w) for the object attention."""
        u = self.net.fnet(x)  # (B, C_f, h, w)
        j = len(self.cams)
        g = self.net.gnet(torch.cat([cam(u) for cam in self.cams]))  # (J·B, C_g, h', w'), branches on the batch axis
        pooled = g.mean((2, 3)).chunk(j)  # J x (B, C_g)
        return [lin(p) for lin, p in zip(self.learners, pooled, strict=True)], g[: x.shape[0]]


@register_method("deml")
class DeML(ImageTrainer[ImageStage]):
    """DeML on raw images (the ``images`` source); metric family retrieval."""

    flip: ClassVar[bool] = True  # a retrieval embedding should not depend on which way an object faces

    data_source: ClassVar[str] = "images"
    metric_family: ClassVar[str] = "retrieval"
    metric: ClassVar[str] = "recall@1"
    knobs: ClassVar[tuple[str, ...]] = ()
    # the paper's configuration (Chen & Deng, 2019, Sec. 4); lambda0 0.2 (hinge), sigma 0.15, bottleneck 64 and batches
    # of 26 classes x 2 from the authors' code
    hparams: ClassVar[dict[str, HP]] = {
        "I": Int(default=3, help="object-attention scales"),
        "J": Int(default=3, help="channel-attention branches (sub-learners) per scale"),
        "d": Int(default=512, help="total embedding size; each learner has d // (I·J)"),
        "alpha": Float(default=2.0, gt=0),
        "beta": Float(default=0.5, low=0, high=1),
        "gamma_neg": Float(default=35.0, gt=0),
        "lambda0": Float(default=0.2, low=0, help="adversary (or hinge) weight"),
        "lambda1": Float(default=0.014, low=0, help="activation decay"),
        "lambda2": Float(default=0.25, low=0, help="learners' row-norm penalty"),
        "adversary": Choice(
            ("hinge", "grl"),
            default="hinge",
            help="hinge: the released code; grl: Eq. 4 through gradient reversal (DANN schedule), F kept orthogonal",
        ),
        "T": Int(default=10, help="random-walk steps"),
        "sigma": Float(default=0.15, low=0, help="spatial term's width x W (0: off)"),
        "crop_threshold": Float(default=1.0, gt=0),
        "bottleneck": Int(default=64, help="channel-attention bottleneck"),
        "lr": Float(default=1e-5, gt=0, help="backbone lr (Adam)"),
        "head_lr_mult": Float(default=10.0, gt=0, help="lr multiplier of the attention modules and learners"),
        "weight_decay": Float(default=2e-4, low=0),
        "batch_classes": Int(default=26),
        "per_class": Int(default=2),
        # runnable without files: the paper's GoogLeNet at 227 px needs a local weights file (deml-paper.yaml)
        "backbone": Choice(BACKBONES, default="small"),
        "width": Int(default=32, help="small backbone: channels of its first conv"),
        "weights": PathHP(help="a local weights file for a torchvision backbone (nothing is downloaded)"),
        "crop": Int(default=56, help="training crop of the cached images (the centre crop in evaluation)"),
    }

    def __init__(self, config: Mapping[str, Any], data: ImageStage, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # pixels, labels of the training split: see ImageTrainer
        c = self.config
        self.i, self.j = int(c["I"]), int(c["J"])
        self.dim = int(c["d"]) // (self.i * self.j)  # ⌊d/(IJ)⌋ per learner
        if self.dim < 1:
            raise ConfigError(
                f"deml: d >= I·J must hold (each learner needs a dimension), got d={c['d']}, I·J={self.i * self.j}"
            )
        self.by_class = [np.flatnonzero(self.labels == k) for k in range(int(self.labels.max()) + 1)]
        self.by_class = [ix for ix in self.by_class if len(ix)]
        self.model = nn.ModuleList(
            Scale(c["backbone"], int(c["width"]), c["weights"], self.j, int(c["bottleneck"]), self.dim)
            for _ in range(self.i)
        ).to(self.device)
        self.adversaries = nn.ModuleList(orthogonal_adversary(self.dim) for _ in range(self.i)).to(self.device)
        head = [p for s in self.model for m in (s.cams, s.learners) for p in m.parameters()] + list(
            self.adversaries.parameters()
        )
        heads = {id(p) for p in head}
        body = [p for p in self.model.parameters() if id(p) not in heads]
        lr, wd = float(c["lr"]), float(c["weight_decay"])
        self.optimizer = torch.optim.Adam(
            [{"params": body, "lr": lr}, {"params": head, "lr": lr * float(c["head_lr_mult"])}], weight_decay=wd
        )

    @classmethod
    def check_rules(cls, config: Mapping[str, Any], info: DataInfo) -> None:
        bc = config.get("batch_classes")
        if bc is not None and bc > info.n_seen:
            raise ConfigError(
                f"deml: batch_classes <= training classes must hold, got batch_classes={bc} with {info.n_seen} "
                f"training classes in the {info.stage} stage of {info.dataset}"
            )

    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // (int(self.config["batch_classes"]) * int(self.config["per_class"])))

    def step_cost(self) -> float:
        return float(int(self.config["batch_classes"]) * int(self.config["per_class"]))  # the batch's images

    # ---- data -----------------------------------------------------------------------------------------------
    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_classes`` x ``per_class`` training images (random crop + flip), (B, 3, c, c) in [-1, 1], (B,)."""
        c = self.config
        g = self.generator
        pick = torch.randperm(len(self.by_class), generator=g, device=self.device)[: int(c["batch_classes"])].tolist()
        rows = []
        for k in pick:
            ix = self.by_class[k]
            sel = torch.randint(len(ix), (int(c["per_class"]),), generator=g, device=self.device).tolist()
            rows += [int(ix[s]) for s in sel]
        idx = np.asarray(rows)
        return self.images(idx, train=True), torch.as_tensor(self.labels[idx], device=self.device)

    # ---- model ----------------------------------------------------------------------------------------------
    def embed_all(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Embeddings per scale and branch: I x J tensors (B, dim); scale i+1 sees scale i's attended crop."""
        c = self.config
        out = []
        for i, scale in enumerate(self.model):
            zs, gmap = scale(x)
            out.append(zs)
            if i + 1 < self.i:
                maps = random_walk(gmap.detach(), steps=int(c["T"]), sigma=float(c["sigma"]) or None)
                boxes = attention_boxes(maps, x.shape[-1], threshold=float(c["crop_threshold"]))
                x = crop_resize(x, boxes, x.shape[-1])
        return out

    def train_steps(self, steps: int) -> dict[str, float]:
        c, meter = self.config, LossMeter(self.device, torch.float64)
        horizon = max(1, self.max_epochs * (self.iteration_steps or self.steps_per_epoch()))  # the trial's steps
        for i in range(steps):
            x, y = self.sample_batch()
            with self.autocast():
                zs = self.embed_all(x)
            flat = [z.float() for scale in zs for z in scale]
            metric = sum(
                binomial_deviance(z, y, alpha=float(c["alpha"]), beta=float(c["beta"]), gamma_neg=float(c["gamma_neg"]))
                for z in flat
            ) / len(flat)
            if c["adversary"] == "hinge":
                adv = sum(hinge_diversity(scale) for scale in zs)
            else:  # Eq. 4: F pulls the sub-learners together, the learners push apart through the reversal
                w = dann_coefficient((self.step + i) / horizon)  # 0 at the start, ~1 from a third of the budget
                adv = sum(
                    adversary_discrepancy(f, [reverse_gradient(z, w) for z in scale])
                    for f, scale in zip(self.adversaries, zs, strict=True)
                )
            act = activation_decay(flat)
            rows = row_norm_penalty([lin.weight for s in self.model for lin in s.learners])
            loss = metric + float(c["lambda0"]) * adv + float(c["lambda1"]) * act + float(c["lambda2"]) * rows
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            meter.add({"loss": loss, "metric": metric, "adv": adv, "act": act})
        return meter.means(steps)

    @property
    def recall_ks(self) -> tuple[int, ...]:
        """The stage's Recall@K list (a data-side setting: ``--recall-at``, the space's ``recall_at``)."""
        return tuple(self.data.recall_ks)

    def metric_keys(self) -> tuple[str, ...]:
        return metrics.metric_names(self.metric_family, recall_ks=self.recall_ks)

    @torch.no_grad()
    def embeddings(self, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
        """The retrieval embedding (N, I·J·dim) of cached images: each learner L2-normalised, then the whole."""
        out = []
        for x in self.eval_batches(pixels, batch):
            zs = self.embed_all(x)
            z = torch.cat([F.normalize(v.float(), dim=1) for scale in zs for v in scale], 1)
            out.append(F.normalize(z, dim=1).cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        cache, y = self.cached_split("eval")
        e = self.embeddings(cache.pixels)
        out = metrics.recall_at_k(e, e, y, y, ks=self.recall_ks, exclude_self=True)
        out["NMI"] = metrics.clustering_nmi(e, y, seed=self.seed)
        if not all(np.isfinite(v) for v in out.values()):
            self.check_finite(e)
        return {k: float(v) for k, v in out.items()}
