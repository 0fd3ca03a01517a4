"""The ablation table of a grid sweep (``zsltune run --grid NAME --repeats N``): trials grouped by the grid's
parameters, each group's mean with t and bootstrap intervals over its seeds, and paired differences (same seeds)
against a baseline level.

Every number is a trial's validation value at its last iteration (``last/<metric>``): each configuration ran its
full budget, so no per-seed epoch was picked on the data being compared. A failed trial (diverged, say) counts in
``failed`` and contributes no value.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from zsltune.analysis.report_blocks import Block, Heading, Paragraph, Table
from zsltune.analysis.stats import BOOTSTRAP_MIN_N, paired_comparison, summarize
from zsltune.analysis.sweepdir import Sweep, plain, with_recall_columns
from zsltune.errors import ConfigError
from zsltune.metrics import H_CAL, NMI, ZSL_TOP1, H, S, U, recall_keys

#: metrics tabled next to the sweep's own, where the trials report them
SHOWN = (H, U, S, H_CAL, ZSL_TOP1, *recall_keys((1, 4)), NMI)


def _items(sweep: Sweep) -> list[tuple[list[str], list[tuple[Any, ...]] | None]]:
    """The stored ``--grid`` items: (parameter names, the levels given or None), read as ``zsltune run`` reads them."""
    items = [str(item) for item in sweep.options.get("grid") or []]
    if not items:  # a search: no need for zsltune.sweep (which imports Ray)
        return []
    from zsltune.sweep.grid import parse_grid_items

    return parse_grid_items(items)


def grid_of(sweep: Sweep) -> list[str]:
    """The grid's parameter names, from the sweep's stored options ([] for a search)."""
    return [n for names, _ in _items(sweep) for n in names]


def is_grid(sweep: Sweep) -> bool:
    return bool(grid_of(sweep)) or int(sweep.options.get("repeats") or 1) > 1


def _order(sweep: Sweep, present: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The levels present, in the order the grid gave them (values listed, else the space's choices)."""
    import itertools

    per_item = []
    for names, levels in _items(sweep):
        if levels is None:
            p = sweep.space_params.get(names[0])
            levels = [(v,) for v in (getattr(p, "choices", ()) or ())]
        per_item.append(levels)
    order = [tuple(v for part in combo for v in part) for combo in itertools.product(*per_item)]
    have = set(present)
    return [lv for lv in order if lv in have] + sorted((lv for lv in present if lv not in set(order)), key=str)


def parse_baseline(text: str | None, names: list[str]) -> dict[str, Any]:
    """``--baseline ablation=gen`` (``a=x,b=y`` for a grid over several parameters) as {name: value}."""
    import yaml

    out: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in names:
            raise ConfigError(
                f"--baseline {text}: expected NAME=VALUE with NAME one of the grid's parameters "
                f"({', '.join(names) or 'none: this sweep has no grid'})"
            )
        out[key.strip()] = yaml.safe_load(value)
    return out


