"""Sweep options: what ``zsltune run`` takes, validated without Ray, and stored for ``--resume``."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from zsltune.data import STAGES
from zsltune.errors import ConfigError, DataError, UnknownNameError, ZsltuneError
from zsltune.methods import Trainer, get_method, import_object
from zsltune.methods.hparams import check_space, check_value
from zsltune.space import SearchSpace, load_space
from zsltune.storage import Location, check_writable, parse_storage
from zsltune.sweep.budget import BUDGETS
from zsltune.sweep.search import SCHEDULERS, make_sampler

#: trials of a search when ``--num-samples`` is not given
DEFAULT_SAMPLES = 8


def default_storage() -> Path:
    return Path(os.environ.get("ZSLTUNE_RESULTS", Path.home() / "zsltune_results")).expanduser()


def storage_location(storage: str | None) -> Location:
    """``--storage``, else ``$ZSLTUNE_RESULTS``, else ``~/zsltune_results``, parsed (a path, file:// or s3://)."""
    if storage:
        return parse_storage(storage, option="--storage")
    if os.environ.get("ZSLTUNE_RESULTS"):
        return parse_storage(os.environ["ZSLTUNE_RESULTS"], option="ZSLTUNE_RESULTS=")
    return parse_storage(str(Path.home() / "zsltune_results"))


def sweep_location(o: SweepOptions, sweep_dir: Path) -> Location:
    """Where the sweep of prepared options ``o`` lives (``sweep_dir`` is its driver-side folder)."""
    return storage_location(o.storage).child(sweep_dir.name)


@dataclass
class SweepOptions:
    """Everything ``zsltune run`` takes; validated by :func:`validate`."""

    space: str
    dataset: str = "demo"
    data_root: str | None = None
    stage: str = "val"
    attributes: str = "att"
    num_samples: int | None = None  # trials; None: DEFAULT_SAMPLES (a resume: the stored count)
    sampler: str = "tpe"
    scheduler: str = "asha"
    metric: str | None = None  # "H", or "U,S" for a multi-objective study
    profile: str | None = None  # first trial from the space's named profile (e.g. "paper") instead of its defaults
    defaults_first: bool = True  # False: every trial from the sampler (no defaults or profile enqueued first)
    max_epochs: int | None = None  # iterations per trial (compute budget: iterations of the space's defaults)
    grace_period: int | None = None
    budget: str = "iterations"  # what max_epochs and grace count: Tune iterations, or compute (zsltune.sweep.budget)
    iteration_steps: int | None = None  # steps per iteration; 0: an epoch; None: the space's
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    memory_per_trial: float | None = None  # GB of host memory per trial: a cap and a Ray resource
    max_concurrent: int | None = None
    time_budget: float | None = None
    name: str | None = None
    storage: str | None = None
    resume: bool = False
    seed: int = 0  # the search's and the trials' seed
    data_seed: int | None = None  # synthetic data and validation hold-out; None: 0 (stored sweeps: their seed)
    address: str | None = None
    max_failures: int = 2
    checkpoint_every: int = 1
    quiet: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed hyperparameters (e.g. tiny sizes in tests)
    grid: list[str] = field(default_factory=list)  # an ablation: NAME or NAME=V1,V2 (zsltune.sweep.grid)
    repeats: int = 1  # seeds per grid configuration
    skip_bad_images: bool = False  # image data: leave corrupt images out (recorded beside the cache)
    image_size: int | None = None  # image data: the decoded cache's side; None: the space's, else the data's own
    recall_at: str | None = None  # retrieval: Recall@K list, a preset or K,K,...; None: the space's, else by dataset
    callbacks: list[str] = field(default_factory=list)  # extra Tune callbacks, "module:Class" importable here
    callback_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of every extra callback

    @property
    def is_grid(self) -> bool:
        """A grid of fixed configurations × seeds instead of a search (``--grid`` or ``--repeats`` > 1)."""
        return bool(self.grid) or self.repeats > 1


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a job shares, besides the data."""

    method: str  # the registry name (progress lines, Parquet)
    max_epochs: int
    seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    checkpoint_every: int
    overrides: dict[str, Any]
    memory_per_trial: float | None = None  # GB; None: no cap
    iteration_steps: int | None = None  # optimisation steps per Tune iteration; None: an epoch
    #: where a trial imports its trainer: ``module:QualName``, and a sys.path root for a module outside the
    #: installed packages (a user's or a test's module), so Ray workers find it too
    method_ref: str = ""
    method_path: str | None = None
    #: the metrics the scheduler and searcher read: a diverged trial's last result holds each of them as NaN
    metrics: tuple[str, ...] = ()
    #: "compute": each trial runs until it has spent max_epochs iterations of ``reference`` (zsltune.sweep.budget)
    budget: str = "iterations"
    #: the space's default configuration, complete (the first trial's), whose iteration is a compute budget's unit
    reference: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    sweep_dir: Path
    trials_path: Path
    epochs_path: Path
    best: dict[str, Any] | None
    counts: dict[str, int]
    uri: str = ""  # where the sweep lives (the folder's path, or s3://...); sweep_dir is its driver-side copy
    size: tuple[int, int] | None = None  # (bytes, files) of the sweep folder when the sweep ended


def _resource_checks(o: SweepOptions) -> list[tuple[bool, str]]:
    return [
        (o.cpus_per_trial > 0, f"--cpus-per-trial must be > 0, got {o.cpus_per_trial}"),
        (o.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0, got {o.gpus_per_trial}"),
        (
            o.memory_per_trial is None or o.memory_per_trial > 0,
            f"--memory-per-trial must be > 0 GB, got {o.memory_per_trial}",
        ),
        (
            o.gpus_per_trial <= 1 or float(o.gpus_per_trial).is_integer(),
            f"--gpus-per-trial above 1 must be a whole number, got {o.gpus_per_trial}",
        ),
    ]


def check_resources(o: SweepOptions) -> None:
    """What one trial asks of a node (``--cpus-per-trial``, ``--gpus-per-trial``, ``--memory-per-trial``), checked
    as a search checks them (:func:`prepare`); a test-stage rerun checks its own the same way."""
    for ok, msg in _resource_checks(o):
        if not ok:
            raise ConfigError(msg)


def _check_options(o: SweepOptions, space: SearchSpace, trainer_cls: type[Trainer]) -> None:
    hps = trainer_cls.all_hparams()
    check_space(space.method, hps, space)  # bounds, choices and per-dataset defaults against the declarations
    for k, v in o.overrides.items():
        if k not in hps:
            raise ConfigError(f"--set {k}: not a hyperparameter of {space.method}; valid: {', '.join(sorted(hps))}")
        check_value(space.method, k, hps[k], v, where=f"--set {k}={v}: ")
    if o.is_grid:
        from zsltune.sweep.grid import grid_levels, grid_names

        both = sorted(set(grid_names(o.grid)) & set(o.overrides))
        if both:
            raise ConfigError(f"--grid {both[0]} and --set {both[0]}: a parameter is either varied or fixed, not both")
        grid_levels(o.grid, method=space.method, hparams=hps, space=space)
    if not o.defaults_first and o.profile:
        raise ConfigError(
            f"--profile {o.profile} and --no-defaults-first: the profile is the first trial; drop one of them"
        )
    if not o.defaults_first and o.is_grid:
        raise ConfigError(
            "--no-defaults-first applies to a search; a --grid fixes every other parameter at its default"
        )
    if o.stage == "test":
        raise ConfigError(
            "--stage test: a search never runs on the test stage (that would tune on test); search on val, then "
            "run `zsltune analyze rerun SWEEP_DIR` to retrain the selected configurations on the test stage"
        )
    checks = [
        (o.num_samples is None or o.num_samples >= 1, f"--num-samples must be >= 1, got {o.num_samples}"),
        (o.repeats >= 1, f"--repeats must be >= 1 (seeds per grid configuration), got {o.repeats}"),
        *_resource_checks(o),
        (o.max_concurrent is None or o.max_concurrent >= 1, f"--max-concurrent must be >= 1, got {o.max_concurrent}"),
        (o.time_budget is None or o.time_budget > 0, f"--time-budget must be > 0 seconds, got {o.time_budget}"),
        (o.max_epochs is None or o.max_epochs >= 1, f"--max-epochs must be >= 1, got {o.max_epochs}"),
        (
            o.iteration_steps is None or o.iteration_steps >= 0,
            f"--iteration-steps must be >= 0 (0: an epoch), got {o.iteration_steps}",
        ),
        (o.image_size is None or o.image_size >= 16, f"--image-size must be >= 16 pixels, got {o.image_size}"),
        (o.max_failures >= 0, f"--max-failures must be >= 0, got {o.max_failures}"),
        (o.checkpoint_every >= 1, f"--checkpoint-every must be >= 1, got {o.checkpoint_every}"),
        (o.stage in STAGES, f"--stage must be one of {', '.join(STAGES)}, got {o.stage}"),
        (o.budget in BUDGETS, f"--budget must be one of {', '.join(BUDGETS)}, got {o.budget}"),
        (o.resume or o.name is None or "/" not in o.name, f"--name must be a plain name, got {o.name}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    if o.recall_at is not None:
        from zsltune.data.image_source import recall_ks

        recall_ks(o.recall_at, o.dataset)  # a bad list stops here, before anything is written
        if trainer_cls.metric_family != "retrieval":
            raise ConfigError(f"--recall-at applies to retrieval methods (deml); {space.method} reports GZSL metrics")
    if o.image_size is not None and not trainer_cls.source({}).images:
        raise ConfigError(f"--image-size applies to methods on raw images (deml, sgma); {space.method} uses features")


OPTIONS_FILE = "zsltune.json"
#: options a resume may change; the rest come from the sweep's OPTIONS_FILE
RESUME_KEEPS = ("name", "storage", "resume", "quiet", "address")
#: options a resume applies when given with another value (more trials, a longer budget, another concurrency): the
#: stored ones are updated, and the trials still to run start as a new Tune job (zsltune.sweep.runner)
RESUME_APPLIES = ("num_samples", "time_budget", "max_concurrent")


#: the driver-side files of a sweep, uploaded to remote storage as they change (and fetched back by --resume)
DRIVER_FILES = (OPTIONS_FILE, "trials.parquet", "epochs.parquet", "optuna.journal", "provenance.json", "space.yaml")


def _new_sweep_name(o: SweepOptions, space: SearchSpace) -> str:
    if o.name:
        return o.name
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{space.method}-{Path(o.dataset).name}-{o.stage}-{stamp}"


def _newest_sweep(storage: Location) -> str | None:
    """The name of the sweep under ``storage`` whose options were written last."""
    sel = pafs.FileSelector(storage.path, recursive=False, allow_not_found=True)
    dirs = [i.path for i in storage.fs.get_file_info(sel) if i.type == pafs.FileType.Directory]
    infos = storage.fs.get_file_info([f"{d}/{OPTIONS_FILE}" for d in dirs]) if dirs else []
    found = [(i.mtime_ns or 0, Path(i.path).parent.name) for i in infos if i.type == pafs.FileType.File]
    return max(found)[1] if found else None


def _resume_options(o: SweepOptions, storage: Location) -> tuple[SweepOptions, Path]:
    """The stored options of the sweep to resume (``--name``, or the newest under ``storage``), with the changes a
    resume applies (:data:`RESUME_APPLIES`) taken from ``o``."""
    name = o.name or _newest_sweep(storage)
    if name is None:
        raise ConfigError(f"--resume: no sweep under {storage.uri}; pass --name NAME (and --storage)")
    loc = storage.child(name)
    if not loc.exists("tuner.pkl") or not loc.exists(OPTIONS_FILE):
        raise ConfigError(f"--resume: {loc.uri} holds no sweep to resume; check --name and --storage")
    sweep_dir = loc.download(DRIVER_FILES)  # remote: the driver works on a local copy, uploaded as it changes
    stored = load_options(sweep_dir)
    refuse_changes(o, stored)
    applied = {k: new for k, (_, new) in resume_changes(o, stored).items()}
    check_resume_changes(applied, stored, sweep_dir=sweep_dir)
    keep = {k: getattr(o, k) for k in RESUME_KEEPS}
    return replace(stored, **{**keep, **applied, "name": name, "storage": storage.uri}), sweep_dir


def load_options(sweep_dir: Path) -> SweepOptions:
    """The options stored in a sweep folder (its :data:`OPTIONS_FILE`), as ``--resume`` and ``zsltune analyze rerun``
    read them; :class:`~zsltune.errors.DataError`, one line naming the file, when they cannot be read."""
    path = sweep_dir / OPTIONS_FILE
    if not path.is_file():
        raise DataError(f"{sweep_dir}: no {OPTIONS_FILE} (the sweep's options); pass the sweep folder itself")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); restore the file") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a JSON object of sweep options; restore the file")
    unknown = sorted(set(doc) - {f.name for f in fields(SweepOptions)})
    if unknown:
        raise DataError(
            f"{path}: unknown option(s) {', '.join(unknown)} (another zsltune version's?); use the zsltune that "
            "wrote the sweep, or remove them"
        )
    return SweepOptions(**{"space": "", **doc})  # the rest default as a new sweep's do


#: the command-line spelling of options whose flag is not the field's name
FLAGS = {"overrides": "--set", "grid": "--grid", "defaults_first": "--no-defaults-first", "callbacks": "--callback"}


def flag_of(name: str) -> str:
    """The command-line flag of a :class:`SweepOptions` field."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _given(o: SweepOptions, name: str) -> bool:
    """Whether ``o`` sets ``name`` at all: a value other than the unset default (None, or the dataclass's)."""
    mine = getattr(o, name)
    return mine is not None and mine != getattr(SweepOptions(space=""), name)


def refuse_changes(o: SweepOptions, stored: SweepOptions) -> None:
    """A resume continues the sweep as it was stored: an option given with another value than the stored one is
    refused with one line naming it, except those a resume applies (:data:`RESUME_APPLIES`, checked by
    :func:`check_resume_changes`), so none is silently dropped."""
    for f in fields(SweepOptions):
        if f.name in RESUME_KEEPS or f.name in RESUME_APPLIES or not _given(o, f.name):
            continue
        mine, theirs = getattr(o, f.name), getattr(stored, f.name)
        if mine == theirs:
            continue
        if f.name == "space" and _space_path(mine) == _space_path(theirs):
            continue
        if f.name in ("dataset", "data_root") and _dir_or_name(mine) == _dir_or_name(theirs):
            continue
        flag = flag_of(f.name)
        raise ConfigError(
            f"--resume: {flag} {mine} differs from the sweep's stored {theirs}; a resume continues the sweep as it "
            f"ran (drop {flag}, or start a new sweep with --name)"
        )


def resume_changes(o: SweepOptions, stored: SweepOptions) -> dict[str, tuple[Any, Any]]:
    """The options of :data:`RESUME_APPLIES` that ``o`` gives with another value than ``stored``: name -> (stored,
    new)."""
    return {
        k: (getattr(stored, k), getattr(o, k))
        for k in RESUME_APPLIES
        if _given(o, k) and getattr(o, k) != getattr(stored, k)
    }


def check_resume_changes(applied: dict[str, Any], stored: SweepOptions, *, sweep_dir: Path) -> None:
    """Refuse, with one line naming the option and its stored value, a change a resume cannot apply: fewer trials
    than stored or than already ran, a shorter or already spent time budget, any of them on a grid or PBT sweep
    (a grid runs its product, a PBT population is fixed when it starts)."""
    if not applied:
        return
    run, started = trials_run(sweep_dir)
    for k, new in applied.items():
        flag, old = flag_of(k), getattr(stored, k)
        if stored.is_grid or stored.scheduler == "pbt":
            kind = "a grid sweep runs its grid" if stored.is_grid else "a PBT sweep keeps the population it started"
            raise ConfigError(
                f"--resume: {flag} {new} differs from the sweep's stored {old}; {kind} as it was stored (drop {flag}, "
                f"or start a new sweep with --name)"
            )
        if k == "num_samples" and new < max(old or 0, run):
            raise ConfigError(
                f"--resume: --num-samples {new} is fewer than the sweep's stored {old} ({run} trials ran); a resume "
                f"may only add trials (drop --num-samples, or give more than {max(old or 0, run)})"
            )
        if k == "time_budget" and old is not None and new < old:
            raise ConfigError(
                f"--resume: --time-budget {new:g} is shorter than the sweep's stored {old:g}; a resume may only extend "
                f"it (drop --time-budget, or give more than {old:g})"
            )
    budget = applied.get("time_budget", stored.time_budget)
    spent = time.time() - started if started is not None else 0.0
    if budget is not None and budget <= spent:  # Ray's budget, restored on resume, counts the gaps too
        theirs = "none" if stored.time_budget is None else f"{stored.time_budget:g}"
        raise ConfigError(
            f"--resume: --time-budget {budget:g} has already run out (the sweep's stored {theirs}): a sweep's budget "
            f"counts from its first trial, {spent:.0f} s ago; give --time-budget above {spent:.0f}"
        )


def trials_run(sweep_dir: Path) -> tuple[int, float | None]:
    """How many trials ``trials.parquet`` holds, and when the first of them started (seconds since the epoch)."""
    path = sweep_dir / "trials.parquet"
    if not path.is_file():
        return 0, None
    import pandas as pd

    t = pd.read_parquet(path, columns=["trial_id", "started_at"])
    col = t["started_at"]
    # UTC timestamps on disk; a file from before that change holds seconds
    secs = col.map(lambda v: v.timestamp()) if col.dtype.kind == "M" else pd.to_numeric(col, errors="coerce")
    first = secs.min()
    return int(t["trial_id"].nunique()), None if pd.isna(first) else float(first)


def _space_path(name: Any) -> str:
    try:
        return str(load_space(str(name)).path)
    except ZsltuneError:
        return str(name)


def _dir_or_name(v: Any) -> str:
    p = Path(str(v)).expanduser()
    return str(p.resolve()) if p.is_dir() else str(v)


def prepare(o: SweepOptions) -> tuple[SweepOptions, SearchSpace, Path, list[str]]:
    """Validate everything that can be checked without Ray; returns the resolved options and the sweep folder."""
    storage = storage_location(o.storage)
    if o.resume:
        check_writable(storage)
        o, sweep_dir = _resume_options(o, storage)
    elif not o.space:
        raise ConfigError("--space is required: a name in search_spaces/ or a YAML path (or --resume a sweep)")
    space = load_space(o.space)
    trainer_cls = get_method(space.method)
    _check_options(o, space, trainer_cls)
    if o.profile:
        space = space.with_profile(o.profile)
    space = space.fix(o.overrides)  # --set NAME=VALUE: no longer searched
    metrics = [m.strip() for m in (o.metric or space.metric).split(",") if m.strip()]
    make_sampler(o.sampler, seed=o.seed, multi=len(metrics) > 1)
    if o.scheduler not in SCHEDULERS:
        raise UnknownNameError(f"--scheduler {o.scheduler}: unknown scheduler; valid: {', '.join(SCHEDULERS)}")
    if len(metrics) > 1 and o.scheduler != "fifo" and not o.is_grid:
        raise ConfigError(
            f"--metric {','.join(metrics)}: --scheduler {o.scheduler} stops trials on one metric ({space.metric}), "
            f"which would decide the front; pass --scheduler fifo for a multi-objective search"
        )
    if o.budget == "compute" and o.scheduler == "pbt" and not o.is_grid:
        raise ConfigError(
            "--budget compute and --scheduler pbt: PBT clones a trial's checkpoint into another configuration, so "
            "its compute would not be its own; use --scheduler asha (hyperband, median, fifo) or --budget iterations"
        )
    if not o.resume:
        check_writable(storage)  # every option checked: now the folder (or bucket), before anything is written
        loc = storage.child(_new_sweep_name(o, space))
        if loc.exists("tuner.pkl") or loc.exists(OPTIONS_FILE):
            raise ConfigError(
                f"--name {Path(loc.path).name}: a sweep already exists at {loc.uri}; pass --resume to "
                f"continue it or choose a new --name"
            )
        sweep_dir = loc.fresh_mirror()
    dataset = str(Path(o.dataset).resolve()) if Path(o.dataset).expanduser().is_dir() else o.dataset
    data_root = str(Path(o.data_root).expanduser().resolve()) if o.data_root else None
    o = replace(
        o,
        storage=storage.uri,
        space=str(space.path or o.space),
        dataset=dataset,
        data_root=data_root,
        num_samples=o.num_samples or DEFAULT_SAMPLES,
        max_epochs=o.max_epochs or space.max_epochs,
        grace_period=o.grace_period or space.grace_period,
        iteration_steps=(o.iteration_steps if o.iteration_steps is not None else space.iteration_steps) or 0,
        data_seed=o.data_seed if o.data_seed is not None else (o.seed if o.resume else 0),
        image_size=o.image_size or space.image_size,
        recall_at=o.recall_at or space.recall_at,
    )
    return o, space, sweep_dir, metrics


def make_callbacks(o: SweepOptions) -> list[Any]:
    """The ``--callback`` instances (a Ray Tune ``Callback`` subclass each, built with ``--callback-arg``)."""
    from ray.tune import Callback

    out = []
    for ref in o.callbacks:
        mod, sep, qual = ref.partition(":")
        if not sep or not mod or not qual:
            raise ConfigError(
                f"--callback {ref}: expected MODULE:CLASS, e.g. ray.air.integrations.mlflow:MLflowLoggerCallback"
            )
        try:
            obj = import_object(ref)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"--callback {ref}: cannot import it on the driver ({e}); install its package or fix the name"
            ) from None
        if not (isinstance(obj, type) and issubclass(obj, Callback)):
            raise ConfigError(f"--callback {ref}: not a ray.tune.Callback subclass")
        try:
            out.append(obj(**o.callback_args))
        except TypeError as e:
            raise ConfigError(
                f"--callback {ref}: cannot be built from --callback-arg {o.callback_args} ({e})"
            ) from None
    return out


def save_options(o: SweepOptions, sweep_dir: Path) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f".{OPTIONS_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(o), indent=2, default=str))
    os.replace(tmp, sweep_dir / OPTIONS_FILE)
