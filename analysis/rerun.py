"""``zsltune analyze rerun``: the top-K configurations of a sweep on the ``test`` stage, N seeds each.

Two steps, in this order, and the order is the point:

1. **Selection** (:func:`plan_rerun`) reads only ``stage == "val"`` rows of ``trials.parquet`` (via
   :func:`analysis.best.rank_trials`), loads no data at all, and freezes the chosen configurations, their best epoch
   counts and the seeds in ``SWEEP/rerun/rerun.json`` before anything else happens.
2. **Evaluation** then loads the ``test`` stage (train on all of trainval, evaluate test_seen / test_unseen) and runs
   one Ray Tune job of its own: FIFO, no model-based searcher, one trial per (configuration, seed), each trained for
   its configuration's best epoch count from the search. The trainable is the sweep's own
   :func:`zsltune.sweep.trial.run_trial`; the grid is ``{"__config__": grid(configs), "__seed__": grid(seeds)}``,
   each config carrying its ``__rank__`` and ``__max_epochs__``: ``run_trial`` merges ``__config__`` and strips the
   reserved ``__x__`` keys before building the trainer.

Results: ``SWEEP/reruns.parquet``, one row per (rank, seed) with the final test metrics, rewritten atomically as each
trial ends; Tune's trial folders (checkpoints, TensorBoard) in ``SWEEP/rerun/``. ``resume=True`` continues an
interrupted rerun with its frozen plan, like ``zsltune run --resume``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.best import rank_trials
from analysis.sweepdir import NOT_METRICS, OPTIONS_FILE, config_of, load_sweep, plain
from zsltune.errors import ConfigError, DataError, ZsltuneError

RERUN_DIR = "rerun"  # the rerun's own Tune experiment, inside the sweep folder
RERUNS_FILE = "reruns.parquet"
PLAN_FILE = "rerun.json"
RESERVED = ("__rank__", "__seed__", "__max_epochs__")


@dataclass
class Selected:
    rank: int
    trial_id: str
    val: float  # the search's validation score of this configuration (at its best epoch)
    epochs: int  # its best epoch count in the search: the rerun trains exactly this many epochs
    config: dict[str, Any]


@dataclass
class RerunPlan:
    sweep: str
    by: str
    mode: str
    top: int
    seeds: list[int]
    selection: list[Selected]
    selected_from: str
    created_at: float = field(default_factory=time.time)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> RerunPlan:
        try:
            doc = json.loads(path.read_text())
            doc["selection"] = [Selected(**s) for s in doc["selection"]]
            return cls(**doc)
        except (OSError, ValueError, TypeError, KeyError) as e:
            msg = f"{path}: unreadable rerun plan ({type(e).__name__}); delete {path.parent} and rerun"
            raise DataError(msg) from None


@dataclass
class RerunResult:
    path: Path  # reruns.parquet
    frame: pd.DataFrame
    plan: RerunPlan


def plan_rerun(sweep_dir: str | Path, *, top: int, seeds: int, by: str | None = None) -> RerunPlan:
    """Choose what to rerun from the val-stage rows alone (no data loaded, no test index anywhere)."""
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    sweep = load_sweep(sweep_dir)
    table = rank_trials(sweep, by)  # stage == "val" rows only, completed trials only
    by, mode = table.attrs["by"], table.attrs["mode"]
    selection = []
    for i, (_, row) in enumerate(table.head(top).iterrows(), start=1):
        best_epoch = plain(row.get("best_epoch"))
        epochs = int(best_epoch) if best_epoch else int(plain(row.get("epochs")) or 1)
        selection.append(
            Selected(
                rank=i,
                trial_id=str(row["trial_id"]),
                val=float(row[f"val/{by}"]),
                epochs=max(1, epochs),
                config=config_of(row, sweep.space_params),
            )
        )
    n_val = int((sweep.trials["stage"] == "val").sum())
    return RerunPlan(
        sweep=str(sweep.path.resolve()),
        by=by,
        mode=mode,
        top=top,
        seeds=list(range(seeds)),
        selection=selection,
        selected_from=f"{n_val} of {len(sweep.trials)} rows of trials.parquet (stage == 'val'), by val {by} ({mode})",
    )


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A rerun trial's config with its ``__config__`` grid value merged in (as run_trial sees it)."""
    return {**{k: v for k, v in config.items() if k != "__config__"}, **config.get("__config__", {})}


