"""CLAREL: classification via retrieval loss for zero-shot learning (Oreshkin et al., CVPRW 2020).

Image branch: precomputed feature v (D,) -> Dropout -> Linear(D, E), no nonlinearity. Text branch, per sentence:
word vectors (frozen where the stage has them, else a trainable embedding) -> 2 residual 1-D conv blocks (3x [conv
k=3, BN, ReLU], no ReLU after the third; 1x1 conv + BN shortcut; add, ReLU, MaxPool 2) -> BiLSTM -> masked mean over
time -> Dropout -> Linear(2U, E) (:class:`~zsltune.layers.text.TextEncoder`). An instance's text embedding is the
mean over its sentences. With L_ij = -d(z_v,i, z_t,j), d Euclidean (not squared, eps inside the sqrt):

    J = (1-κ)[λ J_TR + (1-λ) J_IR] + κ/2 (J_IC + J_TC) + L2      J_TR = mean_i CE(softmax_j L_ij, i), J_IR over i

GZSL: prototype p(y) = mean text embedding of class y; ŷ = argmin_y d_α(z_v, p(y)) with seen distances scaled by
(1+α). :meth:`CLAREL.evaluate` reports the plain GZSL keys at α = 0 (scores -d, comparable with other methods),
sweeps α over :data:`ALPHA_GRID` on the stage's own seen/unseen images and reports ``H_alpha``/``U_alpha``/
``S_alpha`` at the H-best ``alpha`` (a knob: on the test stage the α chosen on validation is applied instead, and
the test-picked one is reported only as ``oracle_alpha``/``oracle_H_alpha``), and
image->text retrieval among the unseen prototype images' captions: ``recall@k`` (a caption of the image's class in
the k nearest) and ``recall_instance@k`` (one of its own captions).

Decisions where the paper (P), the spec (S, authors' code) or neither settle it:
- filters 128/256 (P, Appendix D) rather than the code's 256/512; all S sentences of an instance when ``sentences``
  equals S (P: "All 10 text descriptions are processed"), else a random subset without replacement (the code samples
  with replacement); mean over sentences taken before the (linear) projection: the same up to where dropout acts.
- optimiser from S: SGD + momentum, lr ÷10 at 1/3 and 2/3 of training (P: every 50k of 150k batches), scaled to
  the trial's ``max_epochs`` so every trial of a sweep has the same schedule per epoch (ASHA compares like with
  like); each gradient tensor clipped to norm ``clip``; L2 (0.5·wd·‖w‖², as SGD weight decay) on conv weights and
  BN γ/β only (P); BN decay 0.95, eps 1e-6; conv init variance 0.2/(k·C_out) (TF variance_scaling, fan_out), FC Glorot.
- prototypes (S): up to 100 random images per class: seen classes from the training images' captions, unseen ones
  from the unseen evaluation images' captions (never their images); the sample is fixed per trial.
- H = 2us/(u+s) (P's Sec. 1 drops the 2). α grid 0..0.5 step 0.005 (P: 0..0.045; the scale depends on the data).
- ``captions: class`` (only when asked for: a stage without per-image captions is otherwise an error) gives each
  class one pseudo-caption, the ids of its strongest attributes: CLAREL with class-level supervision only (what P
  compares per-image text against).

Training dynamics: at init the text embeddings barely differ between sentences (synthetic CUB, paper sizes: spread
~0.09 around their mean, against ~36 for the image embeddings), so every image sees all texts alike, the softmax
over them is uniform and the retrieval gradients nearly cancel: with κ = 0, J_TR sits at log B for ~900 SGD steps
(tiny sizes, measured) before it falls. The classification terms (κ > 0) separate the text embeddings sooner.
P trains 150k steps; a sweep's epoch budget and ASHA's grace period must leave room for this plateau.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune import metrics
from zsltune.data.protocol import StageData
from zsltune.data.sources import DataSource, get_source
from zsltune.errors import DataError
from zsltune.layers.text import TextEncoder
from zsltune.methods.base import LossMeter
from zsltune.methods.feature_trainer import FeatureTrainer
from zsltune.methods.hparams import HP, Choice, Float, Int
from zsltune.methods.prep import FEATURE_NORMS
from zsltune.methods.registry import register_method

ALPHA_GRID = np.round(np.arange(0, 0.5 + 1e-9, 0.005), 3)  # (G,)
RECALL_KS = (1, 5, 10)
EPS = 1e-6


def euclidean(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """d(a_i, b_j) = sqrt(‖a_i - b_j‖² + eps) for a (N, E), b (M, E) -> (N, M)."""
    a, b = a.float(), b.float()
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * (a @ b.T)  # (N, M)
    return (sq.clamp_min(0.0) + eps).sqrt()


def retrieval_losses(zv: torch.Tensor, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(J_TR, J_IR) of a batch of paired image (B, E) and text (B, E) embeddings."""
    logits = -euclidean(zv, zt)  # (B, B): L_ij, image i vs text j
    target = torch.arange(zv.shape[0], device=zv.device)
    return F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)


