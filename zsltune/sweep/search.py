"""Optuna samplers, the prune-aware Optuna searcher, and Tune schedulers built from a search space."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from zsltune.errors import DIVERGED, ConfigError, UnknownNameError
from zsltune.metrics import AUSUC, H_ALPHA, H_CAL, NMI, ZSL_TOP1, H, S, U, recall_key
from zsltune.space import SearchSpace
from zsltune.sweep.budget import reached, time_attr

SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "pbt", "fifo")


def make_sampler(name: str, *, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise UnknownNameError(f"--sampler {name}: unknown sampler; valid samplers: {', '.join(SAMPLERS)}")
    if multi and name == "cmaes":
        raise ConfigError("--sampler cmaes optimises one metric; for several (--metric U,S) use nsga2, tpe or random")
    if name == "tpe":
        # constant liar: trials still running (pending ones waiting for a node too) count as bad results, so a
        # wave of proposals made before any result returns spreads out instead of piling up near the incumbent
        # (Optuna 5's default, off in Optuna 4: said here so both behave alike)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5, constant_liar=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return _NSGAII(seed=seed)


class _NSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II that pickles: optuna 5.1's holds a ``threading.Lock`` (``_thread_lock``), and Ray Tune pickles the
    searcher with its sampler when the Tuner starts ("cannot pickle '_thread.lock' object"); a fresh lock on load."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, _LOCK)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


_LOCK = type(threading.Lock())
#: metrics a study's trials carry as user attributes, where the method reports them
HEADLINE = (H, U, S, H_CAL, H_ALPHA, ZSL_TOP1, AUSUC, recall_key(1), NMI)


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study a trial stopped early by the scheduler was PRUNED, not COMPLETE.

    Ray's OptunaSearch reports an ASHA-stopped trial as COMPLETE with its early score, so TPE would treat a
    3-epoch score as a fully trained one. A trial that ends before its budget (``max_epochs``, or the iterations a
    compute budget allows it: :func:`~zsltune.sweep.budget.reached`) is pruned here.
    """

    def __init__(self, *args: Any, max_epochs: int, rank_metric: str, rank_mode: str, **kwargs: Any) -> None:
        self.max_epochs = max_epochs
        # a trial's score is its metric at its best iteration by rank_metric, as trials.parquet and `analyze best`
        # rank it (and a rerun trains to), not at its last one
        self.rank_metric, self.rank_mode = rank_metric, rank_mode
        self._best: dict[str, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if _NO_NEW_TRIALS.is_set():  # Tune's protocol for a search that has ended: no study trial is asked for
            return Searcher.FINISHED
        return super().suggest(trial_id)

    def _setup_study(self, mode: str | list[str]) -> None:
        super()._setup_study(mode)
        names = self._metric if isinstance(self._metric, list) else [self._metric]
        with warnings.catch_warnings():  # experimental in optuna 5 and stable in use since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names(list(names))  # optuna-dashboard shows "H", not "Objective 0"

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if DIVERGED in result:  # NaN metrics of a diverged trial are no intermediate value
            return
        v, best = result.get(self.rank_metric), self._best.get(trial_id)
        if isinstance(v, int | float) and v == v:
            old = None if best is None else best[self.rank_metric]
            if old is None or (v > old if self.rank_mode == "max" else v < old):
                self._best[trial_id] = {k: x for k, x in result.items() if isinstance(x, int | float)}
        # after a driver crash the journal can be ahead of the searcher's snapshot: a trial it already closed
        # may report again on resume; its intermediate values are then history, not news
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

    def _annotate(self, trial_id: str) -> dict[str, Any] | None:
        """The trial's best iteration as user attributes (Ray's trial id, the headline metrics); that iteration."""
        best = self._best.get(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return best
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # closed in the journal (a resume)
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            for k in (*HEADLINE, self.rank_metric, "epoch"):
                if best is not None and k in best:
                    ot_trial.set_user_attr("best_iteration" if k == "epoch" else k, best[k])
        return best

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and DIVERGED in result:  # the configuration failed: Optuna records it as FAIL
            error, result = True, None
        best = self._annotate(trial_id)
        done = result is not None and reached(result, self.max_epochs)
        if done and best is not None:
            result = {**result, **best}  # the study's value: the metric at the best iteration
        if error or done or result is None or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        ot_trial = self._ot_trials[trial_id]
        try:
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)
        except Exception as exc:  # e.g. a trial already finished in the journal after a resume
            warnings.warn(f"optuna: could not mark trial {trial_id} pruned: {exc}", stacklevel=1)
        self._completed_trials.add(trial_id)


#: set while a restored search may finish the trials its snapshot holds but start none (:func:`no_new_trials`)
_NO_NEW_TRIALS = threading.Event()


@contextlib.contextmanager
def no_new_trials() -> Iterator[None]:
    """While inside, every :class:`PruneAwareOptunaSearch` on this driver says it has finished: a resume that changes
    the sample count, budget or concurrency finishes the restored job's started trials this way (its sample count
    and concurrency are fixed in Ray's snapshot) and starts the rest as a new job. The searcher of a restored job
    is unpickled from Ray's files, so a switch outside the object is the one it can see."""
    _NO_NEW_TRIALS.set()
    try:
        yield
    finally:
        _NO_NEW_TRIALS.clear()


# ---- schedulers ---------------------------------------------------------------------------------------------
def make_scheduler(
    name: str,
    space: SearchSpace,
    *,
    metric: str,
    mode: str,
    max_epochs: int,
    grace: int,
    seed: int,
    budget: str = "iterations",
) -> TrialScheduler:
    """The ``--scheduler`` of a search; ``max_epochs`` and ``grace`` count Tune iterations, or under ``budget``
    "compute" iterations of the space's defaults (the ``compute`` result key: :mod:`zsltune.sweep.budget`)."""
    if name not in SCHEDULERS:
        raise UnknownNameError(f"--scheduler {name}: unknown scheduler; valid schedulers: {', '.join(SCHEDULERS)}")
    common = {"metric": metric, "mode": mode}
    attr = time_attr(budget)
    if name == "asha":
        return ASHAScheduler(
            time_attr=attr,
            max_t=max_epochs,
            grace_period=min(grace, max_epochs),
            reduction_factor=3,
            **common,
        )
    if name == "hyperband":
        return HyperBandScheduler(time_attr=attr, max_t=max_epochs, reduction_factor=3, **common)
    if name == "median":
        return MedianStoppingRule(time_attr=attr, grace_period=grace, min_samples_required=3, **common)
    if name == "pbt":
        mutations = _pbt_mutations(space)
        if not mutations:
            raise ConfigError(f"--scheduler pbt needs float parameters to perturb; {space.path} has none")
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=max(1, grace),
            hyperparam_mutations=mutations,
            quantile_fraction=0.25,
            **common,
        )
    return FIFOScheduler()


