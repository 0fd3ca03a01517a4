"""Build the ``tune.Tuner`` of one sweep, run or resume it, and print where the results are."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search import BasicVariantGenerator, Searcher

from zsltune.data import StageData, load_stage
from zsltune.errors import ConfigError
from zsltune.methods import get_method
from zsltune.results import ResultsSink
from zsltune.space import SearchSpace
from zsltune.sweep.address import resolve_address
from zsltune.sweep.callbacks import CheckpointPruner, ParquetCallback, best_row
from zsltune.sweep.options import SweepOptions, SweepResult, TrialSpec, prepare, save_options
from zsltune.sweep.search import PruneAwareOptunaSearch, make_sampler, make_scheduler, tune_domain
from zsltune.sweep.trial import run_trial


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def run_sweep(o: SweepOptions) -> SweepResult:
    """Run (or resume) one sweep and return where its results are."""
    o, space, sweep_dir, metrics = prepare(o)
    multi = len(metrics) > 1
    text = True if get_method(space.method).needs_text else None  # per-image captions, e.g. CLAREL
    data = load_stage(o.dataset, o.stage, data_root=o.data_root, attributes=o.attributes, seed=o.seed, text=text)  # type: ignore[arg-type]
    assert o.max_epochs is not None and o.grace_period is not None
    spec = TrialSpec(
        method=space.method,
        max_epochs=o.max_epochs,
        seed=o.seed,
        cpus_per_trial=o.cpus_per_trial,
        gpus_per_trial=o.gpus_per_trial,
        checkpoint_every=o.checkpoint_every,
        overrides=o.overrides,
        memory_per_trial=o.memory_per_trial,
    )
    started_ray = not ray.is_initialized()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead of Ray's tables
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")  # experiment snapshots at least this often
    if started_ray:
        ray.init(
            address=resolve_address(o.address),  # None: Ray's default joins a live `ray start` cluster
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
    memory = int(o.memory_per_trial * 1024**3) if o.memory_per_trial else 0  # bytes, Ray's unit
    if memory and ray.cluster_resources().get("memory", 0) < memory:
        raise ConfigError(
            f"--memory-per-trial {o.memory_per_trial:g}: the Ray cluster has "
            f"{ray.cluster_resources().get('memory', 0) / 1024**3:.1f} GB of memory for tasks; lower it"
        )
    cpus = ray.cluster_resources().get("CPU", 1)
    slots = cpus / o.cpus_per_trial
    if o.gpus_per_trial > 0:
        slots = min(slots, ray.cluster_resources().get("GPU", 0) / o.gpus_per_trial)
    if memory:
        slots = min(slots, ray.cluster_resources().get("memory", 0) / memory)
    max_concurrent = o.max_concurrent or max(1, int(slots))  # ray#46965: a searcher without it runs one at a time
    sched_metric = space.metric if multi else metrics[0]
    mode = space.mode
    modes: Any = [mode] * len(metrics) if multi else mode

    resources = {"cpu": o.cpus_per_trial, "gpu": o.gpus_per_trial}
    if memory:  # the scheduler packs trials by it; run_trial enforces it as a cap
        resources["memory"] = memory
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, spec=spec), resources)
    meta = {
        "sweep": sweep_dir.name,
        "method": space.method,
        "dataset": data.dataset,
        "stage": data.stage,
        "seed": o.seed,
        "synthetic": data.synthetic,
    }
    parquet_cb = ParquetCallback(
        sweep_dir,
        metric=sched_metric,
        mode=mode,
        max_epochs=o.max_epochs or 1,
        meta=meta,
        fixed=o.overrides,
        quiet=o.quiet,
    )
    if not o.resume:
        save_options(o, sweep_dir)
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
            param_space = {p.name: tune_domain(p) for p in space.params if not p.condition}
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
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointPruner prunes
                callbacks=[parquet_cb, CheckpointPruner()],
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
    best = best_row(rows, sched_metric, mode)
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
