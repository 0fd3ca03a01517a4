"""f-CLSWGAN (Xian, Lorenz, Schiele & Akata, 2018): generate unseen-class features, then classify as if supervised.

A conditional WGAN-GP (Gulrajani et al., 2017) learns G(z, a) -> x on the seen classes: the critic D(x, a) maximises
``E D(x, a) - E D(G(z, a), a) - λ GP`` (Eq. 2); G minimises ``-E D(G(z, a), a) + β CE(C(G(z, a)), y)`` (Eq. 4), C a
linear softmax over the seen classes pretrained on the real features and frozen. Then a linear softmax over
seen ∪ unseen is trained on the real training features plus ``n_syn`` generated features per unseen class (Sec. 3.2).
As in the released code, features are min-max scaled with the training images' statistics and G ends in a ReLU.

Two named variants: ``paper`` (hidden 4096, n_critic 5, lr 1e-4, batch 64, ~30 epochs of the seen features; hours a
run on 2 CPU cores) and ``cpu`` (hidden 1024, a fixed budget of generator iterations that fits about 15 minutes on
AWA1-sized data on 2 cores; measurements in benchmarks/README.md). The final classifier trains for a fixed number of
epochs: the released code's best-epoch pick on the test images is not reproduced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune.data.protocol import StageData
from zsltune.layers.gan import gradient_penalty, mlp


@dataclass(frozen=True)
class Variant:
    hidden: int
    iters: int  # generator iterations (each after n_critic critic updates on fresh batches)
    n_critic: int = 5
    batch: int = 64
    lr: float = 1e-4
    beta: float = 0.01  # weight of the pretrained classifier's loss (Eq. 4)
    gp: float = 10.0  # λ of the gradient penalty
    n_syn: int = 300  # generated features per unseen class for the final classifier
    cls_epochs: int = 25
    cls_lr: float = 1e-3

    def knobs(self) -> dict[str, float]:
        return {f"clswgan_{k}": v for k, v in asdict(self).items()}


VARIANTS: dict[str, Variant] = {
    "cpu": Variant(hidden=1024, iters=2000, batch=128, lr=2e-4),
    "paper": Variant(hidden=4096, iters=10000),
}


def _linear_softmax(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: int, lr: float, batch: int, gen: torch.Generator
) -> nn.Linear:
    """A linear softmax trained with Adam (β1 = 0.5, as the released code) on ``x`` (N, D), ``y`` (N,)."""
    net = nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net


class MinMax:
    """Per-feature min-max scaling fitted on the training images (the released code's preprocessing)."""

    def __init__(self, x: np.ndarray) -> None:
        self.lo, hi = x.min(0), x.max(0)
        self.scale = np.where(hi > self.lo, hi - self.lo, 1.0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.lo) / self.scale).astype(np.float32))


def train_generator(
    x: torch.Tensor, y: torch.Tensor, att: torch.Tensor, n_seen: int, variant: Variant, gen: torch.Generator
) -> nn.Module:
    """G(z, a) (a module of ``[z; a]``) trained on scaled features ``x`` (N, D) of the seen classes ``y`` (N,)."""
    d, p = x.shape[1], att.shape[1]
    c_pre = _linear_softmax(x, y, n_seen, epochs=10, lr=1e-3, batch=100, gen=gen).requires_grad_(False)
    g = mlp(p + p, variant.hidden, d, out=nn.ReLU())  # [z; a] -> x̂, z of the attributes' size
    critic = mlp(d + p, variant.hidden, 1)  # [x; a] -> score
    opt_g = torch.optim.Adam(g.parameters(), lr=variant.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=variant.lr, betas=(0.5, 0.999))

    def d_of(xx: torch.Tensor, aa: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([xx, aa], 1))

    for _ in range(variant.iters):
        for _ in range(variant.n_critic):
            idx = torch.randint(x.shape[0], (variant.batch,), generator=gen)
            xr, a = x[idx], att[y[idx]]  # (B, D), (B, P)
            with torch.no_grad():
                xf = g(torch.cat([torch.randn(variant.batch, p, generator=gen), a], 1))
            eps = torch.rand(variant.batch, 1, generator=gen)
            loss_d = (
                d_of(xf, a).mean() - d_of(xr, a).mean() + variant.gp * gradient_penalty(d_of, (xr, a), (xf, a), eps)
            )
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        xf = g(torch.cat([torch.randn(variant.batch, p, generator=gen), a], 1))
        loss_g = -d_of(xf, a).mean() + variant.beta * F.cross_entropy(c_pre(xf), y[idx])
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return g.requires_grad_(False)


