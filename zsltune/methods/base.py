"""The trainer contract every method follows (the registry that finds one by name is :mod:`zsltune.methods.registry`).

A method declares what it trains on (:attr:`Trainer.data_source`), the metric family it reports
(:attr:`Trainer.metric_family`), its hyperparameters (:attr:`Trainer.hparams`: kinds and valid values; defaults here
or in its search-space YAML, never both), cross-parameter rules (:meth:`Trainer.check_rules`) and the knobs it picks
on evaluation data (:attr:`Trainer.knobs`: chosen on validation, then frozen for the test stage).

The sweep never knows which method it runs: it builds ``cls(config, data, device=, seed=, max_epochs=, knobs=)``,
calls :meth:`Trainer.fit_epoch` once per Tune iteration, then :meth:`Trainer.evaluate`, and checkpoints with
:meth:`Trainer.state_dict`, which holds every module, optimiser, LR scheduler and AMP scaler the trainer keeps as an
attribute. A method implements :meth:`train_steps` and :meth:`scores` (GZSL) or overrides :meth:`evaluate`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from zsltune import metrics
from zsltune.data.sources import DataInfo, DataSource, get_source
from zsltune.errors import ConfigError, TrialDiverged
from zsltune.methods import prep
from zsltune.methods.hparams import FROM_SPACE, HP, Bool, check_config

#: hyperparameters every trainer takes
BASE_HPARAMS: dict[str, HP] = {"amp": Bool(default=False, help="bf16 autocast on CUDA (ignored on CPU)")}
#: learning-rate schedules over a trial's budget (``max_epochs`` iterations), see :meth:`Trainer.lr_factor`
LR_SCHEDULES = ("constant", "cosine")
#: checkpointed attributes: every one of these a trainer holds goes into state_dict() under its attribute name
STATEFUL = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler)


class Trainer(ABC):
    name: ClassVar[str] = ""
    #: hyperparameters: kind, valid values, and the default unless the search space's ``default:`` holds it
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
        data: Any,
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
        self.data = data
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
        self._feat: tuple[str, torch.Tensor, torch.Tensor] | None = None  # fitted feature transform

    # ---- declarations -------------------------------------------------------------------------------------
    @classmethod
    def all_hparams(cls) -> dict[str, HP]:
        return {**BASE_HPARAMS, **cls.hparams}

    @classmethod
    def default_config(cls, dataset: str = "*") -> dict[str, Any]:
        """Every hyperparameter's default for ``dataset``: the declaration's, else the shipped space's (paper)."""
        space = _shipped_defaults(cls.name, dataset)
        out: dict[str, Any] = {}
        for k, hp in cls.all_hparams().items():
            if hp.default is not FROM_SPACE:
                out[k] = hp.default
            elif k in space:
                out[k] = space[k]
            else:
                raise ConfigError(
                    f"{cls.name}: no default for '{k}': declare one in the trainer or give it a default: in "
                    f"search_spaces/{cls.name}.yaml"
                )
        return out

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
        return pass_length(len(self.data.y_train), int(self.config["batch_size"]))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Compatibility scores (n, C) of images x (n, D) against every stage class (GZSL methods)."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores() or override evaluate()")

    def extra_state(self) -> dict[str, Any]:
        """Anything besides the modules, optimisers, schedulers and scalers a checkpoint must hold."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass

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
        d = self.data
        s_seen = self.batched_scores(d.x_seen)  # (N_s, C)
        s_unseen = self.batched_scores(d.x_unseen)  # (N_u, C)
        self.check_finite(s_seen, s_unseen)
        return metrics.gzsl_report(
            s_seen, d.y_seen, s_unseen, d.y_unseen, n_seen=d.n_seen, gamma=self.frozen.get("gamma")
        )

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
    def lr_factor(self, progress: float) -> float:
        """The config's ``lr_schedule`` at ``progress`` in [0, 1] of the trial's budget: 1 for ``constant``;
        ``cosine`` falls from 1 to 0 (half a cosine), so the last iterations settle instead of jitter."""
        if self.config.get("lr_schedule", "constant") == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return 1.0

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast where ``amp`` is on and the trainer runs on CUDA; nothing otherwise."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit_feature_transform(self, kind: str) -> None:
        """Fit the feature transform ``kind`` (:data:`~zsltune.methods.prep.FEATURE_NORMS`) on the training images
        only; :meth:`prep_features` applies it to any batch. A trainer that draws batches keeps the stage's training
        features as they are (on CPU: the node's shared copy, not copied) and transforms each batch."""
        shift, scale = prep.feature_stats(self.data.x_train, kind)
        self._feat = (kind, self.to_device(shift), self.to_device(scale))

    def fit_features(self, kind: str) -> torch.Tensor:
        """:meth:`fit_feature_transform`, and the training images transformed whole, on the device (N_tr, D): a
        private copy of them, for a trainer that uses them all at once."""
        self.fit_feature_transform(kind)
        return self.prep_features(self.to_device(self.data.x_train))

    def prep_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features (n, D) through the transform fitted on the training images (float32)."""
        x = x.float()
        if self._feat is None:
            return x
        kind, shift, scale = self._feat
        x = (x - shift) / scale
        return torch.nn.functional.normalize(x, dim=1) if kind == "l2" else x

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


@functools.lru_cache(maxsize=64)
def _shipped_space_defaults(name: str, dataset: str) -> tuple[tuple[str, Any], ...]:
    from zsltune.space import available_spaces, load_space

    if name not in available_spaces():
        return ()
    space = load_space(name)
    if space.method != name:
        return ()
    return tuple((p.name, p.default_for(dataset)) for p in space.params if p.default is not None)


def _shipped_defaults(name: str, dataset: str) -> dict[str, Any]:
    """The paper defaults of the method's shipped search space (every parameter, active or not)."""
    return dict(_shipped_space_defaults(name, dataset))


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