def alpha_sweep(
    d_seen: np.ndarray, y_seen: np.ndarray, d_unseen: np.ndarray, y_unseen: np.ndarray, *, n_seen: int, alphas: Any
) -> dict[str, np.ndarray]:
    """Per-class mean U, S, H (G,) of the rule argmin_y d_α for every α of ``alphas`` (G,); distances (n, C)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    out = {}
    for name, d, y in (("S", d_seen, y_seen), ("U", d_unseen, y_unseen)):
        if not len(y):
            out[name] = np.full(len(alphas), np.nan)
            continue
        d = d.astype(np.float64)
        ds, du = d[:, :n_seen].min(1), d[:, n_seen:].min(1)  # (n,) nearest seen / unseen prototype
        pick_seen = (1.0 + alphas[:, None]) * ds[None] <= du[None]  # (G, n): ties go to the seen class (argmin)
        right = d[:, :n_seen].argmin(1) == y if name == "S" else d[:, n_seen:].argmin(1) + n_seen == y  # (n,)
        hit = (pick_seen if name == "S" else ~pick_seen) & right[None]  # (G, n)
        _, inv = np.unique(y, return_inverse=True)
        k = int(inv.max()) + 1
        onehot = np.zeros((len(y), k))
        onehot[np.arange(len(y)), inv] = 1.0 / np.bincount(inv)[inv]  # (n, K): 1/|class| in its class column
        out[name] = (hit @ onehot).mean(1)  # (G,): per-class mean accuracy
    u, s = out["U"], out["S"]
    out["H"] = np.where(u + s > 0, 2 * u * s / np.maximum(u + s, 1e-12), 0.0)
    return out


def class_caption_tokens(attributes: np.ndarray, max_len: int = 30) -> np.ndarray:
    """(C, 1, L) pseudo-captions: each class's attribute ids (+2) by descending standardised value."""
    a = attributes.astype(np.float64)
    z = (a - a.mean(0)) / np.where(a.std(0) > 0, a.std(0), 1.0)
    return (np.argsort(-z, axis=1, kind="stable")[:, :max_len] + 2).astype(np.int32)[:, None, :]


class CLARELNet(nn.Module):
    def __init__(
        self, feature_dim: int, n_seen: int, vocab: int, c: Mapping[str, Any], vectors: np.ndarray | None
    ) -> None:
        super().__init__()
        e = int(c["embed_dim"])
        self.image = nn.Sequential(nn.Dropout(float(c["dropout"])), nn.Linear(feature_dim, e))
        self.text = TextEncoder(
            vocab, int(c["word_dim"]), int(c["filters"]), int(c["lstm_units"]), e, float(c["dropout"]), vectors
        )
        self.head_image, self.head_text = nn.Linear(e, n_seen), nn.Linear(e, n_seen)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):  # TF variance_scaling(0.2, fan_out): variance 0.2 / (k·C_out)
                nn.init.normal_(m.weight, 0.0, math.sqrt(0.2 / (m.kernel_size[0] * m.out_channels)))
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def decayed(self) -> list[nn.Parameter]:
        """Conv weights and BN γ/β: the parameters the paper's L2 term covers."""
        return [
            p
            for m in self.text.blocks.modules()
            if isinstance(m, nn.Conv1d | nn.BatchNorm1d)
            for p in m.parameters(recurse=False)
        ]


