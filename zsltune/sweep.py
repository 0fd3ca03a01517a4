"""Ray Tune + Optuna glue: the one place (with :mod:`zsltune.run`) that imports Ray.

One sweep = one ``tune.Tuner``: an Optuna sampler proposes configurations from the YAML space (define-by-run,
the paper's defaults first), a scheduler stops bad trials early, each trial is one method trainer whose epochs
are Tune iterations, each epoch reports metrics and a checkpoint. The dataset stage is loaded once on the driver
and shared with every trial through the object store as numpy arrays (zero-copy reads on a node).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from zsltune.data import STAGES, StageData, load_stage
from zsltune.errors import ConfigError, SpaceError, UnknownNameError
from zsltune.methods import Trainer, get_method
from zsltune.results import ResultsSink
from zsltune.space import SearchSpace, load_space

SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "pbt", "fifo")
CHECKPOINT_FILE = "trainer.pt"


def default_storage() -> Path:
    return Path(os.environ.get("ZSLTUNE_RESULTS", Path.home() / "zsltune_results")).expanduser()


@dataclass
class SweepOptions:
    """Everything ``zsltune run`` takes; validated by :func:`validate`."""

    space: str
    dataset: str = "demo"
    data_root: str | None = None
    stage: str = "val"
    attributes: str = "att"
    num_samples: int = 8
    sampler: str = "tpe"
    scheduler: str = "asha"
    metric: str | None = None  # "H", or "U,S" for a multi-objective study
    max_epochs: int | None = None
    grace_period: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    time_budget: float | None = None
    name: str | None = None
    storage: str | None = None
    resume: bool = False
    seed: int = 0
    address: str | None = None
    max_failures: int = 2
    checkpoint_every: int = 1
    quiet: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed hyperparameters (e.g. tiny sizes in tests)


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a sweep shares, besides the data."""

    method: str
    max_epochs: int
    seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    checkpoint_every: int
    overrides: dict[str, Any]


@dataclass
class SweepResult:
    sweep_dir: Path
    trials_path: Path
    epochs_path: Path
    best: dict[str, Any] | None
    counts: dict[str, int]


# ---- the trial -----------------------------------------------------------------------------------------------
def _trial_device(spec: TrialSpec) -> torch.device:
    if spec.gpus_per_trial > 0 and torch.cuda.is_available():
        # Ray sets CUDA_VISIBLE_DEVICES for the trial; GPU fractions are bookkeeping only, so cap memory too
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec.gpus_per_trial))
        return torch.device("cuda")
    return torch.device("cpu")


def run_trial(config: dict[str, Any], data: StageData, spec: TrialSpec) -> None:
    """The Tune trainable: one trainer, one Tune iteration per epoch, a checkpoint every ``checkpoint_every``."""
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    device = _trial_device(spec)
    trainer: Trainer = get_method(spec.method)(
        {**spec.overrides, **config}, data, device=device, seed=spec.seed, max_epochs=spec.max_epochs
    )
    device_s, restores = 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried, resumed or PBT-exploited trial continues from its checkpoint
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        trainer.load_state_dict(state["trainer"])
        device_s, restores = float(state["device_s"]), int(state["restores"]) + 1
    node = ray.get_runtime_context().get_node_id()
    while trainer.epoch < spec.max_epochs:
        t0 = time.perf_counter()
        losses = trainer.fit_epoch()
        t1 = time.perf_counter()
        metrics = trainer.evaluate()
        t2 = time.perf_counter()
        device_s += t2 - t0
        result = {
            **metrics,
            **{f"loss/{k}": v for k, v in losses.items()},
            "epoch": trainer.epoch,
            "train_s": t1 - t0,
            "eval_s": t2 - t1,
            "device_s": device_s,
            "node": node,
            "device": device.type,
            "pid": os.getpid(),
            "restores": restores,
        }
        if trainer.epoch % spec.checkpoint_every == 0 or trainer.epoch == spec.max_epochs:
            with tempfile.TemporaryDirectory() as d:
                torch.save(
                    {"trainer": trainer.state_dict(), "device_s": device_s, "restores": restores},
                    Path(d) / CHECKPOINT_FILE,
                )
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(result)


