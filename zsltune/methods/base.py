"""The trainer contract every method follows, and the registry that finds a method by name.

The sweep never knows which method it runs: it builds ``cls(config, data, device=, seed=, max_epochs=)``, calls
:meth:`Trainer.fit_epoch` once per Tune iteration, then :meth:`Trainer.evaluate`, and checkpoints with
:meth:`Trainer.state_dict`. A method implements :meth:`train_epoch` and :meth:`scores` (or overrides
:meth:`evaluate`), declares its hyperparameters in ``defaults`` and keeps its modules in ``self.model``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from zsltune import metrics
from zsltune.data.protocol import StageData
from zsltune.errors import ConfigError, UnknownNameError

GZSL_KEYS = ("H", "U", "S", "zsl_top1", "AUSUC", "H_cal")


class TrialDiverged(RuntimeError):
    """A loss became NaN or inf; the trial ends as failed with this reason."""


class TrialOutOfMemory(RuntimeError):
    """The trial ran out of memory (host or CUDA); the one-line reason names the device and the cap.

    Raised by the sweep's trainable in place of ``MemoryError``, torch's CPU allocator error or
    ``torch.cuda.OutOfMemoryError``; Tune retries the trial (``--max-failures``) and records the reason.
    """


class Trainer(ABC):
    name: ClassVar[str] = ""
    #: hyperparameters and the paper's defaults; a config may set only these keys
    defaults: ClassVar[dict[str, Any]] = {}
    #: the metric a sweep optimises unless the space says otherwise
    metric: ClassVar[str] = "H"
    #: the method trains on per-image text: the sweep loads the stage with ``text=True`` (StageData.tokens_*)
    needs_text: ClassVar[bool] = False

    def __init__(
        self,
        config: Mapping[str, Any],
        data: StageData,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_epochs: int = 50,
    ) -> None:
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown hyperparameter '{unknown[0]}'; valid ones: {', '.join(sorted(self.defaults))}"
            )
        self.config: dict[str, Any] = {**self.defaults, **config}
        self.data = data
        self.device = torch.device(device)
        self.seed = seed
        self.max_epochs = max_epochs
        self.epoch = 0
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        torch.manual_seed(seed)
        self.model: torch.nn.Module = torch.nn.Module()
        self.optimizer: torch.optim.Optimizer | None = None

    # ---- what a method implements -------------------------------------------------------------------------
    @abstractmethod
    def train_epoch(self) -> dict[str, float]:
        """One pass over the training images; returns the mean of each loss term."""

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Compatibility scores (n, C) of images x (n, D) against every stage class (GZSL methods)."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores() or override evaluate()")

    def extra_state(self) -> dict[str, Any]:
        """Anything besides model and optimizer a checkpoint must hold (e.g. k-means centres)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass

    # ---- what the sweep calls -----------------------------------------------------------------------------
    def fit_epoch(self) -> dict[str, float]:
        """``train_epoch`` with a divergence check; raises :class:`TrialDiverged` on a non-finite loss."""
        self.model.train()
        losses = self.train_epoch()
        self.epoch += 1
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise TrialDiverged(
                f"loss '{bad[0]}' is {losses[bad[0]]} at epoch {self.epoch}: the trial diverged "
                f"(lower the learning rate or the loss weights)"
            )
        return losses

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """GZSL metrics on the stage's seen and unseen evaluation images (fixed keys: :data:`GZSL_KEYS`)."""
        self.model.eval()
        d = self.data
        s_seen = self.batched_scores(d.x_seen)  # (N_s, C)
        s_unseen = self.batched_scores(d.x_unseen)  # (N_u, C)
        if not (np.isfinite(s_seen).all() and np.isfinite(s_unseen).all()):
            raise TrialDiverged(
                f"scores are NaN or inf after epoch {self.epoch}: the trial diverged "
                f"(lower the learning rate or the loss weights)"
            )
        return gzsl_report(s_seen, d.y_seen, s_unseen, d.y_unseen, n_seen=d.n_seen)

    def batched_scores(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        out = [self.scores(self.to_device(x[i : i + batch])).float().cpu() for i in range(0, len(x), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.data.num_classes), np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.load_extra_state(state.get("extra", {}))

    # ---- helpers ------------------------------------------------------------------------------------------
    def to_device(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(self.device, non_blocking=True)

    def batches(self, n: int, batch_size: int) -> list[torch.Tensor]:
        """A seeded random permutation of ``range(n)`` on the device, cut into batches (last one dropped if tiny)."""
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        cuts = list(perm.split(batch_size))
        if len(cuts) > 1 and len(cuts[-1]) < batch_size // 2:
            cuts.pop()
        return cuts


def gzsl_report(
    s_seen: np.ndarray, y_seen: np.ndarray, s_unseen: np.ndarray, y_unseen: np.ndarray, *, n_seen: int
) -> dict[str, float]:
    """U, S, H (uncalibrated), ZSL top-1, and the calibration sweep's AUSUC and best H."""
    c = s_seen.shape[1] if s_seen.size else s_unseen.shape[1]
    seen, unseen = np.arange(n_seen), np.arange(n_seen, c)
    g = metrics.gzsl(s_seen, y_seen, s_unseen, y_unseen, seen_classes=seen, unseen_classes=unseen)
    cal = metrics.calibration_sweep(s_seen, y_seen, s_unseen, y_unseen, seen_classes=seen, unseen_classes=unseen)
    return {
        "H": g["H"],
        "U": g["U"],
        "S": g["S"],
        "zsl_top1": metrics.zsl_top1(s_unseen, y_unseen, unseen_classes=unseen),
        "AUSUC": float(cal["AUSUC"]),
        "H_cal": float(cal["best_H"]),
    }


# ---- registry ---------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Trainer]] = {}
T = TypeVar("T", bound=type[Trainer])


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register_method("crnet")`` makes ``--space crnet`` find the trainer."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method '{name}' is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_method(name: str) -> type[Trainer]:
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown method '{name}'; valid methods: {', '.join(list_methods())}")
    return _REGISTRY[name]


def list_methods() -> list[str]:
    return sorted(_REGISTRY)
