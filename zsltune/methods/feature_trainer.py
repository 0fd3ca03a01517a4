"""The middle layer of the methods that train on precomputed image features (CRnet, CLAREL, TL-VSC, the linear
baseline): the stage's training rows on the device and the feature transform fitted on them.

Statistics come from the training images only (:mod:`zsltune.methods.prep`); evaluation features go through the same
transform (:meth:`FeatureTrainer.prep_features`). GZSL scoring is the contract's default
:meth:`~zsltune.methods.base.Trainer.evaluate` over :meth:`~zsltune.methods.base.Trainer.scores`, or a method's own
evaluation ending in :meth:`~zsltune.methods.base.Trainer.gzsl_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from zsltune.data.protocol import StageData
from zsltune.methods import prep
from zsltune.methods.base import Trainer


class FeatureTrainer(Trainer[StageData]):
    """A trainer on a :class:`~zsltune.data.protocol.StageData`: ``x_train`` (N, D) and ``y_train`` (N,) on the
    device, the transform of :meth:`feature_norm` fitted on them."""

    #: hold the training features transformed whole (a private device copy, for a trainer that uses them all at
    #: once); else the stage's own rows (on CPU the node's shared copy, not copied), transformed per batch
    whole_features: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], data: StageData, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # device, seed, max_epochs, knobs, iteration_steps: see Trainer
        self._feat: tuple[str, torch.Tensor, torch.Tensor] | None = None  # (kind, shift (D,), scale (D,))
        kind = self.feature_norm()
        if kind is not None:
            shift, scale = prep.feature_stats(data.x_train, kind)
            self._feat = (kind, self.to_device(shift), self.to_device(scale))
        x = self.to_device(data.x_train)  # (N, D)
        self.x_train = self.prep_features(x) if self.whole_features else x
        self.y_train = self.to_device(data.y_train).long()  # (N,)

    def feature_norm(self) -> str | None:
        """The transform (:data:`~zsltune.methods.prep.FEATURE_NORMS`) to fit: the config's ``feat_norm``; None for
        a method without one (features as they are)."""
        kind = self.config.get("feat_norm")
        return None if kind is None else str(kind)

    def prep_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features (n, D) through the transform fitted on the training images (float32)."""
        x = x.float()
        if self._feat is None:
            return x
        kind, shift, scale = self._feat
        x = (x - shift) / scale
        return torch.nn.functional.normalize(x, dim=1) if kind == "l2" else x
