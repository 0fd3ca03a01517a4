"""The benchmark suite as one command: every figure zsltune claims, measured side by side on this machine, written as
JSON and a Markdown table (figures, machine, versions, date, how long it took) with plots.

    python -m benchmarks --quick --out bench-out        # under 10 minutes on 2 cores; rough figures
    python -m benchmarks --out bench-out                # the full suite (about an hour on 2 cores)
    python -m benchmarks --only steps replay            # some pieces

Pieces: ``throughput`` (a CRnet sweep vs the hand-written Ray Tune script), ``memory`` (copies of the dataset held by
N concurrent trials), ``image-memory`` (copies of the decoded images held by N image trials), ``overhead`` (engine
overhead per epoch), ``loader`` (the image cache vs decoding), ``steps`` (one training step of every registered
method, CPU and where CUDA exists GPU), ``replay`` (search efficiency of eight strategies on the recorded CRnet pool
in the cache, or ``--pool PATH``, answered by its nearest configuration and by a surrogate, :mod:`benchmarks.replay`,
:mod:`benchmarks.surrogate`), ``live`` (full suite only: TPE + ASHA vs random search for real on a small budget, next
to what the replay predicts for them), ``calibration`` (ESZSL, the seen-class softmax and, full suite only, the CPU
f-CLSWGAN on each synthetic twin beside their published numbers, :mod:`benchmarks.calibration`), ``part-code``
(how much of each class side the synthetic part images plant, :func:`zsltune.data.synth_images.part_code_fidelity`),
``sgma-guidance`` (SGMA's cropping net against the detached ablation over seeds, :mod:`benchmarks.sgma_guidance`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._bench_util import HERE, REPO, default_data_root, machine


@dataclass
class Piece:
    name: str
    claim: str
    run: Callable[[bool, Path], dict[str, Any]]  # (quick, out dir) -> {"figures": {...}, "text": str, ...}
    full_only: bool = False


@dataclass
class Report:
    quick: bool
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    pieces: dict[str, dict[str, Any]] = field(default_factory=dict)


# ---- pieces that are scripts of their own: run them, keep their output, pick out the headline figures -------------
def script(path: str, quick_args: list[str], full_args: list[str], patterns: dict[str, str]) -> Callable:
    def run(quick: bool, out: Path) -> dict[str, Any]:
        cmd = [sys.executable, str(HERE / path), *(quick_args if quick else full_args)]
        t0 = time.time()
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env())
        text = p.stdout + (p.stderr[-2000:] if p.returncode else "")
        figures = {}
        for key, pat in patterns.items():
            found = re.findall(pat, p.stdout)
            if found:
                figures[key] = float(found[-1])
        return {"rc": p.returncode, "wall_s": time.time() - t0, "text": text.strip(), "figures": figures}

    return run


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO), "ZSLTUNE_DATA": default_data_root()}


# ---- pieces run in this process -------------------------------------------------------------------------------
def steps_piece(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks.method_steps import measure, row_line

    t0 = time.time()
    rows = measure(steps=3 if quick else 10, data_root=default_data_root(), compiled=not quick)
    lines = [row_line(r) for r in rows]
    figures = {f"{r['method']} {r['arm']} ms/step": round(r["ms_per_step"], 2) for r in rows}
    return {"rc": 0, "wall_s": time.time() - t0, "text": "\n".join(lines), "figures": figures, "rows": rows}


#: the replay's pool file (``--pool``); None: the cache's (:func:`benchmarks.record_pool.pool_path`)
POOL: Path | None = None
#: repeats of each strategy in the replay piece: quick, full (>= 20 for the fractions' intervals to mean much)
REPLAY_REPEATS = {True: 20, False: 50}
#: the strategies the replay piece compares (random search first: the baseline of every fraction)
REPLAY_STRATEGIES: tuple[str, ...] | None = None  # None: every one of benchmarks.replay.STRATEGIES


def _finite(x: float) -> float | None:
    """A fraction for JSON: None where the strategy never reached the target (inf)."""
    return None if x != x or x == float("inf") else round(float(x), 4)


def replay_piece(quick: bool, out: Path) -> dict[str, Any]:
    """Every strategy on the pool twice, answered by the nearest recorded configuration and by the surrogate; the
    surrogate's leave-configurations-out error against the pool's seed noise decides whether its figures count."""
    from benchmarks.record_pool import pool_path, require_pool
    from benchmarks.replay import STRATEGIES, Table, compare, plot
    from benchmarks.surrogate import Surrogate, pick, seed_noise, verdict
    from zsltune.sweep.options import SweepOptions

    t0 = time.time()
    path = require_pool(POOL)
    table = Table.read(path, "crnet")
    # the cache's pool by its variable, not this machine's home: results are committed
    where = "$ZSLTUNE_CACHE/pools/crnet.parquet" if path == pool_path("crnet") else str(path)
    budget, repeats = 10 * table.horizon, REPLAY_REPEATS[quick]  # random search: 10 full trainings
    kind, errors = pick(table)
    error, noise = errors[kind], seed_noise(table)
    counts, error_line = verdict(error, noise)
    # the surrogate answers with its predicted mean curve (no per-trial noise): repeats differ by the sampler's seed
    answers = {"surrogate": Surrogate.of(table, kind=kind).curve, "nearest": None}
    strategies = REPLAY_STRATEGIES or STRATEGIES
    effs = {
        name: compare(table, budget=budget, repeats=repeats, answer=a, strategies=strategies)
        for name, a in answers.items()
    }
    pngs = [plot(effs["nearest"], out / "search_efficiency.png", metric=table.space.metric)]
    pngs.append(plot(effs["surrogate"], out / "search_efficiency_surrogate.png", metric=table.space.metric))
    doc: dict[str, Any] = {"surrogate_error": error, "seed_noise": noise, "surrogate_counts": counts,
                           "surrogate_kind": kind, "surrogate_errors": errors}  # fmt: skip
    lines = [
        f"pool: {len(table.configs)} CRnet configurations ({int((table.seeds > 1).sum())} at up to "
        f"{int(table.seeds.max())} seeds) x {table.horizon} iterations ({where}); budget {budget} trial-iterations, "
        f"{repeats} repeats a strategy",
        f"surrogate: {kind}, the least leave-out error on best H of "
        + ", ".join(f"{k} {e['best']:.4f}" for k, e in errors.items()),
        error_line,
        "fraction: share of random search's compute at which the strategy's mean best-so-far reaches random "
        "search's mean best at the full budget (inf: never), bootstrap 90% interval over repeats",
        f"{'strategy':14s} " + "  ".join(f"{name:>28s}" for name in effs),
    ]
    figures: dict[str, float] = {}
    for name, eff in effs.items():
        doc[name] = {
            r.strategy: {"fraction": _finite(r.fraction), "fraction_lo": _finite(r.fraction_lo),
                         "fraction_hi": _finite(r.fraction_hi), "best_mean": round(r.best_mean, 4),
                         "best_std": round(r.best_std, 4)}
            for r in eff.summary.itertuples()
        }  # fmt: skip
        figures |= {f"{r.strategy} fraction ({name})": r.fraction for r in eff.summary.itertuples()}
    for s in effs["nearest"].summary["strategy"]:
        cells = []
        for name in effs:
            r = doc[name][s]
            f, lo, hi = ("inf" if r[k] is None else f"{r[k]:.2f}" for k in ("fraction", "fraction_lo", "fraction_hi"))
            cells.append(f"{f:>5s} [{lo:>4s}, {hi:>4s}] best {r['best_mean']:.3f}")
        lines.append(f"{s:14s} " + "  ".join(f"{c:>28s}" for c in cells))
    which = "surrogate" if counts else "nearest"  # the surrogate's figures only where it predicts within seed noise
    # the strategy a sweep runs unless told otherwise, by its replay name (FIFO: the sampler alone)
    o = SweepOptions(space="crnet")
    default = o.sampler if o.scheduler == "fifo" else f"{o.sampler}+{o.scheduler}"
    fr = {k: v["fraction"] for k, v in doc[which].items() if k != "random"}
    first = min(fr, key=lambda k: math.inf if fr[k] is None else fr[k]) if fr else default
    share = fr.get(default)
    goal = share is not None and share <= 0.25
    lines.append(
        f"the default strategy, {default} ({which} replay), reaches random search's mean best at {budget} "
        f"trial-iterations after " + ("never" if share is None else f"{100 * share:.0f}%")
        + " of its compute; the goal (<= 25%) is " + ("met." if goal else "NOT met.")
        + f" Least compute: {first} (" + ("never" if fr.get(first) is None else f"{100 * fr[first]:.0f}%") + ")."
    )  # fmt: skip
    doc |= {"default_strategy": default, "judged_on": which, "least_compute": first}
    return {"rc": 0, "wall_s": time.time() - t0, "text": "\n".join(lines), "figures": figures,
            "plots": [p.name for p in pngs], "goal_met": bool(goal), **doc}  # fmt: skip


def live_piece(quick: bool, out: Path) -> dict[str, Any]:
    """TPE + ASHA and random search as real zsltune sweeps on the pool's space, data and horizon, next to what each
    replay (nearest, surrogate) predicts for them at the same compute. Neither sweep is handed the space's defaults
    (``--no-defaults-first``), as in the replay: on the pool the defaults are near the best, and two sweeps that start
    there tell nothing apart."""
    import tempfile

    import numpy as np
    import pandas as pd

    from benchmarks.record_pool import require_pool
    from benchmarks.replay import Table, replay
    from benchmarks.surrogate import Surrogate, pick, seed_noise
    from zsltune.sweep import SweepOptions, run_sweep

    t0 = time.time()
    table = Table.read(require_pool(POOL), "crnet")
    answers = {"nearest": None, "surrogate": Surrogate.of(table, kind=pick(table)[0]).curve}
    # a live sweep is one seed's draw, the replay answers with seed means: the band widens by the pool's seed noise
    noise = seed_noise(table)["best"]
    tol = 0.02 if math.isnan(noise) else noise
    arms = {"random": ("random", "fifo", 6), "tpe+asha": ("tpe", "asha", 14)}
    lines, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm, (sampler, scheduler, n) in arms.items():
            res = run_sweep(
                SweepOptions(
                    space="crnet", dataset="demo", sampler=sampler, scheduler=scheduler, num_samples=n,
                    max_epochs=table.horizon, storage=tmp, name=arm.replace("+", "-"), quiet=True,
                    defaults_first=False,
                )
            )  # fmt: skip
            e = pd.read_parquet(res.epochs_path).sort_values("timestamp")
            compute = len(e)
            live = float(e[table.space.metric].max())
            figures[f"{arm} live best"] = round(live, 4)
            lines.append(f"{arm:9s} live: best {table.space.metric} {live:.3f} after {compute} trial-iterations")
            for name, a in answers.items():
                pred = np.array([np.nanmax(replay(table, arm, budget=compute, seed=r, answer=a)) for r in range(10)])
                lo, hi = np.percentile(pred, [10, 90])
                inside = lo - tol <= live <= hi + tol
                lines.append(
                    f"{'':9s} {name} replay at the same compute: mean {pred.mean():.3f}, 10-90% {lo:.3f}-{hi:.3f} "
                    f"(+- {tol:.3f}, seed noise) -> " + ("agrees" if inside else "disagrees")
                )
                key = f"{arm} replay mean" + ("" if name == "nearest" else f" ({name})")  # the old key: nearest
                figures[key] = round(float(pred.mean()), 4)
    return {"rc": 0, "wall_s": time.time() - t0, "text": "\n".join(lines), "figures": figures}


def part_code_piece(quick: bool, out: Path) -> dict[str, Any]:
    """How much of each class side the part images plant (class-level, no image drawn): leave-one-class-out R² of the
    attributes from the planted code, and ridge ZSL top-1 (attributes -> code and code -> attributes) on the val and
    the test stage's unseen classes; every xlsa17 class side under the data root with class lists, and the demo."""
    from zsltune.data import resolve_dataset
    from zsltune.data.synth_images import part_code_fidelity, stage_classes
    from zsltune.data.xlsa17 import read_class_side
    from zsltune.errors import DataError

    t0 = time.time()
    root = Path(default_data_root())
    sides = {p.name: p for p in sorted(root.iterdir()) if (p / "att_splits.mat").is_file()} if root.is_dir() else {}
    sides["demo"] = resolve_dataset("demo", quiet=True)
    lines, figures = [], {}
    for name, side in sides.items():
        try:
            att, _ = read_class_side(side)
            stages = {stage: part_code_fidelity(att, *stage_classes(side, stage)) for stage in ("val", "test")}
        except DataError as e:
            lines.append(f"{name:5s} skipped: {e}")
            continue
        v, t = stages["val"], stages["test"]
        lines.append(
            f"{name:5s} {v['classes']:3d} classes x {att.shape[1]:3d} attributes, {v['dims']} code dims: LOCO R² "
            f"{v['loco_r2']:.3f}; ZSL top-1 val a->c {v['zsl_a2c']:.2f} c->a {v['zsl_c2a']:.2f}, "
            f"test a->c {t['zsl_a2c']:.2f} c->a {t['zsl_c2a']:.2f}"
        )
        figures |= {f"{name} LOCO R2": round(v["loco_r2"], 3), f"{name} val ZSL a->c": round(v["zsl_a2c"], 3)}
    goal = figures.get("AWA2 LOCO R2", 0) >= 0.5 and figures.get("AWA2 val ZSL a->c", 0) >= 0.5
    lines.append("goal (AWA2: LOCO R² >= 0.5, val ZSL top-1 >= 0.5): " + ("met." if goal else "NOT met."))
    return {"rc": 0, "wall_s": time.time() - t0, "text": "\n".join(lines), "figures": figures, "goal_met": goal}