def _pbt_mutations(space: SearchSpace) -> dict[str, Any]:
    """PBT perturbs only unconditional floats: ints and categoricals (K, widths) change the model's shape."""
    return {
        p.name: (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
        for p in space.params
        if p.type == "float" and not p.condition
    }


def tune_domain(p: Any) -> Any:
    if p.type == "categorical":
        return tune.choice(list(p.choices))
    if p.type == "int":
        return (tune.lograndint if p.log else tune.randint)(int(p.low), int(p.high) + 1)
    return (tune.loguniform if p.log else tune.uniform)(p.low, p.high)


def make_searcher(
    o: Any, space: SearchSpace, metrics: list[str], *, sweep_dir: Path, defaults: dict[str, Any], ran: int = 0
) -> tuple[Any, dict[str, Any]]:
    """The searcher of a new sweep and its Tune ``param_space``: Optuna (journal in the sweep folder, the paper's
    defaults enqueued first unless ``o.defaults_first`` is off) or, for PBT, which mutates running trials' configs,
    Tune's own variant generator.

    ``ran``: trials the sweep has run already (a resume adding trials continues the same study): the defaults are
    not enqueued again, and the sampler's seed moves on by that many so its random draws do not repeat the first
    job's."""
    if o.scheduler == "pbt":  # PBT: no model-based searcher
        from ray.tune.search import BasicVariantGenerator

        param_space = {p.name: tune_domain(p) for p in space.params if not p.condition}
        first = {k: v for k, v in defaults.items() if k in param_space}
        points = [first] if o.defaults_first else None
        return BasicVariantGenerator(points_to_evaluate=points, random_state=o.seed), param_space
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    multi = len(metrics) > 1
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    searcher = PruneAwareOptunaSearch(
        space=space,
        metric=metrics if multi else metrics[0],
        mode=[space.mode] * len(metrics) if multi else space.mode,
        points_to_evaluate=[defaults] if o.defaults_first and not ran else None,
        sampler=make_sampler(o.sampler, seed=o.seed + ran, multi=multi),
        study_name=sweep_dir.name,
        storage=storage,
        max_epochs=o.max_epochs or 1,
        rank_metric=space.metric if multi else metrics[0],
        rank_mode=space.mode,
    )
    return searcher, {}
