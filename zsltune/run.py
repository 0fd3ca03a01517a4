"""``zsltune run``: build and run one sweep. Also a plain script, as ``ray submit`` uploads and runs it:

    python zsltune/run.py --space crnet --dataset AWA2 --data-root ~/xlsa17
    ray submit clusters/gpu.yaml zsltune/run.py --space clarel --dataset CUB

As a script it imports the installed ``zsltune`` package, never files beside it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: drop this file's folder, whose names would shadow real modules
    _here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != _here]


def _value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _overrides(items: list[str], *, option: str = "--set") -> dict[str, Any]:
    from zsltune.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            example = "hidden=256" if option == "--set" else "experiment_name=zsl"
            raise ConfigError(f"{option} {item}: expected NAME=VALUE, e.g. {option} {example}")
        out[key.strip()] = _value(val)
    return out


_DESCRIPTION = "Run a hyperparameter sweep."


def add_run_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``run`` subcommand of the ``zsltune`` command (:mod:`zsltune.cli`)."""
    p = sub.add_parser("run", help="run a hyperparameter sweep", description=_DESCRIPTION)
    _add_run_args(p)
    p.set_defaults(func=_run)
    return p


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to tune")
    g.add_argument("--space", default="", help="search space: a name in search_spaces/ (crnet, ...) or a YAML path")
    g.add_argument(
        "--dataset",
        default="demo",
        help="'demo' (synthetic, the default), a dataset under --data-root (AWA2, CUB, ...) or a directory",
    )
    g.add_argument("--data-root", help="folder of xlsa17 datasets (default: $ZSLTUNE_DATA or ~/xlsa17)")
    g.add_argument(
        "--stage",
        default="val",
        choices=("val", "test"),
        help="val: tune on trainval only (the default and the only stage a search runs on; test-stage numbers come "
        "from `zsltune analyze rerun`)",
    )
    g.add_argument("--attributes", default="att", choices=("att", "original_att", "sent"))
    g.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="image data: leave out corrupt or unreadable images (listed in the cache's .bad.json) instead of "
        "stopping at the first one",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PIXELS",
        help="image data: the side the images are decoded to (default: the space's image_size, else synthetic "
        "images' own side and 256 for real ones); must hold the method's crop",
    )
    g.add_argument(
        "--recall-at",
        default=None,
        metavar="PRESET|K,K,...",
        help="retrieval: the Recall@K list, a preset (cub, cars: 1,2,4,8; sop: 1,10,100,1000) or K values (default: "
        "the space's recall_at, else sop for a Stanford Online Products folder and 1,2,4,8 otherwise)",
    )
    g.add_argument(
        "--profile",
        help="first trial from a named profile of the space instead of its defaults (e.g. 'paper': the published "
        "configuration, with the budget it assumes stated in the YAML)",
    )
    g.add_argument(
        "--no-defaults-first",
        dest="defaults_first",
        action="store_false",
        help="draw every trial from the sampler; by default the space's defaults (or --profile) run first. For "
        "comparing samplers on equal terms",
    )
    g.add_argument("--metric", help="metric to optimise (default: the space's); 'U,S' for a Pareto front")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a hyperparameter for every trial (repeatable)",
    )
    g = p.add_argument_group("search")
    g.add_argument(
        "--num-samples", type=int, help="number of trials (default 8; with --resume, more than stored adds trials)"
    )
    g.add_argument("--sampler", default="tpe", help="tpe | cmaes | gp | random | qmc | nsga2 (default tpe)")
    g.add_argument("--scheduler", default="asha", help="asha | hyperband | median | pbt | fifo (default asha)")
    g.add_argument("--max-epochs", type=int, help="iterations per trial (default: the space's)")
    g.add_argument("--grace-period", type=int, help="iterations before a trial may be stopped (default: the space's)")
    g.add_argument(
        "--budget",
        choices=("iterations", "compute"),
        default="iterations",
        help="what --max-epochs and --grace-period count: Tune iterations (default), or compute: samples through the "
        "model, in iterations of the space's defaults, so a costlier configuration gets fewer iterations",
    )
    g.add_argument(
        "--iteration-steps",
        type=int,
        metavar="N",
        help="an iteration is N optimisation steps (0: one epoch; default: the space's iteration_steps)",
    )
    g.add_argument(
        "--time-budget",
        type=float,
        help="stop the sweep this many seconds after it started, gaps between resumes included (--resume may extend)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the search and the trials (not the data)")
    g.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="seed of the synthetic data and the validation hold-out (default 0): the same data for every --seed",
    )
    g = p.add_argument_group("ablation (a grid of fixed configurations instead of a search)")
    g.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME[=V1,V2]",
        help="vary NAME over all its choices (or the values given), the rest at the space's defaults; repeatable "
        "(the product); every configuration runs its full budget, no sampler or early stopping",
    )
    g.add_argument("--repeats", type=int, default=1, metavar="N", help="seeds per grid configuration (default 1)")
    g = p.add_argument_group("resources")
    g.add_argument("--cpus-per-trial", type=float, default=1.0)
    g.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on a GPU, e.g. 0.25")
    g.add_argument(
        "--memory-per-trial",
        type=float,
        metavar="GB",
        help="host memory per trial: Ray schedules trials by it and a trial allocating more fails as out of memory "
        "(retried, reason recorded); default: no cap",
    )
    g.add_argument(
        "--max-concurrent",
        type=int,
        help="trials at once (default: what the resources allow; with --resume, for the trials not yet started)",
    )
    g.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its checkpoint")
    g.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default 1)")
    g.add_argument(
        "--address",
        help="the Ray cluster to join: 'auto', host:port or ray://...; 'local' forces a private local Ray. Default: "
        "$RAY_ADDRESS if set, else the cluster a 'ray start' on this machine recorded if it is alive (a cluster's "
        "head node, where 'ray submit' runs this script), else a private local Ray",
    )
    g = p.add_argument_group("results")
    g.add_argument("--name", help="sweep name (default METHOD-DATASET-STAGE-TIME)")
    g.add_argument("--storage", help="results folder (default: $ZSLTUNE_RESULTS or ~/zsltune_results)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted sweep (--name, or the newest)")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="a Ray Tune callback importable on the driver, appended to the sweep's (repeatable), e.g. "
        "ray.air.integrations.mlflow:MLflowLoggerCallback",
    )
    g.add_argument(
        "--callback-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for every --callback's constructor (YAML value; repeatable)",
    )


