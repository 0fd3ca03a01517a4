"""CRnet: Co-Representation Network for generalized zero-shot learning (Zhang et al., 2019).

A class's attribute vector s (P,) is mapped to a visual anchor v̂(s) (D,) by K "expert" single-layer perceptrons, each
fed the offset of s from its own field centre (a k-means centre of the seen classes' attributes); the experts' outputs
are summed (the cooperation module). A relation module g scores an image feature v (D,) against an anchor:
g(v, v̂) = sigmoid(w2 · relu(FC1[v̂; v]) + b2), trained by MSE against 1[same class]. Prediction is argmax over anchors.

FC1 on the concatenation factorises exactly: W [v̂; v] + b1 = W_a v̂ + W_x v + b1. So a batch of B images against C_b
anchors needs B + C_b rows of matmul, not B·C_b rows of a 2D-wide one; ``naive=True`` keeps the concatenated form
(same weights, same nn.Linear) for the tests and benchmarks/bench_crnet_step.py that prove the two agree.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune.data.protocol import StageData
from zsltune.errors import ConfigError
from zsltune.methods.base import Trainer, register_method

#: upper bound on the elements of the (n_chunk, C, H) relation intermediate in :meth:`CRnet.scores`
SCORE_CHUNK_ELEMENTS = 32 * 2**20
CHOICES: dict[str, tuple[str, ...]] = {"att_norm": ("raw", "l2"), "pairs": ("batch", "all"),
                                       "reduction": ("mean", "sum")}


def field_centres(att_seen: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K field centres (K, P): k-means (n_init=10, fixed seed) on the seen classes' attribute rows (M, P)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(att_seen.astype(np.float64))
    return km.cluster_centers_.astype(np.float32)


class CRnetNet(nn.Module):
    """Cooperation module (K experts, batched) + relation module (FC1-ReLU-FC2-Sigmoid)."""

    def __init__(self, centres: torch.Tensor, feature_dim: int, hidden: int) -> None:
        super().__init__()
        k, p = centres.shape
        d = feature_dim
        self.register_buffer("centres", centres.detach().clone().float())  # (K, P): in state_dict
        self.expert_w = nn.Parameter(torch.empty(k, p, d))  # (K, P, D): W_k (transposed), all experts at once
        self.expert_b = nn.Parameter(torch.empty(k, d))  # (K, D)
        bound = 1.0 / math.sqrt(p)  # nn.Linear(P, D)'s default init, per expert
        nn.init.uniform_(self.expert_w, -bound, bound)
        nn.init.uniform_(self.expert_b, -bound, bound)
        self.fc1 = nn.Linear(2 * d, hidden)  # on [v̂; v]: weight (H, 2D) = [W_a | W_x]
        self.fc2 = nn.Linear(hidden, 1)

    def anchors(self, att: torch.Tensor) -> torch.Tensor:
        """v̂(s) = Σ_k relu(W_k (s − s_k) + b_k) for attribute rows att (C, P) -> (C, D)."""
        off = att[:, None, :] - self.centres[None]  # (C, K, P)
        h = torch.einsum("ckp,kpd->ckd", off, self.expert_w) + self.expert_b  # (C, K, D)
        return h.relu().sum(1)  # (C, D)

    def project_anchors(self, anchors: torch.Tensor) -> torch.Tensor:
        """The anchor half of FC1: A = v̂ W_a^T (C, H), computed once per set of anchors."""
        d = anchors.shape[1]
        return anchors @ self.fc1.weight[:, :d].T  # (C, H)

    def relate(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Factorised relation of images v (B, D) with projected anchors a (C, H) -> (B, C) in [0, 1]."""
        d = v.shape[1]
        x = torch.addmm(self.fc1.bias, v, self.fc1.weight[:, d:].T)  # (B, H): W_x v + b1
        h = (x[:, None, :] + a[None]).relu_()  # (B, C, H): relu(FC1[v̂; v]) for every pair
        return torch.sigmoid(h @ self.fc2.weight[0] + self.fc2.bias)  # (B, C)

    def relation(self, v: torch.Tensor, anchors: torch.Tensor, *, naive: bool = False) -> torch.Tensor:
        """g(v, v̂) for every image (B, D) and anchor (C, D) -> (B, C); ``naive`` builds the (B·C, 2D) pairs."""
        if not naive:
            return self.relate(v, self.project_anchors(anchors))
        (b, d), c = v.shape, anchors.shape[0]
        pairs = torch.cat([anchors[None].expand(b, c, d), v[:, None].expand(b, c, d)], dim=2)  # (B, C, 2D)
        h = F.relu(self.fc1(pairs.reshape(b * c, 2 * d)))  # (B·C, H)
        return torch.sigmoid(self.fc2(h)).view(b, c)  # (B, C)

    def regularisers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """‖w_f‖², ‖w_g‖² over weights only (biases are not decayed)."""
        return self.expert_w.square().sum(), self.fc1.weight.square().sum() + self.fc2.weight.square().sum()


