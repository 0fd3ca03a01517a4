"""``zsltune analyze best | rerun | report``: registered on the ``zsltune`` command by :func:`add_analyze_parser`.

Heavy imports (pandas, Ray, matplotlib) happen inside the handlers, so ``zsltune --help`` stays fast. User errors
are :class:`~zsltune.errors.ZsltuneError` subclasses: ``zsltune`` prints their one line and exits 2.
"""

from __future__ import annotations

import argparse


def _best(args: argparse.Namespace) -> int:
    from zsltune.analysis.best import (
        best,
        default_out,
        display_table,
        objectives,
        pareto_front,
        rank_trials,
        write_best,
    )
    from zsltune.analysis.sweepdir import load_sweep

    table = best(args.sweep_dirs, top=args.top, by=args.by, include_all=args.all)
    csv, md = write_best(table, args.out or default_out(args.sweep_dirs))
    by = table.attrs["by"]
    import pandas as pd

    with pd.option_context("display.max_colwidth", 100, "display.width", 250, "display.max_columns", 30):
        print(f"best configurations by validation {by} ({table.attrs['mode']}); val-stage numbers only")
        print(display_table(table).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for d in args.sweep_dirs:  # a multi-objective study: its Pareto front over every completed trial
            sweep = load_sweep(d)
            goals = objectives(sweep)
            if len(goals) > 1:
                front = pareto_front(rank_trials(sweep), goals, [sweep.mode_of(m) for m in goals])
                print(f"\nPareto front of {', '.join(goals)} in {sweep.name} ({len(front)} trials):")
                cols = ["trial_id", *(f"val/{m}" for m in goals), "config"]
                print(front[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\ntable: {csv}\n       {md}")
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from zsltune.analysis.rerun import rerun

    result = rerun(
        args.sweep_dir,
        top=args.top,
        seeds=args.seeds,
        by=args.by,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        address=args.address,
        resume=args.resume,
        quiet=args.quiet,
    )
    frame = result.frame
    completed = int((frame["status"] == "completed").sum()) if not frame.empty else 0
    if args.quiet:
        print(result.path)
    return 0 if completed else 1


def _report(args: argparse.Namespace) -> int:
    from zsltune.analysis.references import parse_references
    from zsltune.analysis.report import report

    refs = parse_references(args.references)  # before anything is read or written
    path = report(args.sweep_dir, args.out, by=args.by, baseline=args.baseline, references=refs)
    print(f"report: {path}")
    return 0


def add_analyze_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "analyze",
        help="best configurations, test-stage reruns with seeds, reports",
        description="Turn a sweep into reportable numbers: rank it, rerun the best on the test stage, report.",
    )
    asub = p.add_subparsers(dest="analyze_cmd", required=True, metavar="{best,rerun,report}")

    b = asub.add_parser(
        "best",
        help="rank a sweep's trials by a validation metric; write best.csv and best.md",
        description="Rank completed trials of one or several sweeps by a validation metric (stage val only).",
    )
    b.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="sweep folder(s), e.g. ~/zsltune_results/NAME")
    b.add_argument("--top", type=int, help="keep the K best (default: all)")
    b.add_argument("--by", metavar="METRIC", help="metric to rank by (default: the sweep's, e.g. H)")
    b.add_argument("--all", action="store_true", help="also rank running and early-stopped trials")
    b.add_argument("--out", metavar="DIR", help="folder for best.csv/best.md (default: the sweep folder)")
    b.set_defaults(func=_best)

    r = asub.add_parser(
        "rerun",
        help="rerun the top configurations on the test stage with several seeds (one Ray Tune job)",
        description="Retrain the top-K configurations on trainval (each for its best epoch count from the search) "
        "and evaluate on test_seen/test_unseen, N seeds each; results in SWEEP_DIR/reruns.parquet.",
    )
    r.add_argument("sweep_dir", metavar="SWEEP_DIR")
    r.add_argument("--top", type=int, help="number of configurations (default 3)")
    r.add_argument("--seeds", type=int, help="seeds per configuration (default 5)")
    r.add_argument("--by", metavar="METRIC", help="validation metric that picks the top K (default: the sweep's)")
    r.add_argument("--cpus-per-trial", type=float, help="default: the sweep's")
    r.add_argument("--gpus-per-trial", type=float, help="default: the sweep's; fractions pack trials on a GPU")
    r.add_argument("--address", help="an existing Ray cluster ('auto' or host:port); default: a local Ray")
    r.add_argument("--resume", action="store_true", help="continue an interrupted rerun of this sweep")
    r.add_argument("--quiet", action="store_true", help="no progress output; print the reruns.parquet path")
    r.set_defaults(func=_rerun)

    t = asub.add_parser(
        "report",
        help="write a Markdown or HTML report with tables and PNG plots",
        description="Write one report about a sweep (and its reruns), figures as PNG files beside it.",
    )
    t.add_argument("sweep_dir", metavar="SWEEP_DIR")
    t.add_argument("--out", metavar="FILE", help="report file, .md or .html (default: SWEEP_DIR/report.md)")
    t.add_argument("--by", metavar="METRIC", help="metric to rank by (default: the sweep's)")
    t.add_argument(
        "--baseline",
        metavar="NAME=VALUE",
        help="a grid sweep (zsltune run --grid): the level the ablation's paired differences are taken against "
        "(default: the grid's first level, e.g. ablation=gen)",
    )
    t.add_argument(
        "--references",
        metavar="NAMES",
        help="reference baselines fitted on the sweep's data and shown beside its best, comma-separated "
        "(eszsl, softmax, clswgan, ridge; default eszsl,softmax; none: no section)",
    )
    t.set_defaults(func=_report)
    return p
