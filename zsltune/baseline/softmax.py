"""A linear softmax over the seen classes: how separable the seen classes are, the reference for a twin's seen side.

A softmax on seen classes is what CONSE (Norouzi et al., 2014) puts under its semantic embedding, so its per-class
accuracy on the seen test images is the number to compare with CONSE's S in GZSL tables (Xian et al., 2018).
Features standardised with the training images' statistics; weight decay chosen on the val stage's held-out seen
images; full-batch L-BFGS, so the result does not depend on a learning rate or a seed.
"""

from __future__ import annotations

import numpy as np
import torch

from zsltune.data.protocol import StageData
from zsltune.metrics import per_class_accuracy

WEIGHT_DECAYS: tuple[float, ...] = (1e-4, 1e-3, 1e-2)


def fit_softmax(
    x: np.ndarray, y: np.ndarray, *, n_classes: int, weight_decay: float, iters: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(W (D, K), b (K,)) minimising mean cross-entropy + ``weight_decay``/2 ‖W‖² over standardised ``x`` (N, D)."""
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))
    w = torch.zeros(xt.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def _standardise(data: StageData) -> tuple[np.ndarray, np.ndarray]:
    mean = data.x_train.mean(0, dtype=np.float64).astype(np.float32)
    sd = data.x_train.std(0, dtype=np.float64).astype(np.float32)
    return mean, np.where(sd > 0, sd, 1.0).astype(np.float32)


def softmax_seen_accuracy(data: StageData, *, weight_decay: float) -> float:
    """Per-class accuracy over the seen classes of the softmax on ``data``'s seen evaluation images."""
    mean, sd = _standardise(data)
    w, b = fit_softmax((data.x_train - mean) / sd, data.y_train, n_classes=data.n_seen, weight_decay=weight_decay)
    pred = (((data.x_seen - mean) / sd) @ w + b).argmax(1)
    return per_class_accuracy(data.y_seen, pred, classes=np.arange(data.n_seen))


def softmax_select(val: StageData) -> dict[str, float]:
    """The weight decay with the best seen accuracy on ``val``'s held-out seen images."""
    accs = {wd: softmax_seen_accuracy(val, weight_decay=wd) for wd in WEIGHT_DECAYS}
    return {"weight_decay": max(accs, key=lambda wd: accs[wd])}
