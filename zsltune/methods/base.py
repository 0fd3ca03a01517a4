"""The trainer contract every method follows (the registry that finds one by name is :mod:`zsltune.methods.registry`).

A method declares what it trains on (:attr:`Trainer.data_source`), the metric family it reports
(:attr:`Trainer.metric_family`), its hyperparameters (:attr:`Trainer.hparams`: kinds, valid values and the paper's
defaults; a search space searches inside them), cross-parameter rules (:meth:`Trainer.check_rules`) and the knobs
it picks on evaluation data (:attr:`Trainer.knobs`: chosen on validation, then frozen for the test stage).

The sweep never knows which method it runs: it builds ``cls(config, data, device=, seed=, max_epochs=, knobs=)``,
calls :meth:`Trainer.fit_epoch` once per Tune iteration, then :meth:`Trainer.evaluate`, and checkpoints with
:meth:`Trainer.state_dict`, which holds every module, optimiser, LR scheduler and AMP scaler the trainer keeps as an
attribute. A method implements :meth:`train_steps` and :meth:`scores` (GZSL) or overrides :meth:`evaluate`.

The shipped methods build on one of two middle layers: :class:`~zsltune.methods.feature_trainer.FeatureTrainer`
(precomputed features: the training-image feature transform) and
:class:`~zsltune.methods.image_trainer.ImageTrainer` (raw images: crops, flips, evaluation batches). Every one sums
its loss terms with :class:`LossMeter` and moves its learning rate with :meth:`Trainer.schedule_lr`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import torch

from zsltune import metrics
from zsltune.data.protocol import Bundle, FeatureBundle
from zsltune.data.sources import DataInfo, DataSource, get_source
from zsltune.errors import ConfigError, TrialDiverged
from zsltune.methods.hparams import HP, Bool, check_config
from zsltune.methods.schedules import lr_factor

#: hyperparameters every trainer takes
BASE_HPARAMS: dict[str, HP] = {"amp": Bool(default=False, help="bf16 autocast on CUDA (ignored on CPU)")}
#: checkpointed attributes: every one of these a trainer holds goes into state_dict() under its attribute name
STATEFUL = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler)
#: the bundle a trainer is built on: a StageData, an image stage, or a method's own (the contract test's toy)
DataT = TypeVar("DataT", bound=Bundle)


class LossMeter:
    """Each loss term's sum over an iteration's steps, kept on the device (no host sync per step), and the means
    :meth:`Trainer.train_steps` returns. ``dtype`` float32 or float64: the precision a trainer's sums have always
    had (feature trainers float32, image trainers float64), so no reported number moves."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = device, dtype
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, terms: Mapping[str, torch.Tensor | float]) -> None:
        """One step's value of each term (a tensor is detached; a term's first value starts its sum)."""
        for k, v in terms.items():
            t = torch.as_tensor(v.detach() if torch.is_tensor(v) else v, dtype=self.dtype, device=self.device)
            self.sums[k] = self.sums[k] + t if k in self.sums else t

    def means(self, steps: int, *, total: Sequence[str] = ()) -> dict[str, float]:
        """Each term's mean over ``steps``. ``total``: terms whose sums add up to a ``loss`` entry (reported first);
        a term named with a leading underscore is summed but not reported."""
        sums = dict(self.sums)
        parts = [sums[k] for k in total if k in sums]
        if parts:
            acc = parts[0]
            for p in parts[1:]:
                acc = acc + p
            sums = {"loss": acc, **sums}
        n = max(steps, 1)
        return {k: float(v) / n for k, v in sums.items() if not k.startswith("_")}