def crnet_loss(model: CRnetNet, att: torch.Tensor, v: torch.Tensor, y: torch.Tensor, *, n_seen: int,
               pairs: str = "batch", reduction: str = "mean", alpha: float = 0.0, beta: float = 0.0,
               naive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, mse) of one batch: images v (B, D) with seen labels y (B,), class attributes att (C, P).

    ``pairs="batch"`` builds anchors only for the distinct classes in the batch (the Relation Network code CRnet
    follows; ~1:30 matched:mismatched on AwA), ``"all"`` for every seen class.
    """
    if pairs == "batch":
        cls, target = torch.unique(y, return_inverse=True)  # (C_b,), (B,) index of each label in cls
    else:
        cls, target = torch.arange(n_seen, device=y.device), y
    anchors = model.anchors(att[cls])  # (C_b, D)
    g = model.relation(v, anchors, naive=naive)  # (B, C_b)
    onehot = F.one_hot(target, cls.shape[0]).to(g.dtype)  # (B, C_b)
    # Eq. 9 writes loss1 as a sum over the batch's pairs; the RN code it follows uses nn.MSELoss (a mean), and the
    # paper's α, β were set with that code, hence the default "mean" (spec: make it a flag).
    mse = F.mse_loss(g.float(), onehot.float(), reduction=reduction)
    reg_f, reg_g = model.regularisers()
    return mse + alpha * reg_f + beta * reg_g, mse


@register_method("crnet")
class CRnet(Trainer):
    """CRnet on precomputed features; hyperparameters and defaults from the paper (Table 2, AwA1/AwA2/aPY row)."""

    defaults: ClassVar[dict[str, Any]] = {
        "K": 3, "alpha": 1e-5, "use_beta": True, "beta": 1e-4, "lr": 1e-5, "hidden": 2048, "batch_size": 32,
        "att_norm": "l2", "pairs": "batch", "reduction": "mean", "amp": False,
    }

    def __init__(self, config: Mapping[str, Any], data: StageData, *, device: str | torch.device = "cpu",
                 seed: int = 0, max_epochs: int = 50) -> None:
        super().__init__(config, data, device=device, seed=seed, max_epochs=max_epochs)
        c = self.config
        for key, ok in CHOICES.items():
            if c[key] not in ok:
                raise ConfigError(f"crnet: {key} must be one of {', '.join(ok)}, got {c[key]!r}")
        for key in ("K", "hidden", "batch_size"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not float(v).is_integer() \
                    or v < 1:
                raise ConfigError(f"crnet: {key} must be a positive integer, got {v!r}")
        for key in ("alpha", "beta", "lr"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) \
                    or v < 0 or (key == "lr" and v == 0):
                raise ConfigError(f"crnet: {key} must be a finite number >= 0 (lr > 0), got {v!r}")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.alpha = float(c["alpha"])
        self.beta = float(c["beta"]) if c["use_beta"] else 0.0  # Table 2: β = 0 on CUB and SUN
        self.amp = bool(c["amp"]) and self.device.type == "cuda"  # bf16 autocast on CUDA only

        att = data.attributes.astype(np.float32)  # (C, P), seen classes first
        if c["att_norm"] == "l2":
            att = att / np.maximum(np.linalg.norm(att, axis=1, keepdims=True), 1e-12)
        self.k = min(int(c["K"]), data.n_seen)  # K ∈ {1, ..., M} (paper, Sec. 3)
        centres = torch.from_numpy(field_centres(att[:data.n_seen], self.k, seed))  # (K, P)
        # everything the training loop touches lives on the device, created once
        self.att = self.to_device(att)  # (C, P)
        self.x_train = self.to_device(data.x_train).float()  # (N_tr, D)
        self.y_train = self.to_device(data.y_train).long()  # (N_tr,)
        self.model = CRnetNet(centres, data.feature_dim, int(c["hidden"])).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(c["lr"]))

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, v: torch.Tensor, y: torch.Tensor, *, naive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(total, mse) of a batch of training images v (B, D) with labels y (B,)."""
        c = self.config
        with self.autocast():
            return crnet_loss(self.model, self.att, v, y, n_seen=self.data.n_seen, pairs=c["pairs"],
                              reduction=c["reduction"], alpha=self.alpha, beta=self.beta, naive=naive)

    def train_epoch(self) -> dict[str, float]:
        total = torch.zeros((), device=self.device)
        mse_sum = torch.zeros((), device=self.device)
        cuts = self.batches(self.y_train.shape[0], int(self.config["batch_size"]))
        for idx in cuts:
            loss, mse = self.loss(self.x_train[idx], self.y_train[idx])  # (B, D), (B,)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
            mse_sum += mse.detach()
        n = max(len(cuts), 1)
        return {"loss": float(total.item()) / n, "mse": float(mse_sum.item()) / n}

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Relation scores (n, C) of images x (n, D) against the anchors of every stage class."""
        x = x.float()
        with self.autocast():
            a = self.model.project_anchors(self.model.anchors(self.att))  # (C, H)
            chunk = max(1, SCORE_CHUNK_ELEMENTS // (a.shape[0] * a.shape[1]))
            out = [self.model.relate(x[i:i + chunk], a).float() for i in range(0, x.shape[0], chunk)]
        return torch.cat(out) if out else x.new_zeros((0, a.shape[0]))

    def extra_state(self) -> dict[str, Any]:
        # the field centres travel as a model buffer; K is recorded to catch a mismatched resume early
        return {"K": self.k}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "K" in state and int(state["K"]) != self.k:
            raise ConfigError(f"crnet: checkpoint has K={state['K']} field centres, this trainer {self.k}")