# ---- Optuna -------------------------------------------------------------------------------------------------
def make_sampler(name: str, *, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise UnknownNameError(f"--sampler {name}: unknown sampler; valid samplers: {', '.join(SAMPLERS)}")
    if multi and name == "cmaes":
        raise ConfigError("--sampler cmaes optimises one metric; for several (--metric U,S) use nsga2, tpe or random")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed)


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study a trial stopped early by the scheduler was PRUNED, not COMPLETE.

    Ray's OptunaSearch reports an ASHA-stopped trial as COMPLETE with its early score, so TPE would treat a
    3-epoch score as a fully trained one. A trial that ends before ``max_epochs`` is pruned here.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        self.max_epochs = max_epochs
        super().__init__(*args, **kwargs)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        done = result is not None and int(result.get("epoch", 0)) >= self.max_epochs
        if error or done or result is None or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        ot_trial = self._ot_trials[trial_id]
        try:
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)
        except Exception as exc:  # e.g. a trial already finished in the journal after a resume
            warnings.warn(f"optuna: could not mark trial {trial_id} pruned: {exc}", stacklevel=1)
        self._completed_trials.add(trial_id)


# ---- schedulers ---------------------------------------------------------------------------------------------
def make_scheduler(
    name: str, space: SearchSpace, *, metric: str, mode: str, max_epochs: int, grace: int, seed: int
) -> TrialScheduler:
    if name not in SCHEDULERS:
        raise UnknownNameError(f"--scheduler {name}: unknown scheduler; valid schedulers: {', '.join(SCHEDULERS)}")
    common = {"metric": metric, "mode": mode}
    if name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs,
            grace_period=min(grace, max_epochs),
            reduction_factor=3,
            **common,
        )
    if name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=max_epochs, reduction_factor=3, **common)
    if name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=grace, min_samples_required=3, **common)
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


def _tune_domain(p: Any) -> Any:
    if p.type == "categorical":
        return tune.choice(list(p.choices))
    if p.type == "int":
        return (tune.lograndint if p.log else tune.randint)(int(p.low), int(p.high) + 1)
    return (tune.loguniform if p.log else tune.uniform)(p.low, p.high)