class Trainer(ABC, Generic[DataT]):
    name: ClassVar[str] = ""
    #: hyperparameters: kind, valid values and the paper's default (per dataset where the paper tunes it so)
    hparams: ClassVar[dict[str, HP]] = {}
    #: the metric a sweep optimises unless the space says otherwise
    metric: ClassVar[str] = "H"
    #: what the method trains on: a registered data source name (zsltune.data.sources) or a DataSource class
    data_source: ClassVar[str | type[DataSource]] = "features"
    #: "gzsl" (H, U, S, ...) or "retrieval" (recall@K, NMI)
    metric_family: ClassVar[str] = "gzsl"
    #: values picked on the evaluation data (reported under these keys); a test stage gets them frozen from val
    knobs: ClassVar[tuple[str, ...]] = ("gamma",)

    def __init__(
        self,
        config: Mapping[str, Any],
        data: DataT,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_epochs: int = 50,
        knobs: Mapping[str, float] | None = None,
        iteration_steps: int | None = None,
    ) -> None:
        hps = self.all_hparams()
        # unknown keys, wrong kinds, out-of-range values (the config's and the defaults'): one line each
        self.config: dict[str, Any] = check_config(
            self.name, hps, {**self.default_config(getattr(data, "dataset", "*")), **config}
        )
        bad = sorted(set(knobs or {}) - set(self.knobs))
        if bad:
            raise ConfigError(f"{self.name}: '{bad[0]}' is not a knob of this method; knobs: {', '.join(self.knobs)}")
        #: knobs fixed from outside (a test stage: the values chosen on validation); empty: chosen on this data
        self.frozen: dict[str, float] = {k: float(v) for k, v in (knobs or {}).items()}
        self.data: DataT = data
        self.device = torch.device(device)
        self.seed = seed
        self.max_epochs = max_epochs  # iterations in the budget: the horizon of any learning-rate schedule
        self.epoch = 0  # iterations done (an iteration is an epoch, or ``iteration_steps`` optimisation steps)
        self.step = 0  # optimisation steps done
        if iteration_steps is not None and (isinstance(iteration_steps, bool) or int(iteration_steps) < 1):
            raise ConfigError(f"{self.name}: iteration_steps must be an integer >= 1 or None, got {iteration_steps!r}")
        self.iteration_steps = int(iteration_steps) if iteration_steps else None
        self._queue: list[torch.Tensor] = []  # the rest of the current pass over the training rows
        self.amp = bool(self.config["amp"]) and self.device.type == "cuda"  # the one AMP switch
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        torch.manual_seed(seed)
        self.model: torch.nn.Module = torch.nn.Module()
        self.optimizer: torch.optim.Optimizer | None = None

    # ---- declarations -------------------------------------------------------------------------------------
    @classmethod
    def all_hparams(cls) -> dict[str, HP]:
        return {**BASE_HPARAMS, **cls.hparams}

    @classmethod
    def default_config(cls, dataset: str = "*") -> dict[str, Any]:
        """Every hyperparameter's declared (paper) default for ``dataset``."""
        return {k: hp.default_for(dataset) for k, hp in cls.all_hparams().items()}

    @classmethod
    def source(cls, config: Mapping[str, Any] | None = None) -> DataSource:
        """The data source a configuration needs (``config``: the values fixed for the whole sweep)."""
        return get_source(cls.data_source)

    @classmethod
    def check_rules(cls, config: Mapping[str, Any], info: DataInfo) -> None:
        """Cross-parameter and per-dataset rules (e.g. K <= seen classes); raise :class:`ConfigError`."""
        return None

    # ---- what a method implements -------------------------------------------------------------------------
    @abstractmethod
    def train_steps(self, steps: int) -> dict[str, float]:
        """``steps`` optimisation steps (batches from :meth:`next_batches`); returns the mean of each loss term."""

    def steps_per_epoch(self) -> int:
        """Batches in one pass over the training rows (``batch_size`` of the config; override where it differs)."""
        data = cast(FeatureBundle, self.data)  # this default reads features; image trainers override it
        return pass_length(len(data.y_train), int(self.config["batch_size"]))

    def step_cost(self) -> float:
        """Samples one optimisation step pushes through the model, the unit of a compute budget (``zsltune run
        --budget compute``): the config's ``batch_size``, 1 without one; override where a step runs more batches."""
        return float(self.config.get("batch_size", 1))

    def iteration_cost(self, config: Mapping[str, Any] | None = None) -> float:
        """Samples one Tune iteration pushes through the model (its steps x :meth:`step_cost`) under ``config``, a
        complete configuration of this trainer (default: its own)."""
        view = self
        if config is not None:  # a shallow copy: steps_per_epoch and step_cost read the config and the data only
            view = copy.copy(self)
            view.config = dict(config)
        return (view.iteration_steps or view.steps_per_epoch()) * view.step_cost()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Compatibility scores (n, C) of images x (n, D) against every stage class (GZSL methods)."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores() or override evaluate()")

    def extra_state(self) -> dict[str, Any]:
        """Anything besides the modules, optimisers, schedulers and scalers a checkpoint must hold."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved (an optional hook)."""

    # ---- what the sweep calls -----------------------------------------------------------------------------
    def fit_epoch(self) -> dict[str, float]:
        """One iteration (an epoch, or ``iteration_steps`` steps) with a divergence check; raises
        :class:`TrialDiverged` on a non-finite loss."""
        for m in self.stateful().values():
            if isinstance(m, torch.nn.Module):
                m.train()
        steps = self.iteration_steps or self.steps_per_epoch()
        losses = self.train_steps(steps)
        self.epoch += 1
        self.step += steps
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise TrialDiverged(
                f"loss '{bad[0]}' is {losses[bad[0]]} at epoch {self.epoch}: the trial diverged "
                f"(lower the learning rate or the loss weights)"
            )
        return losses

    def metric_keys(self) -> tuple[str, ...]:
        """The metrics :meth:`evaluate` reports on this trainer's data: its family's (a method may report more)."""
        return metrics.metric_names(self.metric_family)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """GZSL metrics on the stage's seen and unseen evaluation images (:func:`~zsltune.metrics.gzsl_report`)."""
        self.model.eval()
        d = cast(FeatureBundle, self.data)  # this default reads features; other methods override it
        s_seen = self.batched_scores(d.x_seen)  # (N_s, C)
        s_unseen = self.batched_scores(d.x_unseen)  # (N_u, C)
        return self.gzsl_metrics(s_seen, d.y_seen, s_unseen, d.y_unseen)

    def gzsl_metrics(
        self, s_seen: np.ndarray, y_seen: np.ndarray, s_unseen: np.ndarray, y_unseen: np.ndarray
    ) -> dict[str, float]:
        """:func:`~zsltune.metrics.gzsl_report` of scores (N_s, C), (N_u, C) against every stage class, with the
        frozen ``gamma`` where a test stage has one; :class:`TrialDiverged` on a NaN or inf score."""
        self.check_finite(s_seen, s_unseen)
        n_seen, gamma = self.data.n_seen, self.frozen.get("gamma")
        return metrics.gzsl_report(s_seen, y_seen, s_unseen, y_unseen, n_seen=n_seen, gamma=gamma)

    def check_finite(self, *arrays: np.ndarray) -> None:
        if not all(np.isfinite(a).all() for a in arrays):
            raise TrialDiverged(
                f"scores are NaN or inf after epoch {self.epoch}: the trial diverged "
                f"(lower the learning rate or the loss weights)"
            )

    def batched_scores(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        out = [self.scores(self.to_device(x[i : i + batch])).float().cpu() for i in range(0, len(x), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.data.num_classes), np.float32)

    def stateful(self) -> dict[str, Any]:
        """Every module, optimiser, LR scheduler and AMP scaler held as an attribute, by attribute name."""
        return {k: v for k, v in sorted(vars(self).items()) if isinstance(v, STATEFUL)}

    def state_dict(self) -> dict[str, Any]:
        held = self.stateful()
        return {
            "state": {k: v.state_dict() for k, v in held.items()},
            "modules": sorted(k for k, v in held.items() if isinstance(v, torch.nn.Module)),
            "epoch": self.epoch,
            "step": self.step,
            "queue": [q.cpu() for q in self._queue],
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        held, saved = self.stateful(), state["state"]
        if state.get("weights_only"):  # an ended trial's slimmed checkpoint: its optimisers start afresh
            held = {k: v for k, v in held.items() if isinstance(v, torch.nn.Module)}
        missing = sorted(set(held) - set(saved))
        if missing:
            raise ConfigError(
                f"{self.name}: checkpoint has no state for '{missing[0]}'; it was written by another trainer"
            )
        for k, obj in sorted(held.items(), key=lambda kv: not isinstance(kv[1], torch.nn.Module)):  # modules first
            obj.load_state_dict(saved[k])
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))
        self._queue = [q.to(self.device) for q in state.get("queue", [])]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.load_extra_state(state.get("extra", {}))

    # ---- helpers ------------------------------------------------------------------------------------------
    def schedule_lr(self, optimizer: torch.optim.Optimizer, lr: float, schedule: str, i: int, steps: int) -> None:
        """Every parameter group of ``optimizer`` at ``lr`` x :func:`~zsltune.methods.schedules.lr_factor` of
        ``schedule`` for step ``i`` of this iteration's ``steps``, the progress counted in the trial's budget of
        ``max_epochs`` iterations (so every trial of a sweep has the same schedule per iteration)."""
        if schedule == "constant":
            return
        lr = lr * lr_factor(schedule, (self.epoch + i / steps) / max(1, self.max_epochs))
        for g in optimizer.param_groups:
            g["lr"] = lr

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast where ``amp`` is on and the trainer runs on CUDA; nothing otherwise."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(self.device, non_blocking=True)

    def next_batches(self, steps: int, n: int, batch_size: int) -> list[torch.Tensor]:
        """The next ``steps`` batches of row indices: passes over ``range(n)`` in seeded random order, continued
        across calls (and checkpoints), so an iteration may end inside a pass."""
        out: list[torch.Tensor] = []
        while len(out) < steps:
            if not self._queue:
                self._queue = self.batches(n, batch_size)
            take = min(steps - len(out), len(self._queue))
            out += self._queue[:take]
            self._queue = self._queue[take:]
        return out

    def batches(self, n: int, batch_size: int) -> list[torch.Tensor]:
        """A seeded random permutation of ``range(n)`` on the device, cut into batches (last one dropped if tiny)."""
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        cuts = list(perm.split(batch_size))
        if len(cuts) > 1 and len(cuts[-1]) < batch_size // 2:
            cuts.pop()
        return cuts


def pass_length(n: int, batch_size: int) -> int:
    """Batches in one pass of :meth:`Trainer.batches` over n rows (a last batch under half size is dropped)."""
    full, rem = divmod(n, batch_size)
    cuts = full + (1 if rem else 0)
    return cuts - 1 if cuts > 1 and 0 < rem < batch_size // 2 else max(cuts, 1)


def weights_only(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``state`` (a :meth:`Trainer.state_dict`) with its modules' weights only, marked ``weights_only``: what an
    ended trial's checkpoint needs (its restore reports the model; nothing trains on). ``None`` where it is already
    slim or was written without the list of its modules."""
    if state.get("weights_only") or "modules" not in state:
        return None
    return {
        **state,
        "state": {k: v for k, v in state["state"].items() if k in state["modules"]},
        "queue": [],
        "weights_only": True,
    }
