"""``zsltune analyze best``: rank a sweep's trials by a validation metric and write the table as CSV and Markdown.

Only ``stage == "val"`` rows are read: the ranking, and so every rerun built on it, never sees a test number.
By default the ranking metric is the sweep's own (the ``best/<metric>`` columns, at each trial's best epoch);
``--by METRIC`` ranks by another one, at the epoch where that metric was best (from ``epochs.parquet``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from zsltune.analysis.sweepdir import Sweep, config_columns, config_of, config_text, load_sweep, markdown_table
from zsltune.errors import ConfigError, DataError
from zsltune.metrics import ZSL_TOP1, H, S, U, recall_key

BEST_CSV, BEST_MD = "best.csv", "best.md"
#: columns of the printed and Markdown table besides val/<by>, in this order where present
SHOWN_METRICS = (H, U, S, ZSL_TOP1, recall_key(1))


def _at_best_epoch(sweep: Sweep, val: pd.DataFrame, by: str, mode: str) -> pd.DataFrame:
    """One row per val trial: ``best_epoch`` and ``val/<m>`` for every metric, at the epoch best by ``by``."""
    metrics = [by] + [m for m in sweep.metrics() if not m.startswith("loss") and m != by]
    if by == sweep.metric and f"best/{by}" in val:  # what the sweep's sink computed, from the same epoch rows
        out = pd.DataFrame({"trial_id": val["trial_id"], "best_epoch": val["best_epoch"]})
        for m in metrics:
            out[f"val/{m}"] = val.get(f"best/{m}", math.nan)
        return out.reset_index(drop=True)
    ep = sweep.epochs[sweep.epochs["trial_id"].isin(set(val["trial_id"]))]
    if by not in ep:
        return pd.DataFrame(columns=["trial_id", "best_epoch", *(f"val/{m}" for m in metrics)])
    ep = ep[pd.to_numeric(ep[by], errors="coerce").notna()].sort_values(["trial_id", "epoch"], kind="stable")
    pick = ep.groupby("trial_id")[by].idxmax() if mode == "max" else ep.groupby("trial_id")[by].idxmin()
    rows = ep.loc[pick.to_numpy()]
    out = pd.DataFrame({"trial_id": rows["trial_id"], "best_epoch": rows["epoch"]})
    for m in metrics:
        out[f"val/{m}"] = rows.get(m, math.nan)
    return out.reset_index(drop=True)


def rank_trials(sweep: Sweep, by: str | None = None, *, include_all: bool = False) -> pd.DataFrame:
    """The sweep's val-stage trials, best first by ``by`` (default: the sweep's metric).

    Completed trials only, unless ``include_all`` (then running and early-stopped trials too, at their best epoch
    so far). Raises :class:`DataError` when no trial qualifies and :class:`ConfigError` for an unknown metric.
    """
    by = by or sweep.metric
    val = sweep.trials[sweep.trials["stage"] == "val"]  # the one filter selection relies on: never another stage
    statuses = ("completed", "stopped", "running") if include_all else ("completed",)
    chosen = val[val["status"].isin(statuses)]
    if chosen.empty:
        counts = val["status"].value_counts().to_dict()
        have = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        hint = "wait for the sweep to finish a trial" + ("" if include_all else ", or pass --all to rank running ones")
        raise DataError(f"{sweep.path}: empty sweep: no completed trial at the val stage (trials: {have}); {hint}")
    if not sweep.metrics():
        raise DataError(f"{sweep.path}: empty sweep: no trial has reported a metric yet; wait for an epoch")
    sweep.check_metric(by)
    mode = sweep.mode_of(by)
    scores = _at_best_epoch(sweep, chosen, by, mode)
    keep = [
        c
        for c in ("trial_id", "sweep", "method", "dataset", "stage", "status", "epochs", "wall_s", "device_s")
        if c in chosen
    ]
    table = chosen[keep + config_columns(chosen)].drop(columns=["sweep"], errors="ignore")
    table = table.merge(scores, on="trial_id", how="inner")
    table = table[pd.to_numeric(table[f"val/{by}"], errors="coerce").notna()]
    if table.empty:
        raise DataError(f"{sweep.path}: empty sweep: no val-stage trial has reported {by} yet; wait for an epoch")
    table.insert(0, "sweep", sweep.name)
    table["config"] = [config_text(config_of(r, sweep.space_params)) for _, r in table.iterrows()]
    table = table.sort_values(f"val/{by}", ascending=(mode == "min"), kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs.update(by=by, mode=mode)
    return table


def best(
    sweep_dirs: str | Path | Sequence[str | Path],
    *,
    top: int | None = None,
    by: str | None = None,
    include_all: bool = False,
) -> pd.DataFrame:
    """Rank the trials of one or several sweeps together; columns ``rank, sweep, trial_id, …, val/<metric>, …``."""
    dirs = [sweep_dirs] if isinstance(sweep_dirs, str | Path) else list(sweep_dirs)
    if not dirs:
        raise ConfigError("analyze best: pass at least one sweep directory")
    if top is not None and top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    sweeps = [load_sweep(d) for d in dirs]
    metric = by or sweeps[0].metric
    if by is None and len({s.metric for s in sweeps}) > 1:
        names = ", ".join(sorted({s.metric for s in sweeps}))
        raise ConfigError(f"the sweeps rank by different metrics ({names}); pass --by METRIC to rank them together")
    modes = {s.mode_of(metric) for s in sweeps}
    if len(modes) > 1:
        raise ConfigError(f"--by {metric}: the sweeps disagree on whether it is maximised or minimised")
    tables = [rank_trials(s, metric, include_all=include_all) for s in sweeps]
    mode = tables[0].attrs["mode"]
    table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    table = table.sort_values(f"val/{metric}", ascending=(mode == "min"), kind="stable").reset_index(drop=True)
    table["rank"] = range(1, len(table) + 1)
    if top is not None:
        table = table.head(top)
    table.attrs.update(by=metric, mode=mode, sweeps=[str(s.path) for s in sweeps])
    return table


def objectives(sweep: Sweep) -> list[str]:
    """The metrics the sweep's study optimised (``--metric U,S``: several; else the one it ranks by)."""
    given = [m.strip() for m in str(sweep.options.get("metric") or "").split(",") if m.strip()]
    return given if len(given) > 1 else [sweep.metric]