@register_method("clarel")
class CLAREL(FeatureTrainer):
    """CLAREL on precomputed features and per-image captions; defaults from the paper (Sec. 4, Appendix D)."""

    metric: ClassVar[str] = "H_alpha"
    data_source: ClassVar[str] = "features+text"
    knobs: ClassVar[tuple[str, ...]] = ("gamma", "alpha")
    # the paper's configuration (Oreshkin et al., 2020, Sec. 4 and Appendix D); momentum, clip and prototype images
    # from the authors' code
    hparams: ClassVar[dict[str, HP]] = {
        "lambda": Float(default=0.5, low=0, high=1),
        "kappa": Float(default=0.5, low=0, high=1),
        "lr": Float(default=0.1, gt=0),
        "momentum": Float(default=0.9, low=0, high=0.999),
        "batch_size": Int(default=32),
        "dropout": Float(default=0.25, low=0, high=0.99),
        "l2": Float(default=1e-3, low=0),
        "embed_dim": Int(default=1024),
        "lstm_units": Int(default=512),
        "filters": Int(default=128),
        "word_dim": Int(default=300, help="trainable embedding only; frozen vectors bring their own width"),
        "clip": Float(default=1.0, gt=0),
        "sentences": Int(default=10),
        "feat_norm": Choice(
            FEATURE_NORMS, default="none", help="image features: none (paper), std (training-image statistics), l2"
        ),
        "proto_images": Int(
            default=100, help="images per class whose captions make its prototype (authors' code: 100)"
        ),
        "captions": Choice(
            ("per_image", "class"),
            default="per_image",
            help="per_image: the stage's captions (text_c10); class: one pseudo-caption per class from its attributes",
        ),
    }

    @classmethod
    def source(cls, config: Mapping[str, Any] | None = None) -> DataSource:
        # class-level pseudo-captions need no text files: only when the config asks for them explicitly
        return get_source("features" if (config or {}).get("captions") == "class" else cls.data_source)

    def __init__(self, config: Mapping[str, Any], data: StageData, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # x_train (the stage's rows), y_train, feat_norm: see FeatureTrainer
        c = self.config
        d = data
        if c["captions"] == "per_image":
            if d.tokens_train is None:
                raise DataError(
                    f"clarel: the {d.stage} stage of {d.dataset} was loaded without per-image captions; load it with "
                    f"text=True (the 'features+text' source reads DATASET/text_c10), or set captions=class"
                )
            tok_tr, tok_u, vocab, vectors = d.tokens_train, d.tokens_unseen, d.vocab_size, d.word_vectors
        else:  # captions=class: class-level pseudo-captions from the attributes (see the module docstring)
            cls_tok = class_caption_tokens(d.attributes)
            tok_tr, tok_u, vocab, vectors = cls_tok[d.y_train], cls_tok[d.y_unseen], d.attribute_dim + 2, None
        # everything the training loop and evaluation touch lives on the device, created once
        self.tok_train = self.to_device(np.ascontiguousarray(tok_tr))  # (N, S, L) int32
        self.x_seen = self.prep_features(self.to_device(d.x_seen))  # (N_s, D), the training images' transform
        self.x_unseen = self.prep_features(self.to_device(d.x_unseen))
        # prototype images: up to proto_images per class, seen from train, unseen from the unseen eval images
        rng = np.random.default_rng(self.seed)
        pick = [
            rng.permutation(np.flatnonzero(y == k))[: int(c["proto_images"])]
            for y, ks in ((d.y_train, range(d.n_seen)), (d.y_unseen, range(d.n_seen, d.num_classes)))
            for k in ks
        ]
        n_tr = sum(len(p) for p in pick[: d.n_seen])
        tr_idx, u_idx = np.concatenate(pick[: d.n_seen]), np.concatenate(pick[d.n_seen :])
        self.proto_tokens = self.to_device(np.concatenate([tok_tr[tr_idx], tok_u[u_idx]]))  # (n_p, S, L)
        self.proto_class = self.to_device(np.concatenate([d.y_train[tr_idx], d.y_unseen[u_idx]])).long()  # (n_p,)
        self.proto_unseen = slice(n_tr, None)  # rows of proto_tokens that are unseen eval images ...
        self.unseen_rows = self.to_device(u_idx).long()  # ... and which ones, for image->text recall
        self.model = CLARELNet(d.feature_dim, d.n_seen, vocab, c, vectors).to(self.device)
        decayed = {id(p) for p in self.model.decayed()}
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        groups = [
            {"params": [p for p in params if id(p) in decayed], "weight_decay": float(c["l2"])},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.SGD(groups, lr=float(c["lr"]), momentum=float(c["momentum"]))

    def sample_sentences(self, tok: torch.Tensor) -> torch.Tensor:
        """(B, K, L) of (B, S, L): all S sentences when K >= S, else K random ones per instance."""
        b, s, _ = tok.shape
        k = min(int(self.config["sentences"]), s)
        if k == s:
            return tok
        pick = torch.rand(b, s, generator=self.generator, device=self.device).argsort(1)[:, :k]  # (B, K)
        return tok[torch.arange(b, device=self.device)[:, None], pick]

    def losses(self, v: torch.Tensor, tok: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of J for a batch of features v (B, D), sentences tok (B, K, L), labels y (B,)."""
        c = self.config
        lam, kappa = float(c["lambda"]), float(c["kappa"])
        with self.autocast():
            zv, zt = self.model.image(v), self.model.text(tok)  # (B, E), (B, E)
            j_tr, j_ir = retrieval_losses(zv, zt)
            j_ic = F.cross_entropy(self.model.head_image(zv).float(), y)
            j_tc = F.cross_entropy(self.model.head_text(zt).float(), y)
        loss = (1 - kappa) * (lam * j_tr + (1 - lam) * j_ir) + 0.5 * kappa * (j_ic + j_tc)
        return {"loss": loss, "J_TR": j_tr, "J_IR": j_ir, "J_IC": j_ic, "J_TC": j_tc}

    def clip_(self) -> None:
        """Each gradient tensor scaled to norm <= clip (TF clip_by_norm per tensor), in a few fused kernels."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            norms = torch.stack(torch._foreach_norm(grads))  # (T,)
            clip = float(self.config["clip"])
            torch._foreach_mul_(grads, list((clip / norms.clamp_min(clip)).unbind()))

    def train_steps(self, steps: int) -> dict[str, float]:
        c, meter = self.config, LossMeter(self.device)
        cuts = self.next_batches(steps, self.y_train.shape[0], int(c["batch_size"]))
        for i, idx in enumerate(cuts):
            self.schedule_lr(self.optimizer, float(c["lr"]), "step", i, len(cuts))  # P: ÷10 at 50k and 100k of 150k
            v = self.prep_features(self.x_train[idx])  # (B, D)
            terms = self.losses(v, self.sample_sentences(self.tok_train[idx]), self.y_train[idx])
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.clip_()
            self.optimizer.step()
            meter.add(terms)
        out = meter.means(len(cuts))
        with torch.no_grad():  # the L2 term's value at the final weights (its gradient is SGD's weight decay)
            l2 = 0.5 * float(c["l2"]) * sum(float(p.pow(2).sum()) for p in self.model.decayed())
        out["loss"] += l2
        out["L2"] = l2
        return out

    @torch.no_grad()
    def embed_texts(self, tok: torch.Tensor, batch: int = 256) -> torch.Tensor:
        with self.autocast():
            return torch.cat([self.model.text(tok[i : i + batch]).float() for i in range(0, tok.shape[0], batch)])

    @torch.no_grad()
    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model.image(x).float()

    @torch.no_grad()
    def prototypes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Class prototypes (C, E) and the prototype images' instance text embeddings (n_p, E)."""
        self.model.eval()  # (fit_epoch switches back to train mode)
        zt = self.embed_texts(self.proto_tokens)  # (n_p, E)
        c = self.data.num_classes
        sums = torch.zeros(c, zt.shape[1], device=self.device).index_add_(0, self.proto_class, zt)
        counts = torch.bincount(self.proto_class, minlength=c).clamp_min(1)
        return sums / counts[:, None], zt

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        d = self.data
        protos, zt = self.prototypes()
        zs, zu = self.embed_images(self.x_seen), self.embed_images(self.x_unseen)
        d_s, d_u = euclidean(zs, protos).cpu().numpy(), euclidean(zu, protos).cpu().numpy()  # (N_s, C), (N_u, C)
        out = self.gzsl_metrics(-d_s, d.y_seen, -d_u, d.y_unseen)  # scores -d: comparable with other methods
        sweep = alpha_sweep(d_s, d.y_seen, d_u, d.y_unseen, n_seen=d.n_seen, alphas=ALPHA_GRID)
        best = int(np.argmax(sweep["H"]))  # the first (smallest) α of the best H on these images
        chosen = {f"{k}_alpha": float(sweep[k][best]) for k in ("H", "U", "S")}
        chosen["alpha"] = float(ALPHA_GRID[best])
        if "alpha" in self.frozen:  # the test stage: α chosen on validation, applied as it is
            out.update({f"oracle_{k}": v for k, v in chosen.items()})  # the test-picked α: an oracle
            at = alpha_sweep(d_s, d.y_seen, d_u, d.y_unseen, n_seen=d.n_seen, alphas=[self.frozen["alpha"]])
            chosen = {f"{k}_alpha": float(at[k][0]) for k in ("H", "U", "S")} | {"alpha": self.frozen["alpha"]}
        out.update(chosen)
        # image -> text retrieval on the unseen prototype images: a caption of the image's class (recall@k, the
        # zero-shot retrieval of Reed et al.) and the image's own captions (recall_instance@k)
        q, g = zu[self.unseen_rows].cpu().numpy(), zt[self.proto_unseen].cpu().numpy()  # (n, E), (n, E)
        y = self.proto_class[self.proto_unseen].cpu().numpy()
        out.update(metrics.recall_at_k(q, g, y, y, ks=RECALL_KS))
        ids = np.arange(len(y))
        inst = metrics.recall_at_k(q, g, ids, ids, ks=RECALL_KS)
        out.update({k.replace("recall@", "recall_instance@"): v for k, v in inst.items()})
        return out
