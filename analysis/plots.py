"""The report's figures, as PNG files: matplotlib's object API on the Agg canvas (no pyplot, no global backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
RANK_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # render with Agg whatever the process's default backend is
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _finite(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def history_plot(trials: pd.DataFrame, metric: str, mode: str, path: Path, *, title: str = "") -> Path:
    """Each trial's validation score and the best so far, against trial order and against cumulative compute.

    ``trials``: val-stage rows with ``started_at``, ``status``, ``best/<metric>`` and ``device_s`` / ``wall_s``.
    Best-so-far counts completed trials (the ones ``analyze best`` ranks); early-stopped ones are hollow.
    """
    t = trials.sort_values("started_at", kind="stable").reset_index(drop=True)
    score = _finite(t.get(f"best/{metric}", pd.Series(np.nan, index=t.index)))
    cost_col = "device_s" if "device_s" in t and _finite(t["device_s"]).fillna(0).sum() > 0 else "wall_s"
    cost = _finite(t.get(cost_col, pd.Series(0.0, index=t.index))).fillna(0.0).cumsum()
    done = (t["status"] == "completed") & score.notna()
    ranked = score.where(done)
    best = ranked.cummax() if mode == "max" else ranked.cummin()
    x = np.arange(1, len(t) + 1)
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, xs, xlabel in (
        (axes[0], x, "trial (in start order)"),
        (axes[1], cost.to_numpy(), f"cumulative compute: {cost_col.replace('_s', '')} seconds"),
    ):
        ax.scatter(xs[done], score[done], s=28, color="tab:blue", label="completed trial", zorder=3)
        early = (~done) & score.notna()
        if early.any():
            ax.scatter(
                xs[early],
                score[early],
                s=28,
                facecolors="none",
                edgecolors="tab:gray",
                label="stopped/running",
                zorder=3,
            )
        ax.step(xs, best, where="post", color="tab:red", lw=2, label=f"best so far ({mode})")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"validation {metric}")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title or f"Optimisation history: validation {metric}")
    return _save(fig, path)


def importance_plot(importances: dict[str, float], path: Path, *, title: str = "") -> Path:
    names = list(importances)[::-1]
    vals = [importances[n] for n in names]
    fig = Figure(figsize=(6, 0.45 * len(names) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, vals, color="tab:blue")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (share of the objective's variance)")
    ax.set_xlim(0, max([*vals, 0.01]) * 1.2)
    ax.set_title(title or "Hyperparameter importance")
    return _save(fig, path)


def slice_plot(
    trials: pd.DataFrame,
    params: Sequence[str],
    metric: str,
    path: Path,
    *,
    log_params: Sequence[str] = (),
    title: str = "",
) -> Path:
    """Validation score against each parameter's value, one panel per parameter; the best trial in red."""
    score = _finite(trials[f"best/{metric}"])
    n = max(1, len(params))
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.3 * cols, 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True)).ravel()
    best_i = score.idxmax() if score.notna().any() else None
    rng = np.random.default_rng(0)
    for ax, p in zip(axes, params, strict=False):
        raw = trials[f"config/{p}"]
        ok = raw.notna() & score.notna()
        vals, y = raw[ok], score[ok]
        numeric = pd.api.types.is_numeric_dtype(vals) and not pd.api.types.is_bool_dtype(vals)
        if numeric:
            xs = vals.astype(float).to_numpy()
            if p in log_params and (xs > 0).all():
                ax.set_xscale("log")
        else:  # categorical: one column per value, jittered
            cats = sorted({str(v) for v in vals})
            pos = {c: i for i, c in enumerate(cats)}
            xs = np.array([pos[str(v)] for v in vals], dtype=float) + rng.uniform(-0.12, 0.12, len(vals))
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.scatter(xs, y, s=26, color="tab:blue", alpha=0.8)
        if best_i is not None and best_i in vals.index:
            j = list(vals.index).index(best_i)
            ax.scatter([xs[j]], [y.iloc[j]], s=80, color="tab:red", marker="*", zorder=4, label="best")
        ax.set_xlabel(p)
        ax.grid(alpha=0.3)
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    axes[0].set_ylabel(f"validation {metric}")
    fig.suptitle(title or f"Slice plot: validation {metric} against the top parameters")
    return _save(fig, path)