def ablation_tables(
    sweep: Sweep, *, baseline: str | None = None, confidence: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(per-level summary, paired differences against the baseline, the baseline) of a grid sweep."""
    names = grid_of(sweep)
    trials = sweep.trials[sweep.trials["stage"] == "val"].copy()
    trials["level"] = trials.apply(lambda r: tuple(plain(r.get(f"config/{n}")) for n in names), axis=1)
    order = _order(sweep, list(dict.fromkeys(trials["level"])))
    shown = with_recall_columns(list(dict.fromkeys([sweep.metric, *SHOWN])), trials.columns, prefix="last/")
    metrics = [m for m in shown if f"last/{m}" in trials]
    values = trials[["level", "seed", "status"]].copy()
    for m in metrics:
        values[m] = pd.to_numeric(trials[f"last/{m}"], errors="coerce")
    values["device_s"] = pd.to_numeric(trials.get("device_s"), errors="coerce")  # each arm's compute
    rank = {lv: i for i, lv in enumerate(order)}
    summary = summarize(values, metrics, by="level", confidence=confidence)
    failed = values.groupby("level")["status"].apply(lambda s: int((s == "failed").sum()))
    summary["failed"] = summary["level"].map(failed).fillna(0).astype(int)
    summary["device_s"] = summary["level"].map(values.groupby("level")["device_s"].mean())
    order_of = {"level": rank, "metric": {m: i for i, m in enumerate(metrics)}}  # the sweep's metric first
    summary = summary.sort_values(by=["level", "metric"], key=lambda c: c.map(order_of[str(c.name)]))
    base = parse_baseline(baseline, names) or dict(zip(names, order[0], strict=True)) if order else {}
    base_level = tuple(base.get(n) for n in names)
    if names and base_level not in rank:
        raise ConfigError(
            f"--baseline {baseline}: no trials at that level; levels: "
            + "; ".join(", ".join(f"{n}={v}" for n, v in zip(names, lv, strict=True)) for lv in order)
        )
    rows = []
    ref = values[values["level"] == base_level].set_index("seed")
    for lv in order:
        if lv == base_level:
            continue
        cur = values[values["level"] == lv].set_index("seed")
        seeds = sorted(set(cur.index) & set(ref.index))
        for m in metrics:
            pc = paired_comparison(cur.loc[seeds, m].to_numpy(), ref.loc[seeds, m].to_numpy(), confidence)
            rows.append({"level": lv, "metric": m, **pc.as_dict()})
    return summary.reset_index(drop=True), pd.DataFrame(rows), base


def _label(names: list[str], level: tuple[Any, ...]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, level, strict=True)) or "default configuration"


def _cell(mean: float, half: float, lo: float, hi: float, reliable: bool = True) -> str:
    if not math.isfinite(half):
        return f"{mean:.4f}"
    if not reliable:  # too few seeds for a bootstrap: the t interval alone
        return f"{mean:.4f} ± {half:.4f}"
    return f"{mean:.4f} ± {half:.4f} [{lo:.4f}, {hi:.4f}]"


def ablation_section(sweep: Sweep, *, baseline: str | None = None) -> list[Block]:
    """Report blocks: the ablation table and the paired differences against the baseline."""
    names = grid_of(sweep)
    summary, paired, base = ablation_tables(sweep, baseline=baseline)
    blocks: list[Block] = [Heading("Ablation")]
    if summary.empty:
        return [*blocks, Paragraph("No trial of the grid has reported yet.")]
    metric = sweep.metric
    repeats = int(sweep.options.get("repeats") or 1)
    blocks.append(
        Paragraph(
            f"A grid over {', '.join(f'`{n}`' for n in names) or 'the default configuration'} with {repeats} seed(s) "
            f"per configuration, the rest at the space's defaults, every trial at its full budget. Each cell: the "
            f"mean over seeds of the validation value at the last iteration ± the t half-width (95%), then, with at "
            f"least {BOOTSTRAP_MIN_N} seeds, the BCa bootstrap interval of the mean (95%, 9,999 resamples). "
            f"`device s/trial`: each arm's compute, the mean "
            f"training + evaluation seconds of its trials."
        )
    )
    wide: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in summary.to_dict("records"):
        row = wide.setdefault(
            r["level"], {"configuration": _label(names, r["level"]), "n": r["n"], "failed": 0, "device s/trial": ""}
        )
        row["failed"] = r["failed"]
        row["device s/trial"] = f"{r['device_s']:.0f}" if math.isfinite(r["device_s"]) else "-"
        row[r["metric"]] = _cell(r["mean"], r["half"], r["boot_lo"], r["boot_hi"], bool(r.get("boot_reliable", True)))
        if r["metric"] == metric:
            row["n"] = r["n"]
    blocks.append(Table(pd.DataFrame(list(wide.values()))))
    if not paired.empty:
        p = paired[paired["metric"] == metric]
        blocks.append(
            Paragraph(
                f"Paired differences in `{metric}` against the baseline **{_label(names, tuple(base.values()))}** "
                f"(the same seeds; a difference whose interval excludes 0 is one the seeds support):"
            )
        )
        blocks.append(
            Table(
                pd.DataFrame(
                    {
                        "configuration": [_label(names, lv) for lv in p["level"]],
                        "pairs": p["n"].to_numpy(),
                        f"Δ {metric}": [f"{v:+.4f}" for v in p["mean_diff"]],
                        "t 95%": [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(p["lo"], p["hi"], strict=True)],
                        "bootstrap 95%": [
                            f"[{lo:+.4f}, {hi:+.4f}]" if n >= BOOTSTRAP_MIN_N else "n < 6"
                            for lo, hi, n in zip(p["boot_lo"], p["boot_hi"], p["n"], strict=True)
                        ],
                        "p (paired t)": [f"{v:.3g}" for v in p["p"]],
                    }
                )
            )
        )
    return blocks