PIECES = [
    Piece(
        "throughput", "a CRnet sweep completes >= 10x the trial-epochs per hour of a hand-written Ray Tune script",
        script("bench_sweep_throughput.py", ["--budget", "60", "--batch-size", "256", "--eval-images", "128"], [],
               {"ratio": r"ratio zsltune / hand-written: ([\d.]+)x"}),
    ),
    Piece(
        "memory", "N concurrent trials on one node hold about one copy of the dataset, not N",
        script("bench_shared_data.py", ["--quick"], ["--n", "1", "2", "4"],
               {"copies shared (last N)": r"\n  shared\s+\S+ \S+\s+\S+ \S+\s+\S+ \S+\s+\S+ \S+\s+([\d.]+)"}),
    ),
    Piece(
        "overhead", "reporting, checkpointing and Parquet add < 5% to an epoch",
        script("bench_engine_overhead.py", ["--quick"], [],
               {"driver overhead %": r"= ([\d.]+)% of the epoch"}),
    ),
    Piece(
        "image-memory", "N image trials on one node hold one decoded copy of the images (the node's cache), not N",
        script("bench_image_memory.py", ["--n", "2", "4"], ["--n", "1", "2", "4"],
               {"copies, cache, last N": r"cache copies of the images held: ([\d.]+)",
                "copies, private, last N": r"copy  copies of the images held: ([\d.]+)"}),
    ),
    Piece(
        "loader", "images a trial reads per second: the node's decoded cache vs decoding every JPEG",
        script("bench_image_loader.py", ["--quick"], [], {}),
    ),
    Piece(
        "calibration", "reference baselines on each twin's test stage within tolerance of their published numbers",
        script("calibration.py", ["--datasets", "AWA1", "CUB", "--demo"], ["--clswgan", "--demo"], {}),
    ),
    Piece(
        "sgma-guidance",
        "SGMA's default cropping net (semantic losses reach the attention) beats the detached ablation's unseen ZSL "
        "top-1 on most seeds",
        script("sgma_guidance.py", ["--seeds", "0", "1", "2"], ["--seeds", *map(str, range(10))],
               {"net wins (seeds)": r"net above detached on ZSL in (\d+) of"}),
    ),
    Piece("part-code", "the part images' planted code carries the class attributes: LOCO R² >= 0.5 and ridge ZSL "
          "top-1 >= 0.5 on AWA2's val stage", part_code_piece),
    Piece("steps", "every method's training step, CPU and (where lent) GPU", steps_piece),
    Piece("replay", "the default strategy reaches random search's best validation H at <= 25% of its compute "
          "(surrogate replay where its error is below the seed noise, else nearest)", replay_piece),
    Piece("live", "the replay predicts real sweeps: TPE + ASHA and random search run for real", live_piece,
          full_only=True),
]  # fmt: skip


def versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__}  # fmt: skip


def markdown(rep: Report, total_s: float) -> str:
    out = [
        f"# zsltune benchmarks ({'quick' if rep.quick else 'full'})",
        "",
        f"{rep.started}; {total_s / 60:.1f} min; {machine()}; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
        "| piece | claim | figures | time |",
        "|---|---|---|---|",
    ]
    claims = {p.name: p.claim for p in PIECES}
    for name, r in rep.pieces.items():
        figs = "; ".join(f"{k} {v:g}" for k, v in r.get("figures", {}).items()) or ("failed" if r["rc"] else "-")
        out.append(f"| {name} | {claims[name]} | {figs} | {r['wall_s']:.0f} s |")
    for name, r in rep.pieces.items():
        out += ["", f"## {name}", "", "```", r["text"], "```"]
        out += [f"![{p}]({p})" for p in r.get("plots", [])]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset with short runs: under 10 minutes on 2 cores")
    p.add_argument("--out", default="bench-out", help="folder for results.json, results.md and plots")
    p.add_argument("--only", nargs="+", choices=[x.name for x in PIECES], help="run only these pieces")
    p.add_argument("--pool", type=Path, help="the replay's pool (default: $ZSLTUNE_CACHE/pools/crnet.parquet)")
    a = p.parse_args(argv)
    global POOL
    POOL = a.pool
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(quick=a.quick)
    t0 = time.time()
    for piece in PIECES:
        if (a.only and piece.name not in a.only) or (a.quick and piece.full_only):
            continue
        print(f"[{time.time() - t0:6.0f} s] {piece.name} ...", flush=True)
        try:
            rep.pieces[piece.name] = piece.run(a.quick, out)
        except Exception as e:  # one piece failing leaves the others' figures
            rep.pieces[piece.name] = {"rc": 1, "wall_s": 0.0, "text": f"{type(e).__name__}: {e}", "figures": {}}
        r = rep.pieces[piece.name]
        print(f"         {piece.name}: {'ok' if not r['rc'] else 'FAILED'} in {r['wall_s']:.0f} s "
              f"{r.get('figures', {})}", flush=True)  # fmt: skip
    total = time.time() - t0
    doc = {"quick": a.quick, "started": rep.started, "total_s": total, "machine": machine(), "versions": versions(),
           "pieces": {k: {kk: vv for kk, vv in v.items()} for k, v in rep.pieces.items()}}  # fmt: skip
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "results.md").write_text(markdown(rep, total))
    print(f"wrote {out / 'results.md'} and results.json in {total / 60:.1f} min")
    return 1 if any(r["rc"] for r in rep.pieces.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