@dataclass
class Fitted:
    """A trained f-CLSWGAN generator with what its second stage continues from: the min-max transform, the scaled
    training features ``x`` (N, D) and labels ``y`` (N,), and the run's random stream."""

    g: nn.Module
    prep: MinMax
    x: torch.Tensor
    y: torch.Tensor
    gen: torch.Generator


def fit_clswgan(data: StageData, variant: Variant, *, seed: int = 0) -> Fitted:
    """The generator trained on ``data``'s training images (the first stage)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    prep = MinMax(data.x_train)
    x, y = prep(data.x_train), torch.from_numpy(data.y_train)  # (N, D), (N,)
    g = train_generator(x, y, torch.from_numpy(data.attributes), data.n_seen, variant, gen)
    return Fitted(g, prep, x, y, gen)


def fitted_scores(data: StageData, f: Fitted, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
    """The second stage: ``n_syn`` generated features per unseen class, the final softmax, evaluation scores."""
    att = torch.from_numpy(data.attributes)  # (C, P)
    unseen = torch.arange(data.n_seen, data.num_classes).repeat_interleave(variant.n_syn)  # (U·n_syn,)
    with torch.no_grad():
        x_syn = f.g(torch.cat([torch.randn(unseen.shape[0], att.shape[1], generator=f.gen), att[unseen]], 1))
    return _final_scores(data, f.prep, torch.cat([f.x, x_syn]), torch.cat([f.y, unseen]), variant, f.gen)


def clswgan_scores(data: StageData, variant: Variant, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train on ``data``'s training images; scores over every stage class for its seen and unseen evaluation images."""
    return fitted_scores(data, fit_clswgan(data, variant, seed=seed), variant)


def supplied_scores(
    data: StageData, x_unseen: np.ndarray, variant: Variant, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """f-CLSWGAN's second stage alone: its final softmax on the real training images plus ``x_unseen``
    (U·n_syn, D), ``variant.n_syn`` features per unseen stage class in class order, from any generator (an oracle)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    prep = MinMax(data.x_train)
    unseen = torch.arange(data.n_seen, data.num_classes).repeat_interleave(variant.n_syn)  # (U·n_syn,)
    if x_unseen.shape != (unseen.shape[0], data.feature_dim):
        raise ValueError(f"x_unseen must be ({unseen.shape[0]}, {data.feature_dim}), got {x_unseen.shape}")
    x, y = prep(data.x_train), torch.from_numpy(data.y_train)  # (N, D), (N,)
    return _final_scores(data, prep, torch.cat([x, prep(x_unseen)]), torch.cat([y, unseen]), variant, gen)


def crude_unseen_features(data: StageData, n_syn: int, *, seed: int = 0, lam: float = 1.0) -> np.ndarray:
    """The floor a feature generator must beat: a ridge from attributes to the seen classes' mean features, applied
    to each unseen class, plus the residual of a random real training image (its class mean removed) per feature;
    (U·n_syn, D) in class order, raw feature scale, for :func:`supplied_scores`."""
    from zsltune.baseline.ridge import ridge_fit

    rng = np.random.default_rng(seed)
    seen = np.arange(data.n_seen)
    means = np.stack([data.x_train[data.y_train == k].mean(0) for k in seen])  # (S, D)
    a = data.attributes.astype(np.float64)
    mu_a, mu_x = a[seen].mean(0), means.mean(0)
    w = ridge_fit(a[seen] - mu_a, means - mu_x, lam=lam)  # (P, D)
    target = (a[data.n_seen :] - mu_a) @ w + mu_x  # (U, D)
    pick = rng.integers(0, data.x_train.shape[0], (target.shape[0], n_syn))  # (U, n_syn)
    resid = data.x_train[pick] - means[data.y_train[pick]]  # (U, n_syn, D)
    return (target[:, None, :] + resid).reshape(-1, data.feature_dim).astype(np.float32)


def _final_scores(
    data: StageData, prep: MinMax, x: torch.Tensor, y: torch.Tensor, variant: Variant, gen: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The final softmax on scaled real + generated features ``x`` (N', D), ``y`` (N',); evaluation scores."""
    clf = _linear_softmax(
        x, y, data.num_classes,
        epochs=variant.cls_epochs, lr=variant.cls_lr, batch=variant.batch, gen=gen,
    )  # fmt: skip
    with torch.no_grad():
        return clf(prep(data.x_seen)).numpy(), clf(prep(data.x_unseen)).numpy()