# ---- Tune callbacks (driver side) ---------------------------------------------------------------------------
class ParquetCallback(tune.Callback):
    """Writes trials.parquet / epochs.parquet as results arrive; survives ``--resume`` without loss or doubles."""

    def __init__(
        self, sweep_dir: Path, *, metric: str, mode: str, max_epochs: int, meta: dict[str, Any], quiet: bool = False
    ) -> None:
        self.sweep_dir, self.metric, self.mode = Path(sweep_dir), metric, mode
        self.max_epochs, self.meta, self.quiet = max_epochs, meta, quiet
        self._sink: ResultsSink | None = None
        self._t0 = time.monotonic()
        self._last_print = 0.0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into the experiment state
        return {**self.__dict__, "_sink": None}

    @property
    def sink(self) -> ResultsSink:
        if self._sink is None:
            self._sink = ResultsSink(self.sweep_dir, metric=self.metric, mode=self.mode)
        return self._sink

    def setup(self, **info: Any) -> None:
        self._t0 = time.monotonic()
        _ = self.sink

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.start_trial(trial.trial_id, config=dict(trial.config), **self.meta)
        self.sink.flush()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        keep = {k: v for k, v in result.items() if not isinstance(v, dict) and k not in _RAY_NOISE}
        keep["wall_s"] = result.get("time_total_s")
        keep["epoch_s"] = result.get("time_this_iter_s")
        keep["timestamp"] = result.get("timestamp")
        self.sink.add_epoch(trial.trial_id, int(result.get("epoch", result.get("training_iteration", 0))), keep)
        self.sink.flush()
        self._progress(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = int(trial.last_result.get("epoch", 0)) if trial.last_result else 0
        self.sink.end_trial(trial.trial_id, status="completed" if epochs >= self.max_epochs else "stopped")
        self.sink.flush(force=True)
        self._progress(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sink.end_trial(trial.trial_id, status="failed", error=_error_line(trial))
        self.sink.flush(force=True)
        self._progress(trials, force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.sink.flush(force=True)

    def _progress(self, trials: list, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_print < 10):
            return
        self._last_print = now
        rows = self.sink.trials.values()
        counts = {s: sum(r.get("status") == s for r in rows) for s in ("running", "completed", "stopped", "failed")}
        best = _best_row(list(rows), self.metric, self.mode)
        best_txt = (
            f"best {self.metric} {best[f'best/{self.metric}']:.4f} ({best['trial_id']})" if best else "no result yet"
        )
        el = int(now - self._t0)
        print(
            f"[{el // 60:02d}:{el % 60:02d}] trials {len(trials)}: {counts['running']} running, "
            f"{counts['completed']} completed, {counts['stopped']} stopped early, {counts['failed']} failed | "
            f"{best_txt}",
            file=sys.stderr,
            flush=True,
        )


_RAY_NOISE = {
    "config",
    "trial_id",
    "experiment_id",
    "date",
    "hostname",
    "node_ip",
    "done",
    "training_iteration",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
    "experiment_tag",
    "time_total_s",
    "time_this_iter_s",
    "timestamp",
}


def _error_line(trial: Any) -> str:
    """The exception line of a failed trial, e.g. "zsltune...TrialDiverged: loss 'loss' is nan ..."."""
    text = ""
    try:  # the driver writes the error file locally before calling back; storage gets it later
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).is_file() else (trial.get_error() or "")
    except Exception:  # pragma: no cover - storage hiccup
        pass
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip() and not ln.startswith("Failure #")]
    for ln in reversed(lines):
        if ":" in ln and not ln.startswith(("File ", "^", "~", "Traceback")):
            return ln[:1000]
    return lines[-1][:1000] if lines else "trial failed (no error text)"


def _best_row(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    key = f"best/{metric}"
    scored = [r for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[key])


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# ---- the sweep ----------------------------------------------------------------------------------------------
def _check_options(o: SweepOptions, space: SearchSpace, trainer_cls: type[Trainer]) -> None:
    unknown = [p.name for p in space.params if p.name not in trainer_cls.defaults]
    if unknown:
        raise SpaceError(
            f"{space.path}: parameter '{unknown[0]}' is not a hyperparameter of {space.method}; "
            f"valid: {', '.join(sorted(trainer_cls.defaults))}"
        )
    bad_over = sorted(set(o.overrides) - set(trainer_cls.defaults))
    if bad_over:
        raise ConfigError(
            f"--set {bad_over[0]}: not a hyperparameter of {space.method}; valid: "
            f"{', '.join(sorted(trainer_cls.defaults))}"
        )
    checks = [
        (o.num_samples >= 1, f"--num-samples must be >= 1, got {o.num_samples}"),
        (o.cpus_per_trial > 0, f"--cpus-per-trial must be > 0, got {o.cpus_per_trial}"),
        (o.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0, got {o.gpus_per_trial}"),
        (
            o.gpus_per_trial <= 1 or float(o.gpus_per_trial).is_integer(),
            f"--gpus-per-trial above 1 must be a whole number, got {o.gpus_per_trial}",
        ),
        (o.max_concurrent is None or o.max_concurrent >= 1, f"--max-concurrent must be >= 1, got {o.max_concurrent}"),
        (o.time_budget is None or o.time_budget > 0, f"--time-budget must be > 0 seconds, got {o.time_budget}"),
        (o.max_epochs is None or o.max_epochs >= 1, f"--max-epochs must be >= 1, got {o.max_epochs}"),
        (o.max_failures >= 0, f"--max-failures must be >= 0, got {o.max_failures}"),
        (o.checkpoint_every >= 1, f"--checkpoint-every must be >= 1, got {o.checkpoint_every}"),
        (o.stage in STAGES, f"--stage must be one of {', '.join(STAGES)}, got {o.stage}"),
        (o.resume or o.name is None or "/" not in o.name, f"--name must be a plain name, got {o.name}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


OPTIONS_FILE = "zsltune.json"
#: options a resume may change; the rest come from the sweep's OPTIONS_FILE
RESUME_KEEPS = ("name", "storage", "resume", "quiet", "address")


def _new_sweep_dir(o: SweepOptions, space: SearchSpace, storage: Path) -> Path:
    if o.name:
        return storage / o.name
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return storage / f"{space.method}-{Path(o.dataset).name}-{o.stage}-{stamp}"


def _resume_options(o: SweepOptions, storage: Path) -> tuple[SweepOptions, Path]:
    """The stored options of the sweep to resume (``--name``, or the newest under ``storage``)."""
    if o.name:
        sweep_dir = storage / o.name
    else:
        cands = sorted((p.parent for p in storage.glob(f"*/{OPTIONS_FILE}")), key=lambda p: p.stat().st_mtime)
        if not cands:
            raise ConfigError(f"--resume: no sweep under {storage}; pass --name NAME (and --storage)")
        sweep_dir = cands[-1]
    if not (sweep_dir / "tuner.pkl").exists() or not (sweep_dir / OPTIONS_FILE).exists():
        raise ConfigError(f"--resume: {sweep_dir} holds no sweep to resume; check --name and --storage")
    stored = json.loads((sweep_dir / OPTIONS_FILE).read_text())
    keep = {k: getattr(o, k) for k in RESUME_KEEPS}
    return replace(SweepOptions(**stored), **{**keep, "name": sweep_dir.name, "storage": str(storage)}), sweep_dir


def prepare(o: SweepOptions) -> tuple[SweepOptions, SearchSpace, Path, list[str]]:
    """Validate everything that can be checked without Ray; returns the resolved options and the sweep folder."""
    storage = (Path(o.storage).expanduser() if o.storage else default_storage()).resolve()
    if o.resume:
        o, sweep_dir = _resume_options(o, storage)
    elif not o.space:
        raise ConfigError("--space is required: a name in search_spaces/ or a YAML path (or --resume a sweep)")
    space = load_space(o.space)
    trainer_cls = get_method(space.method)
    _check_options(o, space, trainer_cls)
    metrics = [m.strip() for m in (o.metric or space.metric).split(",") if m.strip()]
    make_sampler(o.sampler, seed=o.seed, multi=len(metrics) > 1)
    if o.scheduler not in SCHEDULERS:
        raise UnknownNameError(f"--scheduler {o.scheduler}: unknown scheduler; valid: {', '.join(SCHEDULERS)}")
    if len(metrics) > 1 and o.scheduler == "pbt":
        raise ConfigError("--scheduler pbt optimises one metric; drop the metric list or use asha")
    if not o.resume:
        sweep_dir = _new_sweep_dir(o, space, storage)
        if (sweep_dir / "tuner.pkl").exists() or (sweep_dir / OPTIONS_FILE).exists():
            raise ConfigError(
                f"--name {sweep_dir.name}: a sweep already exists at {sweep_dir}; pass --resume to "
                f"continue it or choose a new --name"
            )
    dataset = str(Path(o.dataset).resolve()) if Path(o.dataset).expanduser().is_dir() else o.dataset
    data_root = str(Path(o.data_root).expanduser().resolve()) if o.data_root else None
    o = replace(
        o,
        space=str(space.path or o.space),
        dataset=dataset,
        data_root=data_root,
        max_epochs=o.max_epochs or space.max_epochs,
        grace_period=o.grace_period or space.grace_period,
    )
    return o, space, sweep_dir, metrics


def _save_options(o: SweepOptions, sweep_dir: Path) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f".{OPTIONS_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(o), indent=2, default=str))
    os.replace(tmp, sweep_dir / OPTIONS_FILE)


def run_sweep(o: SweepOptions) -> SweepResult:
    """Run (or resume) one sweep and return where its results are."""
    o, space, sweep_dir, metrics = prepare(o)
    multi = len(metrics) > 1
    data = load_stage(o.dataset, o.stage, data_root=o.data_root, attributes=o.attributes, seed=o.seed)  # type: ignore[arg-type]
    assert o.max_epochs is not None and o.grace_period is not None
    spec = TrialSpec(
        method=space.method,
        max_epochs=o.max_epochs,
        seed=o.seed,
        cpus_per_trial=o.cpus_per_trial,
        gpus_per_trial=o.gpus_per_trial,
        checkpoint_every=o.checkpoint_every,
        overrides=o.overrides,
    )
    started_ray = not ray.is_initialized()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead of Ray's tables
    if started_ray:
        ray.init(
            address=o.address,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            configure_logging=True,
        )
    try:
        return _fit(o, space, sweep_dir, metrics, multi, data, spec)
    finally:
        if started_ray:
            ray.shutdown()


def _fit(
    o: SweepOptions,
    space: SearchSpace,
    sweep_dir: Path,
    metrics: list[str],
    multi: bool,
    data: StageData,
    spec: TrialSpec,
) -> SweepResult:
    if o.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) < o.gpus_per_trial:
        raise ConfigError(
            f"--gpus-per-trial {o.gpus_per_trial}: the Ray cluster has "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs; use --gpus-per-trial 0 or --address"
        )
    cpus = ray.cluster_resources().get("CPU", 1)
    slots = cpus / o.cpus_per_trial
    if o.gpus_per_trial > 0:
        slots = min(slots, ray.cluster_resources().get("GPU", 0) / o.gpus_per_trial)
    max_concurrent = o.max_concurrent or max(1, int(slots))  # ray#46965: a searcher without it runs one at a time
    sched_metric = space.metric if multi else metrics[0]
    mode = space.mode
    modes: Any = [mode] * len(metrics) if multi else mode

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, spec=spec), {"cpu": o.cpus_per_trial, "gpu": o.gpus_per_trial}
    )
    meta = {
        "sweep": sweep_dir.name,
        "method": space.method,
        "dataset": data.dataset,
        "stage": data.stage,
        "seed": o.seed,
        "synthetic": data.synthetic,
    }
    parquet_cb = ParquetCallback(
        sweep_dir, metric=sched_metric, mode=mode, max_epochs=o.max_epochs or 1, meta=meta, quiet=o.quiet
    )
    if not o.resume:
        _save_options(o, sweep_dir)
    if o.resume:
        if not o.quiet:
            print(f"zsltune: resuming {sweep_dir}", file=sys.stderr)
        tuner = tune.Tuner.restore(str(sweep_dir), trainable, resume_unfinished=True, resume_errored=False)
    else:
        defaults = {**space.defaults(data.dataset)}
        scheduler = make_scheduler(
            o.scheduler,
            space,
            metric=sched_metric,
            mode=mode,
            max_epochs=o.max_epochs or 1,
            grace=o.grace_period or 1,
            seed=o.seed,
        )
        search_alg: Searcher | None
        param_space: dict[str, Any] = {}
        if o.scheduler == "pbt":  # PBT mutates running trials' configs: no model-based searcher
            param_space = {p.name: _tune_domain(p) for p in space.params if not p.condition}
            search_alg = BasicVariantGenerator(
                points_to_evaluate=[{k: v for k, v in defaults.items() if k in param_space}], random_state=o.seed
            )
        else:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            sweep_dir.mkdir(parents=True, exist_ok=True)
            storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
            search_alg = PruneAwareOptunaSearch(
                space=space,
                metric=metrics if multi else metrics[0],
                mode=modes,
                points_to_evaluate=[defaults],
                sampler=make_sampler(o.sampler, seed=o.seed, multi=multi),
                study_name=sweep_dir.name,
                storage=storage,
                max_epochs=o.max_epochs or 1,
            )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=o.num_samples,
                max_concurrent_trials=max_concurrent,
                time_budget_s=o.time_budget,
                reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=sweep_dir.name,
                storage_path=str(sweep_dir.parent),
                failure_config=tune.FailureConfig(max_failures=o.max_failures),
                # PBT clones a leader's checkpoint some time after choosing it: keep them all there
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if o.scheduler == "pbt" else 2),
                callbacks=[parquet_cb],
                verbose=0,
            ),
        )
    if not o.quiet:
        print(
            f"zsltune: sweep {space.method} on {data.dataset} "
            f"({data.stage} stage{', synthetic features' if data.synthetic else ''}): "
            f"{o.num_samples} trials, {o.sampler} + {o.scheduler}, up to {max_concurrent} at once -> {sweep_dir}",
            file=sys.stderr,
            flush=True,
        )
    tuner.fit()
    sink = ResultsSink(sweep_dir, metric=sched_metric, mode=mode)
    rows = list(sink.trials.values())
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("completed", "stopped", "failed", "running")}
    best = _best_row(rows, sched_metric, mode)
    result = SweepResult(
        sweep_dir=sweep_dir, trials_path=sink.trials_path, epochs_path=sink.epochs_path, best=best, counts=counts
    )
    if not o.quiet:
        _print_summary(result, sched_metric)
    return result


def _print_summary(r: SweepResult, metric: str) -> None:
    c = r.counts
    print(
        f"\nzsltune: {sum(c.values())} trials: {c['completed']} completed, {c['stopped']} stopped early, "
        f"{c['failed']} failed"
    )
    if r.best:
        cfg = {k.split("/", 1)[1]: v for k, v in r.best.items() if k.startswith("config/") and v == v}
        print(
            f"best {metric} = {r.best[f'best/{metric}']:.4f} at epoch {r.best.get('best_epoch')} "
            f"(trial {r.best['trial_id']}): {cfg}"
        )
    print(
        f"trials:      {r.trials_path}\nepochs:      {r.epochs_path}\ntensorboard: tensorboard --logdir {r.sweep_dir}"
    )
