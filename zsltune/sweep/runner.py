"""One search: validate everything on the driver, load the method's data, run the Tune job, print the winner."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zsltune.data.protocol import Bundle
from zsltune.data.sources import DataInfo, StageRequest
from zsltune.methods import Trainer, get_method, method_ref
from zsltune.methods.hparams import check_value
from zsltune.results import ResultsSink
from zsltune.space import SearchSpace
from zsltune.storage import human_size
from zsltune.sweep.callbacks import UPLOADED, ParquetCallback, best_row
from zsltune.sweep.driver import Job, run_jobs
from zsltune.sweep.grid import grid_names
from zsltune.sweep.options import (
    OPTIONS_FILE,
    SweepOptions,
    SweepResult,
    TrialSpec,
    flag_of,
    load_options,
    make_callbacks,
    prepare,
    resume_changes,
    save_options,
    storage_location,
    sweep_location,
    trials_run,
)
from zsltune.sweep.search import make_scheduler, make_searcher


def load_data(
    cls: type[Trainer], fixed: dict[str, Any], *, stage: str, options: dict[str, Any] | SweepOptions
) -> Bundle:
    """The stage's bundle from the method's own data source (no Ray): searches and reruns load it the same way."""
    return cls.source(fixed).load(stage_request(stage=stage, options=options))


def stage_request(*, stage: str, options: dict[str, Any] | SweepOptions) -> StageRequest:
    """The data request a sweep's (or a stored sweep's) options make for ``stage``."""
    get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
    return StageRequest(
        dataset=str(get("dataset")),
        stage=stage,
        data_root=get("data_root"),
        attributes=str(get("attributes", "att") or "att"),
        seed=int(_data_seed(get)),
        skip_bad_images=bool(get("skip_bad_images", False)),
        image_size=get("image_size"),
        recall_at=get("recall_at"),
    )


def write_provenance(
    folder: Path,
    source: Any,
    bundle: Any,
    *,
    stage: str,
    options: dict[str, Any] | SweepOptions,
    rerun: bool = False,
    applied: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    """``provenance.json`` for a sweep folder (a resume appends its own record, with the options it ``applied``:
    name -> [stored, new]) and the space's copy; for a rerun, its own record beside the sweep's, which it quotes."""
    from zsltune import provenance

    rec = provenance.record(data=source.provenance(stage_request(stage=stage, options=options), bundle))
    if applied:
        rec["applied"] = {k: list(v) for k, v in applied.items()}
    if rerun:
        provenance.write(folder, {**rec, "sweep": provenance.read(folder)}, name=provenance.RERUN_FILE)
        return
    space = options.get("space") if isinstance(options, dict) else options.space
    path = Path(str(space)) if space else None
    text = path.read_text() if path is not None and path.is_file() else None
    provenance.write(folder, rec, space_text=text)


def _data_seed(get: Any) -> int:
    """The data seed; a sweep stored before ``--data-seed`` existed used its ``seed`` for the data too."""
    v = get("data_seed")
    return int(v if v is not None else (get("seed", 0) or 0))


def trial_spec(cls: type[Trainer], *, name: str, **fields: Any) -> TrialSpec:
    ref, path = method_ref(cls)
    return TrialSpec(method=name, method_ref=ref, method_path=path, **fields)


def check_fixed(cls: type[Trainer], space: SearchSpace, fixed: dict[str, Any], info: DataInfo) -> None:
    """The method's cross-parameter and per-dataset rules on the data loaded (``info``), for the paper defaults
    (the first trial) and every ``--set`` value; one line and nothing started when one is broken."""
    hps = cls.all_hparams()
    fixed = {k: check_value(cls.name, k, hps[k], v, where="--set ") for k, v in fixed.items()}
    cls.check_rules({**cls.default_config(info.dataset), **first_trial(cls, space, info.dataset), **fixed}, info)


def first_trial(cls: type[Trainer], space: SearchSpace, dataset: str) -> dict[str, Any]:
    """The configuration enqueued first: the space's paper defaults, the trainer's where the space gives none."""
    return space.defaults(dataset, fallback=cls.default_config(dataset))


def run_sweep(o: SweepOptions) -> SweepResult:
    """Run (or resume) one sweep and return where its results are."""
    o, space, sweep_dir, metrics = prepare(o)
    extra_callbacks = make_callbacks(o)  # a bad --callback stops here, before anything is written
    loc = sweep_location(o, sweep_dir)  # sweep_dir: its driver-side folder (itself where storage is local)
    remote = loc if loc.local is None else None
    multi = len(metrics) > 1
    cls = get_method(space.method)
    source = cls.source(o.overrides)
    data = load_data(cls, o.overrides, stage=o.stage, options=o)
    info = source.info(data)
    check_fixed(cls, space, o.overrides, info)
    # what this resume applies (more trials, a longer budget, another concurrency): stored -> new
    changes = resume_changes(o, load_options(sweep_dir)) if o.resume else {}
    write_provenance(sweep_dir, source, data, stage=o.stage, options=o, applied=changes)
    loc.upload(["provenance.json", "space.yaml"])
    assert o.max_epochs is not None and o.grace_period is not None
    spec = trial_spec(
        cls,
        name=space.method,
        max_epochs=o.max_epochs,
        seed=o.seed,
        cpus_per_trial=o.cpus_per_trial,
        gpus_per_trial=o.gpus_per_trial,
        checkpoint_every=o.checkpoint_every,
        overrides=o.overrides,
        memory_per_trial=o.memory_per_trial,
        iteration_steps=o.iteration_steps or None,
        metrics=tuple(dict.fromkeys([*metrics, space.metric])),
        budget=o.budget,
        # what the first trial runs: a compute budget's unit is one iteration of it
        reference={**cls.default_config(info.dataset), **first_trial(cls, space, info.dataset), **o.overrides},
    )
    sched_metric = space.metric if multi else metrics[0]
    meta = {
        "sweep": sweep_dir.name,
        "method": space.method,
        "dataset": info.dataset,
        "stage": info.stage,
        "seed": o.seed,
        "data_seed": o.data_seed,
        "synthetic": info.synthetic,
        "source": source.name,
    }
    parquet_cb = ParquetCallback(
        sweep_dir, metric=sched_metric, mode=space.mode, max_epochs=o.max_epochs, meta=meta, fixed=o.overrides,
        quiet=o.quiet, remote=remote,
    )  # fmt: skip
    searcher, param_space = None, {}
    scheduler = None
    grid_trials = 0
    if o.resume:
        if not o.quiet:
            applied = ", ".join(f"{flag_of(k)} {old} -> {new}" for k, (old, new) in changes.items())
            then = f": its started trials finish, then {applied} for the rest" if changes else ""
            print(f"zsltune: resuming {sweep_dir}{then}", file=sys.stderr)
    elif o.is_grid:  # an ablation: every (configuration, seed), full budget, FIFO
        from ray.tune.schedulers import FIFOScheduler

        from zsltune.sweep.grid import grid_levels, grid_param_space, grid_size

        save_options(o, sweep_dir)
        loc.upload([OPTIONS_FILE])
        levels = grid_levels(o.grid, method=space.method, hparams=cls.all_hparams(), space=space)
        grid_trials = grid_size(levels) * o.repeats
        scheduler = FIFOScheduler()
        param_space = grid_param_space(
            levels, first_trial(cls, space, info.dataset), [o.seed + i for i in range(o.repeats)]
        )
    else:
        save_options(o, sweep_dir)
        loc.upload([OPTIONS_FILE])
        scheduler = make_scheduler(
            o.scheduler, space, metric=sched_metric, mode=space.mode, max_epochs=o.max_epochs,
            grace=o.grace_period, seed=o.seed, budget=o.budget,
        )  # fmt: skip
        searcher, param_space = make_searcher(
            o, space, metrics, sweep_dir=sweep_dir, defaults=first_trial(cls, space, info.dataset)
        )

    def announce_what(what: str) -> Callable[[int], None]:
        def announce(max_concurrent: int) -> None:
            if not o.quiet:
                print(
                    f"zsltune: sweep {space.method} on {info.dataset} "
                    f"({info.stage} stage{', synthetic data' if info.synthetic else ''}): "
                    f"{what}, up to {max_concurrent} at once -> {loc.uri}",
                    file=sys.stderr,
                    flush=True,
                )

        return announce

    def announce_scaling(line: str) -> None:
        if not o.quiet:
            print(f"zsltune: {line}", file=sys.stderr, flush=True)

    common: dict[str, Any] = {
        "name": sweep_dir.name,
        "storage": sweep_dir.parent if remote is None else storage_location(o.storage),
        "spec": spec,
        "data": data,
        "max_failures": o.max_failures,
        "address": o.address,
        "announce_scaling": announce_scaling,
    }

    def jobs() -> Iterator[Job]:
        if not changes:  # a new sweep, or a resume as stored
            what = (
                f"grid over {', '.join(grid_names(o.grid)) or 'the default configuration'} x {o.repeats} seed(s) "
                f"= {grid_trials} trials, full budget each"
                if o.is_grid
                else f"{o.num_samples} trials, {o.sampler} + {o.scheduler}"
            ) + (", compute budget" if o.budget == "compute" else "")
            yield Job(
                **common,
                param_space=param_space,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=1 if o.is_grid else o.num_samples,  # a grid: one pass over it
                max_concurrent=o.max_concurrent,
                time_budget=o.time_budget,
                callbacks=(parquet_cb, *extra_callbacks),
                resume=o.resume,
                announce=announce_what(what),
            )
            return
        # Ray fixes a job's sample count and concurrency in its snapshot, and its budget in the pickled TuneConfig:
        # the restored job finishes the trials it started (and reconciles the Parquet files), starting none ...
        yield Job(**common, callbacks=(parquet_cb, *extra_callbacks), resume=True, start_new=False)
        save_options(o, sweep_dir)  # ... then the stored options are the new ones, which a later resume continues
        loc.upload([OPTIONS_FILE])
        yield from _more_trials(o, space, metrics, sweep_dir=sweep_dir, sched_metric=sched_metric, common=common,
            defaults=first_trial(cls, space, info.dataset), parquet=parquet_cb, callbacks=extra_callbacks,
            announce=announce_what)  # fmt: skip

    run_jobs(jobs())
    loc.upload([*UPLOADED, OPTIONS_FILE])  # a remote sweep: its last rows and the final journal
    sink = ResultsSink(sweep_dir, metric=sched_metric, mode=space.mode)
    rows = list(sink.trials.values())
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("completed", "stopped", "failed", "running")}
    result = SweepResult(
        sweep_dir=sweep_dir,
        trials_path=sink.trials_path,
        epochs_path=sink.epochs_path,
        best=best_row(rows, sched_metric, space.mode),
        counts=counts,
        uri=loc.uri,
        size=loc.size(),
    )
    if not o.quiet:
        _print_summary(result, sched_metric)
        _print_baseline(result, data, cls)
    return result


def _more_trials(
    o: SweepOptions,
    space: SearchSpace,
    metrics: list[str],
    *,
    sweep_dir: Path,
    sched_metric: str,
    common: dict[str, Any],
    defaults: dict[str, Any],
    parquet: ParquetCallback,
    callbacks: list[Any],
    announce: Callable[[str], Callable[[int], None]],
) -> Iterator[Job]:
    """The trials a resume adds (``--num-samples`` above those run), with its budget and concurrency: a new Tune job
    in the same folder that continues the sweep's Optuna study and appends to its Parquet files."""
    ran = frozenset(ResultsSink(sweep_dir, metric=sched_metric, mode=space.mode).trials)
    _, first = trials_run(sweep_dir)
    more = (o.num_samples or 0) - len(ran)
    # the budget counts from the sweep's first trial, as Ray's (restored with its snapshot) does
    budget = None if o.time_budget is None else o.time_budget - (time.time() - (first or time.time()))
    if more <= 0 or (budget is not None and budget <= 0):
        if not o.quiet:
            why = f"{len(ran)} of {o.num_samples} trials have run" if more <= 0 else "the time budget has run out"
            print(f"zsltune: {sweep_dir.name}: no trial to add ({why})", file=sys.stderr, flush=True)
        return
    scheduler = make_scheduler(
        o.scheduler, space, metric=sched_metric, mode=space.mode, max_epochs=o.max_epochs or 1,
        grace=o.grace_period or 1, seed=o.seed, budget=o.budget,
    )  # fmt: skip
    searcher, _ = make_searcher(o, space, metrics, sweep_dir=sweep_dir, defaults=defaults, ran=len(ran))
    added = ParquetCallback(
        sweep_dir, metric=parquet.metric, mode=parquet.mode, max_epochs=parquet.max_epochs, meta=parquet.meta,
        fixed=parquet.fixed, quiet=o.quiet, remote=parquet.remote, earlier=ran,
    )  # fmt: skip
    yield Job(
        **common,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=more,
        max_concurrent=o.max_concurrent,
        time_budget=budget,
        callbacks=(added, *callbacks),
        announce=announce(
            f"{more} more trial{'s' * (more != 1)} ({o.num_samples} in all), {o.sampler} + {o.scheduler}"
        ),
    )


