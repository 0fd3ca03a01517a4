"""``zsltune analyze rerun``: the top-K configurations of a sweep on the ``test`` stage, N seeds each.

Two steps, in this order, and the order is the point:

1. **Selection** (:func:`plan_rerun`) reads only ``stage == "val"`` rows of ``trials.parquet`` (via
   :func:`zsltune.analysis.best.rank_trials`), loads no data at all, and freezes the chosen configurations, their
   best epoch counts and the seeds in ``SWEEP/rerun/rerun.json`` before anything else happens.
   With each configuration it freezes its **budget** and its **knobs**:
   - budget: the epochs the search selected (``best_epoch``) on the search's schedule (``max_epochs`` is the
     horizon of the learning-rate schedule, as in the search; the trial stops after the selected epoch). The unit
     is the search's: an epoch is one pass over the training images, so on the test stage (all of trainval: the
     val stage's training images plus the held-out share and the val classes' images) the same epochs are more
     steps, in proportion to the images, as when a paper retrains on trainval for the epochs chosen on val;
   - knobs (the method's ``knobs``: the calibrated-stacking ``gamma`` of every GZSL method, CLAREL's ``alpha``):
     the values the search chose on validation at the selected epoch, applied unchanged at the test stage.
2. **Evaluation** then loads the ``test`` stage through the method's own data source (train on all of trainval,
   evaluate test_seen / test_unseen; CLAREL with its per-image captions, as in its search) and runs one grid job
   with the sweep's own driver (:func:`zsltune.sweep.run_grid`: the same trainable, address rule, resources,
   failure and checkpoint policy as ``zsltune run``): one trial per (configuration, seed).

Results: ``SWEEP/reruns.parquet``, one row per (rank, seed) with the final test metrics, rewritten atomically as each
trial ends: the headline ``H_cal`` / ``H_alpha`` at the knobs chosen on validation (``gamma``, ``alpha``: the frozen
values), the test-picked values only in ``oracle_*`` columns; Tune's trial folders (checkpoints, TensorBoard) in
``SWEEP/rerun/``. ``resume=True`` continues an interrupted rerun with its frozen plan, like ``zsltune run --resume``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from zsltune.analysis.best import rank_trials
from zsltune.analysis.sweepdir import NOT_METRICS, OPTIONS_FILE, config_of, load_sweep, plain, space_source
from zsltune.errors import ConfigError, DataError, ZsltuneError
from zsltune.metrics import H_ALPHA, H_CAL, ZSL_TOP1, H, S, U, recall_key

if TYPE_CHECKING:
    from zsltune.sweep.options import SweepOptions
    from zsltune.sweep.overrides import TrialOverrides

RERUN_DIR = "rerun"  # the rerun's own Tune experiment, inside the sweep folder
RERUNS_FILE = "reruns.parquet"
PLAN_FILE = "rerun.json"


@dataclass
class Selected:
    rank: int
    trial_id: str
    val: float  # the search's validation score of this configuration (at its best epoch)
    epochs: int  # its best epoch count in the search: the rerun trains exactly this many epochs
    config: dict[str, Any]
    schedule_epochs: int = 0  # the search's max_epochs: the horizon of the lr schedule (0: = epochs)
    knobs: dict[str, float] = field(default_factory=dict)  # chosen on validation at the selected epoch, frozen
    budget_unit: str = "epoch"


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
    opts = sweep.options if isinstance(sweep.options, dict) else {}
    horizon, steps = int(opts.get("max_epochs") or 0), int(opts.get("iteration_steps") or 0)
    knob_names = _knob_names(sweep)
    # a compute budget (--budget compute) gave each trial its own horizon: the length of its lr schedule
    col = sweep.trials.get("last/horizon")
    own = (
        {}
        if col is None
        else {str(t): int(h) for t, h in zip(sweep.trials["trial_id"], col, strict=True) if h == h and h}
    )
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
                schedule_epochs=max(own.get(str(row["trial_id"])) or horizon, epochs, 1),
                budget_unit=f"{steps} steps" if steps else "epoch",
                knobs={k: float(row[f"val/{k}"]) for k in knob_names if _finite(row.get(f"val/{k}"))},
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


def _overrides(trial: Any) -> tuple[dict[str, Any], TrialOverrides]:
    """A rerun trial's configuration (as run_trial sees it) and its overrides: rank, seed, budget."""
    from zsltune.sweep.overrides import split_config  # here: zsltune.sweep imports Ray

    sampled, over = split_config(trial.config)
    return over.hyperparameters(sampled), over