def _rerun_dirname(trial: Any) -> str:
    c = _flat(trial.config)
    return f"rank{c.get('__rank__')}_seed{c.get('__seed__')}_{trial.trial_id}"


class RerunCallback:
    """Upserts one row per (rank, seed) into ``reruns.parquet`` as each rerun trial ends (atomic writes)."""

    def __init__(self, path: Path, *, meta: dict[str, Any], plan: RerunPlan, quiet: bool) -> None:
        self.path, self.meta, self.quiet = Path(path), meta, quiet
        self.by = plan.by
        self.source = {s.rank: (s.trial_id, s.val) for s in plan.selection}
        self.total = len(plan.selection) * len(plan.seeds)
        self._rows: dict[tuple[int, int], dict[str, Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:  # pickled into Tune's experiment state: no cached rows
        return {**self.__dict__, "_rows": None}

    @property
    def rows(self) -> dict[tuple[int, int], dict[str, Any]]:
        if self._rows is None:
            self._rows = {}
            if self.path.is_file():  # a resumed rerun keeps what its first run wrote
                for r in pd.read_parquet(self.path).to_dict("records"):
                    self._rows[(int(r["rank"]), int(r["seed"]))] = r
        return self._rows

    def record(self, trial: Any, *, status: str, error: str | None = None) -> None:
        from zsltune.results import clean_value, uniform_columns, write_atomic  # the sweep sink's own helpers

        c = _flat(trial.config)
        rank, seed = int(c["__rank__"]), int(c["__seed__"])
        res = dict(trial.last_result or {})
        src, val = self.source.get(rank, (None, float("nan")))
        row: dict[str, Any] = {
            "rank": rank,
            "seed": seed,
            "trial_id": src,
            "rerun_trial_id": trial.trial_id,
            **self.meta,
            "by": self.by,
            f"val/{self.by}": val,
            "epochs": int(c["__max_epochs__"]),
            "epochs_run": int(res.get("epoch", 0) or 0),
            "status": status,
            "error": error,
            "wall_s": res.get("time_total_s"),
            "device_s": res.get("device_s"),
            "node": res.get("node"),
        }
        for k, v in res.items():
            if k in row or k in NOT_METRICS or k in ("node", "device", "config") or isinstance(v, dict):
                continue
            numeric = isinstance(v, int | float) and not isinstance(v, bool)
            if numeric and not k.startswith(("time_", "iterations_", "training_")):
                row[k] = v
        row.update({f"config/{k}": clean_value(v) for k, v in c.items() if k not in RESERVED})
        self.rows[(rank, seed)] = row
        frame = pd.DataFrame(sorted(self.rows.values(), key=lambda r: (r["rank"], r["seed"])))
        write_atomic(uniform_columns(frame), self.path)
        if not self.quiet:
            shown = "  ".join(f"{m} {row[m]:.4f}" for m in ("H", "U", "S", "recall@1") if isinstance(row.get(m), float))
            print(
                f"zsltune: rerun rank {rank} seed {seed}: {status}{': ' + error if error else ''} {shown} "
                f"({len(self.rows)}/{self.total} done)",
                file=sys.stderr,
                flush=True,
            )


def _tune_callback(cb: RerunCallback) -> Any:
    """Wrap :class:`RerunCallback` as a ``tune.Callback`` (built here so importing this module needs no Ray)."""
    from ray import tune

    from zsltune.sweep.callbacks import error_line

    class _Cb(tune.Callback):
        def __init__(self, inner: RerunCallback) -> None:
            self.inner = inner

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.inner.record(trial, status="completed")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.inner.record(trial, status="failed", error=error_line(trial))

    return _Cb(cb)


def _stored_options(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / OPTIONS_FILE
    if not path.is_file():
        raise DataError(f"{sweep_dir}: no {OPTIONS_FILE} (the sweep's options); reruns need the sweep folder itself")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); restore the file") from None


def rerun(
    sweep_dir: str | Path,
    *,
    top: int | None = None,
    seeds: int | None = None,
    by: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    address: str | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> RerunResult:
    """Rerun the ``top`` best configurations of a sweep on the test stage with ``seeds`` seeds each.

    Defaults: top 3, 5 seeds; resources and retries as the sweep had them. ``resume=True`` continues the
    interrupted rerun in ``SWEEP/rerun`` with its stored plan (``top``/``seeds``/``by`` must then match or be None).
    """
    d = Path(sweep_dir).expanduser()
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory; pass a sweep directory (the folder holding trials.parquet)")
    d = d.resolve()
    exp_dir, plan_path, out = d / RERUN_DIR, d / RERUN_DIR / PLAN_FILE, d / RERUNS_FILE
    started = (exp_dir / "tuner.pkl").is_file()
    if resume:
        if not started or not plan_path.is_file():
            raise ConfigError(f"--resume: {exp_dir} holds no rerun to resume; drop --resume to start one")
        plan = RerunPlan.load(plan_path)
        stored_opts = (("--top", top, plan.top), ("--seeds", seeds, len(plan.seeds)), ("--by", by, plan.by))
        for name, given, stored in stored_opts:
            if given is not None and given != stored:
                raise ConfigError(
                    f"{name} {given}: the interrupted rerun in {exp_dir} used {stored}; drop {name} to resume it, "
                    f"or delete {exp_dir} to start a new rerun"
                )
    else:
        if started:
            raise ConfigError(
                f"{exp_dir}: a rerun already exists; pass --resume to continue it, or delete that folder "
                f"(and {RERUNS_FILE}) to start over"
            )
        load_sweep(d)  # the clear errors first: no Parquet, no trial
        plan = plan_rerun(d, top=3 if top is None else top, seeds=5 if seeds is None else seeds, by=by)
    options = _stored_options(d)
    cpus = float(options.get("cpus_per_trial", 1.0) if cpus_per_trial is None else cpus_per_trial)
    gpus = float(options.get("gpus_per_trial", 0.0) if gpus_per_trial is None else gpus_per_trial)
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus:g}")
    if gpus < 0 or (gpus > 1 and not gpus.is_integer()):
        raise ConfigError(f"--gpus-per-trial must be >= 0 and a whole number above 1, got {gpus:g}")
    if not resume:
        plan.save(plan_path)  # the selection is frozen on disk before any test data exist in this process
        out.unlink(missing_ok=True)  # rows of an older, deleted rerun
    # ---- only from here on: the test stage ------------------------------------------------------------------
    return _run(d, plan, options, cpus=cpus, gpus=gpus, address=address, resume=resume, quiet=quiet)


def _run(
    d: Path,
    plan: RerunPlan,
    options: dict[str, Any],
    *,
    cpus: float,
    gpus: float,
    address: str | None,
    resume: bool,
    quiet: bool,
) -> RerunResult:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from zsltune.data import load_stage
    from zsltune.space import load_space
    from zsltune.sweep import TrialSpec
    from zsltune.sweep.trial import run_trial

    try:
        data = load_stage(
            options["dataset"],
            "test",
            data_root=options.get("data_root"),
            attributes=options.get("attributes", "att"),
            seed=int(options.get("seed", 0)),
        )
    except ZsltuneError as e:
        raise DataError(f"{d}: cannot load the test stage of the sweep's dataset: {e}") from None
    method = load_space(options["space"]).method if options.get("space") else None
    trials = pd.read_parquet(d / "trials.parquet", columns=["trial_id", "method"])
    chosen = trials[trials["trial_id"] == plan.selection[0].trial_id]["method"]
    method = str(chosen.iloc[0]) if len(chosen) else method
    if not method:
        raise DataError(f"{d}: cannot tell which method the sweep ran (no method column, no space in {OPTIONS_FILE})")
    spec = TrialSpec(
        method=method,
        max_epochs=max(s.epochs for s in plan.selection),
        seed=plan.seeds[0],
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        checkpoint_every=int(options.get("checkpoint_every", 1)),
        overrides=dict(options.get("overrides") or {}),
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, spec=spec), {"cpu": cpus, "gpu": gpus})
    meta = {
        "sweep": d.name,
        "method": method,
        "dataset": data.dataset,
        "stage": data.stage,
        "attributes": data.attribute_kind,
        "synthetic": data.synthetic,
    }
    cb = _tune_callback(RerunCallback(d / RERUNS_FILE, meta=meta, plan=plan, quiet=quiet))
    # the grid: every configuration (with its rank and epoch count) x every seed; run_trial unpacks __config__
    configs = [{**s.config, "__rank__": s.rank, "__max_epochs__": s.epochs} for s in plan.selection]
    param_space = {"__config__": tune.grid_search(configs), "__seed__": tune.grid_search(list(plan.seeds))}
    n_trials = len(configs) * len(plan.seeds)
    started_ray = not ray.is_initialized()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if started_ray:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        res = ray.cluster_resources()
        if gpus > 0 and res.get("GPU", 0) < gpus:
            raise ConfigError(
                f"--gpus-per-trial {gpus:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs; "
                f"use --gpus-per-trial 0 or --address"
            )
        slots = res.get("CPU", 1) / cpus
        if gpus > 0:
            slots = min(slots, res.get("GPU", 0) / gpus)
        if resume:
            if not quiet:
                print(f"zsltune: resuming the rerun in {d / RERUN_DIR}", file=sys.stderr)
            tuner = tune.Tuner.restore(str(d / RERUN_DIR), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    scheduler=FIFOScheduler(),
                    num_samples=1,  # one pass over the grid
                    max_concurrent_trials=max(1, int(slots)),
                    reuse_actors=True,
                    trial_dirname_creator=_rerun_dirname,
                ),
                run_config=tune.RunConfig(
                    name=RERUN_DIR,
                    storage_path=str(d),
                    failure_config=tune.FailureConfig(max_failures=int(options.get("max_failures", 2))),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[cb],
                    verbose=0,
                ),
            )
        if not quiet:
            print(
                f"zsltune: rerun of {d.name}: top {len(plan.selection)} by val {plan.by} x {len(plan.seeds)} seeds "
                f"= {n_trials} trials of {method} on the test stage of {data.dataset}"
                f"{' (synthetic features)' if data.synthetic else ''}, up to {max(1, int(slots))} at once",
                file=sys.stderr,
                flush=True,
            )
        tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()
    path = d / RERUNS_FILE
    frame = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    result = RerunResult(path, frame, plan)
    if not quiet:
        _print_summary(result)
    return result


def _print_summary(r: RerunResult) -> None:
    from analysis.stats import summarize

    f = r.frame
    if f.empty:
        print(f"zsltune: no rerun finished; see {r.path.parent / RERUN_DIR}")
        return
    ok = f[f["status"] == "completed"]
    metrics = [m for m in ("H", "U", "S", "zsl_top1", "recall@1") if m in ok]
    s = summarize(ok, metrics, by="rank")
    print(f"\nzsltune: test-stage reruns ({len(ok)} of {len(f)} completed), mean ± t 95% half-width:")
    for rank, g in s.groupby("rank"):
        src = next(x for x in r.plan.selection if x.rank == rank)
        cells = "  ".join(f"{row['metric']} {row['mean']:.4f} ± {row['half']:.4f}" for row in g.to_dict("records"))
        print(f"rank {rank} (trial {src.trial_id}, val {r.plan.by} {src.val:.4f}, n={int(g['n'].max())}): {cells}")
    print(f"reruns: {r.path}")
