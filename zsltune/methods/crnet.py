"""CRnet: Co-Representation Network for generalized zero-shot learning (Zhang et al., 2019).

A class's attribute vector s (P,) is mapped to a visual anchor v̂(s) (D,) by K "expert" single-layer perceptrons, each
fed the offset of s from its own field centre (a k-means centre of the seen classes' attributes); the experts' outputs
are summed (the cooperation module). A relation module g scores an image feature v (D,) against an anchor:
g(v, v̂) = sigmoid(w2 · relu(FC1[v̂; v]) + b2), trained by MSE against 1[same class]. Prediction is argmax over anchors.

FC1 on the concatenation factorises exactly: W [v̂; v] + b1 = W_a v̂ + W_x v + b1. So a batch of B images against C_b
anchors needs B + C_b rows of matmul, not B·C_b rows of a 2D-wide one; ``naive=True`` keeps the concatenated form
(the (B·C_b, 2D) pairs through one Linear(2D, H) holding the same weights) for the tests and
benchmarks/bench_crnet_step.py, which prove the two agree.

Choices the paper leaves open (spec section A, "open decisions"): anchors for the batch's distinct classes only
(``pairs``, as in the Relation Network code), MSE averaged (``reduction``), default nn.Linear init, k-means n_init=10
seeded by the trial seed. The L2 terms cover weights only: Eq. 10 calls w_f, w_g the "trainable parameters" of f and
g, which could include biases (the RN code's Adam weight_decay does); we follow the spec's "weights".

Training dynamics: at init every anchor is nearly the same vector (L2-normalised attributes give offsets s − s_k of
norm ~0.3), so the relation first settles on a constant output ≈ 1/C_b (MSE ≈ p(1 − p)) and only later learns to
discriminate. How long that plateau lasts depends strongly on lr, hidden and the data; Adam at lr >= 1e-3 can also
kill the relation's ReLUs for good (scores then tie everywhere). The paper trains "until the loss converges".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune.data.protocol import StageData
from zsltune.data.sources import DataInfo
from zsltune.errors import ConfigError
from zsltune.methods.base import LossMeter
from zsltune.methods.feature_trainer import FeatureTrainer
from zsltune.methods.hparams import HP, Bool, Choice, Float, Int
from zsltune.methods.prep import ATTRIBUTE_NORMS, FEATURE_NORMS, normalise_attributes
from zsltune.methods.registry import register_method
from zsltune.methods.schedules import LR_SCHEDULES

#: upper bound on the elements of the (n_chunk, C, H) relation intermediate in :meth:`CRnet.scores`
SCORE_CHUNK_ELEMENTS = 32 * 2**20


def field_centres(att_seen: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K field centres (K, P): k-means (n_init=10, fixed seed) on the seen classes' attribute rows (M, P)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(att_seen.astype(np.float64))
    return km.cluster_centers_.astype(np.float32)


class CRnetNet(nn.Module):
    """Cooperation module (K experts, batched) + relation module (FC1-ReLU-FC2-Sigmoid).

    FC1 (2D -> H) on [v̂; v] is stored as its two halves w_a, w_x (H, D) and bias b1 (H,): the factorised path then
    back-propagates into each half directly instead of through slices of one (H, 2D) matrix, and the naive path
    concatenates them back into the single nn.Linear(2D, H) weight of the Relation Network code.
    """

    def __init__(self, centres: torch.Tensor, feature_dim: int, hidden: int) -> None:
        super().__init__()
        k, p = centres.shape
        d, h = feature_dim, hidden
        self.register_buffer("centres", centres.detach().clone().float())  # (K, P): in state_dict
        self.expert_w = nn.Parameter(torch.empty(k, p, d))  # (K, P, D): W_k (transposed), all experts at once
        self.expert_b = nn.Parameter(torch.empty(k, d))  # (K, D)
        self.w_a = nn.Parameter(torch.empty(h, d))  # (H, D): FC1 weight on the anchor v̂
        self.w_x = nn.Parameter(torch.empty(h, d))  # (H, D): FC1 weight on the image feature v
        self.b1 = nn.Parameter(torch.empty(h))  # (H,)
        self.w2 = nn.Parameter(torch.empty(h))  # (H,): FC2 (H -> 1)
        self.b2 = nn.Parameter(torch.empty(1))  # (1,)
        # PyTorch's default nn.Linear init (as in the RN code): U(±1/sqrt(fan_in)), fan_in P, 2D and H
        for params, fan_in in (
            ((self.expert_w, self.expert_b), p),
            ((self.w_a, self.w_x, self.b1), 2 * d),
            ((self.w2, self.b2), h),
        ):
            for t in params:
                nn.init.uniform_(t, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def anchors(self, att: torch.Tensor) -> torch.Tensor:
        """v̂(s) = Σ_k relu(W_k (s − s_k) + b_k) for attribute rows att (C, P) -> (C, D)."""
        off = att[:, None, :] - self.centres[None]  # (C, K, P)
        h = torch.einsum("ckp,kpd->ckd", off, self.expert_w) + self.expert_b  # (C, K, D)
        return h.relu().sum(1)  # (C, D)

    def project_anchors(self, anchors: torch.Tensor) -> torch.Tensor:
        """The anchor half of FC1, A = v̂ W_a^T (C, H): once per set of anchors."""
        return anchors @ self.w_a.T  # (C, H)

    def relate(self, v: torch.Tensor, a: torch.Tensor, *, logit: bool = False) -> torch.Tensor:
        """Factorised relation of images v (B, D) with projected anchors a (C, H) -> (B, C) in [0, 1]."""
        x = torch.addmm(self.b1, v, self.w_x.T)  # (B, H): W_x v + b1
        h = (x[:, None, :] + a[None]).relu_()  # (B, C, H) = relu(FC1[v̂; v]) for every pair
        z = h @ self.w2 + self.b2  # (B, C) relation logits
        return z if logit else torch.sigmoid(z)

    def relation(self, v: torch.Tensor, anchors: torch.Tensor, *, naive: bool = False) -> torch.Tensor:
        """g(v, v̂) for every image (B, D) and anchor (C, D) -> (B, C); ``naive`` builds the (B·C, 2D) pairs."""
        if not naive:
            return self.relate(v, self.project_anchors(anchors))
        (b, d), c = v.shape, anchors.shape[0]
        pairs = torch.cat([anchors[None].expand(b, c, d), v[:, None].expand(b, c, d)], dim=2)  # (B, C, 2D)
        fc1 = torch.cat([self.w_a, self.w_x], dim=1)  # (H, 2D): the nn.Linear(2D, H) weight of the RN code
        h = F.relu(F.linear(pairs.reshape(b * c, 2 * d), fc1, self.b1))  # (B·C, H)
        return torch.sigmoid(h @ self.w2 + self.b2).view(b, c)  # (B, C)

    def regulariser(self, alpha: float, beta: float) -> torch.Tensor:
        """α‖w_f‖² + β‖w_g‖², weights only (no biases): the value; Adam's weight_decay applies its gradient."""
        ef, wa, wx = self.expert_w.reshape(-1), self.w_a.reshape(-1), self.w_x.reshape(-1)
        return alpha * ef.dot(ef) + beta * (wa.dot(wa) + wx.dot(wx) + self.w2.dot(self.w2))

    def make_optimizer(self, lr: float, alpha: float, beta: float) -> torch.optim.Adam:
        """Adam whose L2 weight_decay 2α / 2β on the weights is exactly the gradient of α‖w_f‖² + β‖w_g‖².

        Adam's weight_decay adds wd·w to the gradient before the moments (coupled L2, not AdamW), so this is the
        same optimisation as back-propagating the regulariser, without a pass over ~D·(2H + K·P) weights for
        pow/sum forward and backward each step. ``fused`` Adam: one kernel over all tensors (CPU and CUDA).
        """
        groups = [
            {"params": [self.expert_w], "weight_decay": 2.0 * alpha},
            {"params": [self.w_a, self.w_x, self.w2], "weight_decay": 2.0 * beta},
            {"params": [self.expert_b, self.b1, self.b2], "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=lr, fused=True)


def crnet_loss(
    model: CRnetNet,
    att: torch.Tensor,
    v: torch.Tensor,
    y: torch.Tensor,
    *,
    n_seen: int,
    pairs: str = "batch",
    reduction: str = "mean",
    naive: bool = False,
) -> torch.Tensor:
    """loss1 (MSE against 1[same class]) of images v (B, D) with seen labels y (B,); class attributes att (C, P).

    ``pairs="batch"`` builds anchors only for the distinct classes in the batch (the Relation Network code CRnet
    follows: ~1:21 matched:mismatched on AwA's 40 classes, the paper says "about 1:30"), ``"all"`` for every
    seen class. The regulariser is not here: see :meth:`CRnetNet.make_optimizer`.
    """
    if pairs == "batch":
        cls, target = torch.unique(y, return_inverse=True)  # (C_b,), (B,) index of each label in cls
    else:
        cls, target = torch.arange(n_seen, device=y.device), y
    anchors = model.anchors(att[cls])  # (C_b, D)
    g = model.relation(v, anchors, naive=naive)  # (B, C_b)
    onehot = F.one_hot(target, cls.shape[0]).float()  # (B, C_b)
    # Eq. 9 (and the spec) write loss1 as a sum over the batch's pairs; the RN code uses nn.MSELoss, a mean. The
    # default here is "mean" as the brief asks; "sum" is Eq. 9 literally (it re-weights α, β by B·C_b).
    return F.mse_loss(g.float(), onehot, reduction=reduction)


@register_method("crnet")
class CRnet(FeatureTrainer):
    """CRnet on precomputed features; hyperparameters and defaults from the paper (Table 2, AwA1/AwA2/aPY row)."""

    # the paper's configuration (Zhang et al., 2019, Sec. 4.1 and Table 2: K, alpha, beta per dataset); batch 32 and
    # l2-normalised attributes from the Relation Network code it follows (Sung et al., 2018)
    hparams: ClassVar[dict[str, HP]] = {
        "K": Int(
            default={"AWA1": 3, "AWA2": 3, "APY": 3, "CUB": 4, "SUN": 12, "*": 3},
            help="experts (field centres), clamped to the seen classes",
        ),
        "alpha": Float(default={"SUN": 1e-6, "*": 1e-5}, low=0, help="L2 weight of the experts f"),
        "use_beta": Bool(default={"CUB": False, "SUN": False, "*": True}),
        "beta": Float(default=1e-4, low=0, help="L2 weight of the relation g"),
        "lr": Float(default=1e-5, gt=0),
        "lr_schedule": Choice(
            LR_SCHEDULES, default="constant", help="constant (paper) or cosine to 0 over the trial's budget"
        ),
        "hidden": Int(default=2048),
        "batch_size": Int(default=32),
        "att_norm": Choice(ATTRIBUTE_NORMS, default="l2"),
        "feat_norm": Choice(
            FEATURE_NORMS, default="none", help="image features: none, std (training-image statistics), l2"
        ),
        "pairs": Choice(("batch", "all"), default="batch"),
        "reduction": Choice(("mean", "sum"), default="mean"),
    }

    def __init__(self, config: Mapping[str, Any], data: StageData, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # x_train (the stage's rows), y_train, feat_norm: see FeatureTrainer
        c = self.config
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.alpha = float(c["alpha"])
        self.beta = float(c["beta"]) if c["use_beta"] else 0.0  # Table 2: β = 0 on CUB and SUN

        att = normalise_attributes(data.attributes, data.n_seen, c["att_norm"])  # (C, P), seen classes first
        self.k = min(int(c["K"]), data.n_seen)  # K ∈ {1, ..., M} (paper, Sec. 3)
        centres = torch.from_numpy(field_centres(att[: data.n_seen], self.k, self.seed))  # (K, P)
        # everything the training loop touches lives on the device, created once
        self.att = self.to_device(att)  # (C, P)
        self.model = CRnetNet(centres, data.feature_dim, int(c["hidden"])).to(self.device)
        self.optimizer = self.model.make_optimizer(float(c["lr"]), self.alpha, self.beta)

    def loss(self, v: torch.Tensor, y: torch.Tensor, *, naive: bool = False) -> torch.Tensor:
        """loss1 (MSE) of a batch of training images v (B, D) with labels y (B,)."""
        c = self.config
        with self.autocast():
            return crnet_loss(
                self.model,
                self.att,
                v,
                y,
                n_seen=self.data.n_seen,
                pairs=c["pairs"],
                reduction=c["reduction"],
                naive=naive,
            )

    def train_steps(self, steps: int) -> dict[str, float]:
        c, meter = self.config, LossMeter(self.device)
        regularised = self.alpha > 0 or self.beta > 0
        cuts = self.next_batches(steps, self.y_train.shape[0], int(c["batch_size"]))
        for i, idx in enumerate(cuts):
            self.schedule_lr(self.optimizer, float(c["lr"]), c["lr_schedule"], i, len(cuts))
            mse = self.loss(self.prep_features(self.x_train[idx]), self.y_train[idx])  # (B, D), (B,) -> ()
            if regularised:  # the value at the weights the step's gradient is taken at (Eq. 10's total loss)
                with torch.no_grad():
                    meter.add({"_reg": self.model.regulariser(self.alpha, self.beta)})
            self.optimizer.zero_grad(set_to_none=True)
            mse.backward()
            self.optimizer.step()  # + the regulariser's gradient, as weight_decay
            meter.add({"mse": mse})
        return meter.means(len(cuts), total=("_reg", "mse"))

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Relation scores (n, C) of images x (n, D) against the anchors of every stage class."""
        x = self.prep_features(x)
        with self.autocast():
            a = self.model.project_anchors(self.model.anchors(self.att))  # (C, H)
            chunk = max(1, SCORE_CHUNK_ELEMENTS // (a.shape[0] * a.shape[1]))
            # ranked on the logit: the sigmoid saturates to ties at 1.0 in float32, and argmax then picks the first
            # (seen) column; the logit orders the same pairs without ties
            out = [self.model.relate(x[i : i + chunk], a, logit=True).float() for i in range(0, x.shape[0], chunk)]
        return torch.cat(out) if out else x.new_zeros((0, a.shape[0]))

    @classmethod
    def check_rules(cls, config: Mapping[str, Any], info: DataInfo) -> None:
        k = config.get("K")
        if k is not None and k > info.n_seen:
            raise ConfigError(
                f"crnet: K <= seen classes must hold (one field centre per class at most), got K={k} with "
                f"{info.n_seen} seen classes in the {info.stage} stage of {info.dataset}"
            )

    def extra_state(self) -> dict[str, Any]:
        # the field centres travel as a model buffer; K is recorded to catch a mismatched resume early
        return {"K": self.k}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "K" in state and int(state["K"]) != self.k:
            raise ConfigError(f"crnet: checkpoint has K={state['K']} field centres, this trainer {self.k}")