def _rerun_dirname(trial: Any) -> str:
    _, over = _overrides(trial)
    return f"rank{over.rank}_seed{over.seed}_{trial.trial_id}"


class RerunCallback:
    """Upserts one row per (rank, seed) into ``reruns.parquet`` as each rerun trial ends (atomic writes)."""

    def __init__(self, path: Path, *, meta: dict[str, Any], plan: RerunPlan, quiet: bool) -> None:
        self.path, self.meta, self.quiet = Path(path), meta, quiet
        self.by = plan.by
        self.source = {s.rank: (s.trial_id, s.val) for s in plan.selection}
        self.knobs = {s.rank: dict(s.knobs) for s in plan.selection}
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

        c, over = _overrides(trial)
        if over.rank is None or over.seed is None:
            raise DataError(f"rerun trial {trial.trial_id}: its config carries no rank or seed")
        rank, seed = over.rank, over.seed
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
            "epochs": int(over.stop_epoch or over.max_epochs or 0),
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
        row.update({f"val_knob/{k}": v for k, v in self.knobs.get(rank, {}).items()})  # frozen from validation
        row.update({f"config/{k}": clean_value(v) for k, v in c.items()})
        self.rows[(rank, seed)] = row
        frame = pd.DataFrame(sorted(self.rows.values(), key=lambda r: (r["rank"], r["seed"])))
        write_atomic(uniform_columns(frame), self.path)
        if not self.quiet:
            keys = (H, U, S, H_CAL, H_ALPHA, recall_key(1))
            shown = "  ".join(f"{m} {row[m]:.4f}" for m in keys if isinstance(row.get(m), float))
            print(
                f"zsltune: rerun rank {rank} seed {seed}: {status}{': ' + error if error else ''} {shown} "
                f"({len(self.rows)}/{self.total} done)",
                file=sys.stderr,
                flush=True,
            )


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
    from zsltune.sweep.options import check_resources, load_options  # here: zsltune.sweep imports Ray

    # the sweep's options as --resume loads them; the resources given here replace the sweep's, checked as it checks
    options = load_options(d)
    given = {"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial}
    options = replace(options, **{k: v for k, v in given.items() if v is not None})
    check_resources(options)
    method = _method_of(d, plan, options)
    if not resume:
        plan.save(plan_path)  # the selection is frozen on disk before any test data exist in this process
        out.unlink(missing_ok=True)  # rows of an older, deleted rerun
    # ---- only from here on: the test stage ------------------------------------------------------------------
    return _run(d, plan, options, method, address=address, resume=resume, quiet=quiet)


def _knob_names(sweep: Any) -> tuple[str, ...]:
    from zsltune.methods import get_method

    method = str(sweep.trials["method"].dropna().iloc[0]) if "method" in sweep.trials and len(sweep.trials) else ""
    try:
        return get_method(method).knobs if method else ()
    except ZsltuneError:
        return ()


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _method_of(d: Path, plan: RerunPlan, options: SweepOptions) -> str:
    from zsltune.space import load_space

    trials = pd.read_parquet(d / "trials.parquet", columns=["trial_id", "method"])
    chosen = trials[trials["trial_id"] == plan.selection[0].trial_id]["method"]
    if len(chosen):
        return str(chosen.iloc[0])
    source = space_source(d, {"space": options.space})
    if source:
        return load_space(source).method
    raise DataError(f"{d}: cannot tell which method the sweep ran (no method column, no space in {OPTIONS_FILE})")


def _run(
    d: Path,
    plan: RerunPlan,
    options: SweepOptions,
    method: str,
    *,
    address: str | None,
    resume: bool,
    quiet: bool,
) -> RerunResult:
    from zsltune.methods import get_method
    from zsltune.sweep import load_data, run_grid, trial_spec, write_provenance
    from zsltune.sweep.overrides import TrialOverrides

    cls = get_method(method)
    overrides = dict(options.overrides or {})
    try:  # the method's own data source, as in the search (CLAREL: with its per-image captions)
        data = load_data(cls, overrides, stage="test", options=options)
    except ZsltuneError as e:
        raise DataError(f"{d}: cannot load the test stage of the sweep's dataset: {e}") from None
    info = cls.source(overrides).info(data)
    write_provenance(d, cls.source(overrides), data, stage="test", options=options, rerun=True)
    spec = trial_spec(
        cls,
        name=method,
        max_epochs=max(s.schedule_epochs or s.epochs for s in plan.selection),
        seed=plan.seeds[0],
        cpus_per_trial=float(options.cpus_per_trial),
        gpus_per_trial=float(options.gpus_per_trial),
        checkpoint_every=int(options.checkpoint_every),
        overrides=overrides,
        memory_per_trial=options.memory_per_trial,
        iteration_steps=int(options.iteration_steps or 0) or None,  # the search's unit: same steps per iteration
    )
    meta = {
        "sweep": d.name,
        "method": method,
        "dataset": info.dataset,
        "stage": info.stage,
        "attributes": options.attributes,
        "synthetic": info.synthetic,
        "source": cls.source(overrides).name,
    }
    recorder = RerunCallback(d / RERUNS_FILE, meta=meta, plan=plan, quiet=quiet)
    # the grid: every configuration (with its rank, budget and frozen knobs) x every seed
    variants = [
        TrialOverrides(
            config=dict(s.config),
            rank=s.rank,
            max_epochs=s.schedule_epochs or s.epochs,
            stop_epoch=s.epochs,
            knobs=dict(s.knobs),
        )
        for s in plan.selection
    ]
    n_trials = len(variants) * len(plan.seeds)

    def announce(max_concurrent: int) -> None:
        if quiet:
            return
        if resume:
            print(f"zsltune: resuming the rerun in {d / RERUN_DIR}", file=sys.stderr)
        print(
            f"zsltune: rerun of {d.name}: top {len(plan.selection)} by val {plan.by} x {len(plan.seeds)} seeds "
            f"= {n_trials} trials of {method} on the test stage of {info.dataset}"
            f"{' (synthetic data)' if info.synthetic else ''}, up to {max_concurrent} at once",
            file=sys.stderr,
            flush=True,
        )

    run_grid(
        name=RERUN_DIR,
        storage=d,
        spec=spec,
        data=data,
        variants=variants,
        seeds=list(plan.seeds),
        recorder=recorder,
        dirname=_rerun_dirname,
        max_failures=int(options.max_failures),
        resume=resume,
        address=address,
        announce=announce,
    )
    path = d / RERUNS_FILE
    frame = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    result = RerunResult(path, frame, plan)
    if not quiet:
        _print_summary(result)
    return result


def _print_summary(r: RerunResult) -> None:
    from zsltune.analysis.stats import summarize

    f = r.frame
    if f.empty:
        print(f"zsltune: no rerun finished; see {r.path.parent / RERUN_DIR}")
        return
    ok = f[f["status"] == "completed"]
    metrics = [m for m in (H, U, S, H_CAL, H_ALPHA, ZSL_TOP1, recall_key(1)) if m in ok]
    s = summarize(ok, metrics, by="rank")
    print(f"\nzsltune: test-stage reruns ({len(ok)} of {len(f)} completed), mean ± t 95% half-width:")
    for rank, g in s.groupby("rank"):
        src = next(x for x in r.plan.selection if x.rank == rank)
        cells = "  ".join(f"{row['metric']} {row['mean']:.4f} ± {row['half']:.4f}" for row in g.to_dict("records"))
        print(f"rank {rank} (trial {src.trial_id}, val {r.plan.by} {src.val:.4f}, n={int(g['n'].max())}): {cells}")
    print(f"reruns: {r.path}")
