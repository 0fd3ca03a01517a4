"""Linear compatibility baseline (ALE/DeViSE family): score(x, c) = (x W) · a_c, softmax over the seen classes.

Seconds per trial even on CPU: the reference line every ZSL method must beat, and the engine's fast test subject.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zsltune.data.protocol import StageData
from zsltune.methods.feature_trainer import FeatureTrainer
from zsltune.methods.hparams import HP, Choice, Float, Int
from zsltune.methods.registry import register_method


@register_method("linear")
class LinearCompat(FeatureTrainer):
    # no single paper (ALE, Akata et al., 2015; DeViSE, Frome et al., 2013): zsltune's defaults
    hparams: ClassVar[dict[str, HP]] = {
        "lr": Float(default=1e-3, gt=0),
        "weight_decay": Float(default=1e-4, low=0),
        "batch_size": Int(default=64),
        "temperature": Float(default=0.1, gt=0),
        "att_norm": Choice(("raw", "l2"), default="l2"),
    }

    def __init__(self, config: dict[str, Any], data: StageData, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # x_train (N, D) as they are, y_train (N,): see FeatureTrainer
        c = self.config
        att = self.to_device(data.attributes).float()  # (C, P)
        self.att = F.normalize(att, dim=1) if c["att_norm"] == "l2" else att
        self.model = torch.nn.Linear(data.feature_dim, data.attribute_dim, bias=False).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float()) @ self.att.T / self.config["temperature"]  # (n, C)

    def train_steps(self, steps: int) -> dict[str, float]:
        seen = self.data.n_seen
        total, n = torch.zeros((), device=self.device), 0
        for idx in self.next_batches(steps, len(self.y_train), self.config["batch_size"]):
            logits = self.scores(self.x_train[idx])[:, :seen]  # (B, S): train on seen classes only
            loss = F.cross_entropy(logits, self.y_train[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(idx)
            n += len(idx)
        return {"loss": float(total / max(n, 1))}