def _print_baseline(r: SweepResult, data: Bundle, cls: type[Trainer]) -> None:
    """The winner next to ESZSL (Romera-Paredes & Torr, 2015) on the same stage: like with like, both with every
    knob picked on these validation images."""
    from zsltune.baseline import baseline_report
    from zsltune.data import StageData

    if r.best is None or cls.metric_family != "gzsl" or not isinstance(data, StageData):
        return
    base = baseline_report("eszsl", data)
    win = {k: r.best.get(f"last/{k}") for k in ("H", "H_cal")}
    cells = "  ".join(f"{k} {v:.4f}" for k, v in win.items() if isinstance(v, float))
    print(
        f"winner at its last iteration: {cells}  |  ESZSL on the same {data.stage} stage: "
        f"H {base['H']:.4f}  H_cal {base['H_cal']:.4f}  (H_cal: calibrated stacking; ESZSL's γ, λ and the offset "
        f"picked on these images; its test figures: zsltune analyze report, or zsltune baseline eszsl --stage test)"
    )


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
    where = r.uri or str(r.sweep_dir)
    size, files = r.size or (0, 0)
    print(
        f"trials:      {where}/{r.trials_path.name}\nepochs:      {where}/{r.epochs_path.name}\n"
        f"tensorboard: tensorboard --logdir {where}\nsweep folder: {human_size(size)} in {files} files "
        f"(each trial keeps its newest checkpoint, weights only once it ended without error)"
    )


__all__ = ["check_fixed", "load_data", "run_sweep", "trial_spec"]
