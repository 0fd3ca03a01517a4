"""The one place a Tune job is built and run: searches (``zsltune run``) and reruns (``zsltune analyze rerun``).

A :class:`Job` says what to run (the trial spec and the data bundle every trial shares through the object store),
what to try (a searcher and scheduler, or a parameter grid), with which resources, where results go, where Ray
runs (the address rule of :mod:`zsltune.sweep.address`) and the failure and checkpoint policy. :func:`run_job`
starts or joins Ray, checks the resources against the cluster, and reaches the single ``tune.Tuner`` call site.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune

from zsltune.data.protocol import Bundle
from zsltune.errors import ConfigError
from zsltune.storage import Location, parse_storage
from zsltune.sweep.address import resolve_address
from zsltune.sweep.autoscale import autoscaler_limits, max_trials
from zsltune.sweep.callbacks import CheckpointPruner, prune_to_newest
from zsltune.sweep.options import TrialSpec
from zsltune.sweep.overrides import TrialOverrides, grid_space
from zsltune.sweep.search import no_new_trials
from zsltune.sweep.trial import run_trial

GB = 1024**3


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


@dataclass(frozen=True, kw_only=True)
class Job:
    """One Tune job. ``param_space`` (a grid, or Tune domains) and/or ``search_alg`` say what to try."""

    name: str  # the experiment folder under ``storage``
    storage: Path | Location  # a local folder, or a Location (s3://, file://: zsltune.storage)
    spec: TrialSpec
    data: Bundle  # the data source's bundle, shared with every trial through the object store
    param_space: dict[str, Any] = field(default_factory=dict)
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent: int | None = None  # None: as many as the cluster's resources hold
    time_budget: float | None = None
    max_failures: int = 2  # retries of a trial after an infrastructure failure (a lost node, out of memory)
    callbacks: tuple[Any, ...] = ()
    dirname: Callable[[Any], str] = trial_dirname
    resume: bool = False
    resume_errored: bool = False
    #: False with ``resume``: finish the trials Ray's snapshot holds and start none (a resume that changes the
    #: sample count, budget or concurrency runs the rest as a new job: zsltune.sweep.runner)
    start_new: bool = True
    address: str | None = None
    #: called on the driver once Ray is up, before the trials start, with the concurrency limit (progress lines)
    announce: Callable[[int], None] | None = None
    #: called after ``announce`` with a line on the cluster's autoscaler, where it has one
    announce_scaling: Callable[[str], None] | None = None


def run_job(job: Job) -> None:
    """Run (or resume) ``job`` to the end; starts a private Ray or joins a cluster, and shuts down what it started."""
    run_jobs([job])


def run_jobs(jobs: Iterable[Job]) -> None:
    """Run ``jobs`` one after another on one Ray (the first job's address and runtime environment); a generator may
    build each job once the one before has ended. No job: Ray is not started."""
    it = iter(jobs)
    job = next(it, None)
    if job is None:
        return
    started_ray = not ray.is_initialized()
    address = resolve_address(job.address)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead of Ray's tables
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")  # experiment snapshots at least this often
    if started_ray:
        ray.init(
            address=address,  # None: Ray's default joins a live `ray start` cluster
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            configure_logging=True,
            runtime_env=_import_env(job.spec),
        )
    try:
        while job is not None:
            _fit(job, probe=not (started_ray and address == "local"))  # a private Ray has no autoscaler to ask
            job = next(it, None)
    finally:
        if started_ray:
            ray.shutdown()


def _import_env(spec: TrialSpec) -> dict[str, Any] | None:
    """Workers import a method defined outside the installed packages (a user's module, a test module) from the
    same folder as the driver: it goes first on their PYTHONPATH (unpickling the data bundle may need it too)."""
    if not spec.method_path:
        return None
    paths = [spec.method_path, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _slots(spec: TrialSpec, *, autoscaler: bool = True) -> tuple[int, dict[str, float], str]:
    """How many trials the cluster holds at once, each trial's Tune resources, and a line on an autoscaler.

    Where the cluster autoscales (``autoscaler``: probe for one), concurrency follows what its node types hold at
    their maximum counts, however few nodes run now: trials beyond today's resources wait as pending, which is the
    demand the autoscaler reacts to. Without an autoscaler, what the cluster holds now; a clear error if no trial
    could ever start (no node type fits one, or no resources anywhere).
    """
    res = ray.cluster_resources()
    gpus, cpus = spec.gpus_per_trial, spec.cpus_per_trial
    memory = int(spec.memory_per_trial * GB) if spec.memory_per_trial else 0  # bytes, Ray's unit
    resources = {"cpu": cpus, "gpu": gpus}
    if memory:  # the scheduler packs trials by it; run_trial enforces it as a cap
        resources["memory"] = memory
    slots = res.get("CPU", 1) / cpus
    if gpus > 0:
        slots = min(slots, res.get("GPU", 0) / gpus)
    if memory:
        slots = min(slots, res.get("memory", 0) / memory)
    limits = autoscaler_limits() if autoscaler else None
    if limits is not None:
        most = max_trials(limits, cpus=cpus, gpus=gpus, memory=memory)
        if most < 1 and slots < 1:
            raise ConfigError(
                f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}"
                f"{f' --memory-per-trial {spec.memory_per_trial:g}' if memory else ''}: no node the cluster's "
                f"autoscaler may start fits one trial ({limits.describe()}); lower them or add a node type"
            )
        now = f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"
        note = (
            f"autoscaling cluster ({limits.source}): up to {limits.describe()}; {now} now; trials wait as pending "
            f"until the autoscaler adds nodes (`ray status` shows them)"
        )
        return max(1, most, int(slots)), resources, note
    if gpus > 0 and res.get("GPU", 0) < gpus:
        raise ConfigError(
            f"--gpus-per-trial {gpus:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs and no autoscaler; use "
            f"--gpus-per-trial 0 or --address"
        )
    if memory and res.get("memory", 0) < memory:
        raise ConfigError(
            f"--memory-per-trial {spec.memory_per_trial:g}: the Ray cluster has "
            f"{res.get('memory', 0) / GB:.1f} GB of memory for tasks; lower it"
        )
    return max(1, int(slots)), resources, ""


def _fit(job: Job, *, probe: bool = True) -> None:
    slots, resources, scaling = _slots(job.spec, autoscaler=probe)
    max_concurrent = job.max_concurrent or slots  # ray#46965: a searcher without it runs one trial at a time
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=job.data, spec=job.spec), resources)
    loc = job.storage if isinstance(job.storage, Location) else parse_storage(str(job.storage))
    # local storage: Ray's own local filesystem, as before; remote: the pyarrow filesystem reaching the bucket
    fs = None if loc.local is not None else loc.fs
    exp = loc.child(job.name)
    if job.resume:
        tuner = tune.Tuner.restore(
            exp.path, trainable, resume_unfinished=True, resume_errored=job.resume_errored, storage_filesystem=fs
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=job.param_space,
            tune_config=tune.TuneConfig(
                search_alg=job.search_alg,
                scheduler=job.scheduler,
                num_samples=job.num_samples,
                max_concurrent_trials=max_concurrent,
                time_budget_s=job.time_budget,
                reuse_actors=True,
                trial_dirname_creator=job.dirname,
            ),
            run_config=tune.RunConfig(
                name=job.name,
                storage_path=loc.path,
                storage_filesystem=fs,
                failure_config=tune.FailureConfig(max_failures=job.max_failures),
                # Ray's num_to_keep deletes a checkpoint the last experiment snapshot may still point at (and
                # --resume after a driver crash then fails): CheckpointPruner prunes only aged ones
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                callbacks=[*job.callbacks, CheckpointPruner()],
                verbose=0,
            ),
        )
    if job.announce is not None:
        job.announce(max_concurrent)
    if scaling and job.announce_scaling is not None:
        job.announce_scaling(scaling)
    with contextlib.nullcontext() if job.start_new else no_new_trials():
        tuner.fit()
    # fit() returns after its last experiment snapshot reached storage: no trial needs more than its newest
    prune_to_newest(loc.fs, exp.path)


class RecorderCallback(tune.Callback):
    """Hands each finished trial to a plain-Python recorder (``record(trial, status=, error=)``): reruns use it."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.recorder.record(trial, status="completed")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from zsltune.sweep.callbacks import error_line

        self.recorder.record(trial, status="failed", error=error_line(trial))


def run_grid(
    *,
    name: str,
    storage: Path | Location,
    spec: TrialSpec,
    data: Bundle,
    variants: Sequence[TrialOverrides],
    seeds: Sequence[int],
    recorder: Any,
    dirname: Callable[[Any], str] = trial_dirname,
    max_failures: int = 2,
    resume: bool = False,
    address: str | None = None,
    announce: Callable[[int], None] | None = None,
) -> None:
    """One trial per (configuration, seed), FIFO, no searcher: analysis reruns (and repeats of fixed configs).

    Each trial's config holds only its variant with the seed set (:func:`zsltune.sweep.overrides.grid_space`):
    the trainable merges the variant's configuration and applies its seed, epochs and knobs.
    """
    from ray.tune.schedulers import FIFOScheduler

    run_job(
        Job(
            name=name,
            storage=storage,
            spec=spec,
            data=data,
            param_space=grid_space(variants=variants, seeds=seeds),
            scheduler=FIFOScheduler(),
            num_samples=1,  # one pass over the grid
            max_failures=max_failures,
            callbacks=(RecorderCallback(recorder),),
            dirname=dirname,
            resume=resume,
            resume_errored=True,
            address=address,
            announce=announce,
        )
    )