def pareto_front(table: pd.DataFrame, metrics: Sequence[str], modes: Sequence[str]) -> pd.DataFrame:
    """The rows of ``table`` (``val/<m>`` columns) that no other row dominates on ``metrics``: at least as good on
    every one and better on one; ``modes`` max/min per metric. Sorted by the first metric, best first."""
    sign = [1.0 if m == "max" else -1.0 for m in modes]
    vals = [[s * float(r[f"val/{m}"]) for m, s in zip(metrics, sign, strict=True)] for _, r in table.iterrows()]
    keep = [
        not any(all(b >= a for a, b in zip(v, w, strict=True)) and w != v for w in vals)
        for v in vals
    ]  # fmt: skip
    front = table[keep]
    return front.sort_values(f"val/{metrics[0]}", ascending=(modes[0] == "min"), kind="stable").reset_index(drop=True)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns worth reading: rank, (sweep), trial, val metrics, epochs, cost, config."""
    by = table.attrs.get("by", "H")
    cols = ["rank"]
    if table["sweep"].nunique() > 1:
        cols.append("sweep")
    cols.append("trial_id")
    if (table.get("status", pd.Series(dtype=str)) != "completed").any():
        cols.append("status")
    cols.append(f"val/{by}")
    cols += [f"val/{m}" for m in SHOWN_METRICS if m != by and f"val/{m}" in table and table[f"val/{m}"].notna().any()]
    cols += [c for c in ("best_epoch", "epochs", "wall_s", "device_s", "config") if c in table]
    out = table[cols].copy()
    for c in ("wall_s", "device_s"):
        if c in out:
            out[c] = pd.to_numeric(out[c], errors="coerce").round(2)
    return out


def write_best(table: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """``best.csv`` (every column) and ``best.md`` (the readable columns) in ``out_dir``."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; pass a directory")
    out.mkdir(parents=True, exist_ok=True)
    by, mode = table.attrs.get("by", "H"), table.attrs.get("mode", "max")
    csv, md = out / BEST_CSV, out / BEST_MD
    tmp = out / f".{BEST_CSV}.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(csv)
    sweeps = ", ".join(f"`{s}`" for s in table.attrs.get("sweeps", sorted(set(table["sweep"]))))
    text = (
        f"# Best configurations by validation {by} ({mode})\n\n"
        f"Sweeps: {sweeps}. All numbers are **validation-stage** (`stage == val`), at each trial's best epoch; "
        f"test numbers come only from `zsltune analyze rerun`. Costs in seconds (wall clock and device time).\n\n"
        f"{markdown_table(display_table(table))}\n"
    )
    tmp = out / f".{BEST_MD}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(md)
    return csv, md


def default_out(sweep_dirs: Sequence[str | Path]) -> Path:
    """Next to the sweep (one sweep), else the folder the sweeps share."""
    paths = [Path(d).expanduser().resolve() for d in sweep_dirs]
    if len(paths) == 1:
        return paths[0]
    common = Path(*Path(paths[0]).parts[: min(len(p.parts) for p in paths)])
    while any(common not in (p, *p.parents) for p in paths):
        common = common.parent
    return common