def _run(args: argparse.Namespace) -> int:
    from zsltune.sweep import SweepOptions, run_sweep

    opts = SweepOptions(
        space=args.space,
        dataset=args.dataset,
        data_root=args.data_root,
        stage=args.stage,
        attributes=args.attributes,
        num_samples=args.num_samples,
        sampler=args.sampler,
        scheduler=args.scheduler,
        metric=args.metric,
        max_epochs=args.max_epochs,
        grace_period=args.grace_period,
        budget=args.budget,
        iteration_steps=args.iteration_steps,
        profile=args.profile,
        defaults_first=args.defaults_first,
        data_seed=args.data_seed,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        memory_per_trial=args.memory_per_trial,
        max_concurrent=args.max_concurrent,
        time_budget=args.time_budget,
        name=args.name,
        storage=args.storage,
        resume=args.resume,
        seed=args.seed,
        address=args.address,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        quiet=args.quiet,
        overrides=_overrides(args.overrides),
        grid=list(args.grid),
        skip_bad_images=args.skip_bad_images,
        image_size=args.image_size,
        recall_at=args.recall_at,
        repeats=args.repeats,
        callbacks=list(args.callback),
        callback_args=_overrides(args.callback_arg, option="--callback-arg"),
    )
    result = run_sweep(opts)
    return 1 if result.counts.get("failed") and not any(result.counts[k] for k in ("completed", "stopped")) else 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python zsltune/run.py``: the same options, usage and help as ``zsltune run``."""
    p = argparse.ArgumentParser(prog="zsltune run", description=_DESCRIPTION)
    _add_run_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python zsltune/run.py ARGS`` == ``zsltune run ARGS`` (without importing :mod:`zsltune.cli`, which imports
    this module: the import graph stays acyclic)."""
    from zsltune.errors import run_command

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_command(_run, args)


if __name__ == "__main__":
    sys.exit(main())