def tradeoff_plot(
    val: pd.DataFrame,
    path: Path,
    *,
    reruns: pd.DataFrame | None = None,
    paper: Sequence[dict[str, Any]] = (),
    title: str = "",
) -> Path:
    """Unseen (U) against seen (S) accuracy with contour lines of H = 2US/(U+S).

    ``val``: the search's trials (``best/U``, ``best/S``, validation stage); ``reruns``: test-stage rows
    (``rank``, ``U``, ``S``), drawn per seed and as rank means with t intervals; ``paper``: published points
    ({"label", "U", "S"} as fractions).
    """
    fig = Figure(figsize=(6.2, 6.2), layout="constrained")
    ax = fig.subplots()
    pts = [(_finite(val.get("best/U", pd.Series(dtype=float))), _finite(val.get("best/S", pd.Series(dtype=float))))]
    ax.scatter(pts[0][0], pts[0][1], s=22, color="tab:gray", alpha=0.7, label="search trials (val stage)")
    xs, ys = list(pts[0][0].dropna()), list(pts[0][1].dropna())
    if reruns is not None and not reruns.empty and {"U", "S", "rank"} <= set(reruns.columns):
        for i, (rank, g) in enumerate(reruns.groupby("rank")):
            c = RANK_COLOURS[i % len(RANK_COLOURS)]
            u, s = _finite(g["U"]), _finite(g["S"])
            ax.scatter(u, s, s=14, color=c, alpha=0.45)
            n = int(u.notna().sum())
            eu = float(u.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
            es = float(s.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
            label = f"rerun rank {rank} (test, mean ± s.e., n={n})"
            ax.errorbar(u.mean(), s.mean(), xerr=eu, yerr=es, fmt="o", ms=8, color=c, capsize=3, label=label)
            xs += list(u.dropna())
            ys += list(s.dropna())
    for p in paper:
        ax.scatter([p["U"]], [p["S"]], marker="*", s=160, color="black", zorder=5, label=p["label"])
        xs.append(p["U"])
        ys.append(p["S"])
    top = min(1.0, max([0.05, *xs, *ys]) * 1.15)
    grid = np.linspace(1e-4, top, 200)
    uu, ss = np.meshgrid(grid, grid)
    hh = 2 * uu * ss / (uu + ss)
    levels = [v for v in MaxNLocator(8).tick_values(0, top) if 0 < v < top]
    cs = ax.contour(uu, ss, hh, levels=levels, colors="tab:green", linewidths=0.8, alpha=0.7)
    ax.clabel(cs, fmt=lambda v: f"H={v:.2f}", fontsize=7)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("U: unseen-class accuracy (per-class mean)")
    ax.set_ylabel("S: seen-class accuracy (per-class mean)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.2)
    fig.legend(loc="outside lower center", ncol=2, fontsize=7)
    ax.set_title(title or "Seen/unseen trade-off (contours: H)")
    return _save(fig, path)


def pareto_plot(table: pd.DataFrame, front: pd.DataFrame, metrics: Sequence[str], path: Path) -> Path:
    """Every completed trial on the first two objectives (``val/<m>``), the Pareto front joined and marked."""
    x, y = f"val/{metrics[0]}", f"val/{metrics[1]}"
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.scatter(_finite(table[x]), _finite(table[y]), s=22, color="tab:gray", alpha=0.7, label="trials (val stage)")
    f = front.sort_values(x)
    ax.plot(f[x], f[y], "o-", color="tab:red", ms=7, label=f"Pareto front ({len(front)})")
    ax.set_xlabel(f"{metrics[0]} (validation)")
    ax.set_ylabel(f"{metrics[1]} (validation)")
    ax.grid(alpha=0.2)
    ax.legend(fontsize=8)
    ax.set_title(f"Pareto front of {', '.join(metrics)}")
    return _save(fig, path)
