"""Reference baselines (ESZSL, the seen-class softmax, f-CLSWGAN) on a sweep's own data, beside its best result.

A tuned method's number means something only next to a known method on the same stage of the same data: on the test
stage where the sweep has test-stage reruns (the baselines' knobs chosen on the val stage and frozen, as the reruns'
are), else on the val stage the search saw. The figures are cached in ``references.parquet`` in the sweep folder,
one row per (baseline, variant, stage, data seed), so a second report does not refit them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd

from zsltune.analysis.report_blocks import Block, Heading, Paragraph, Table
from zsltune.analysis.sweepdir import Sweep
from zsltune.errors import ConfigError, ZsltuneError
from zsltune.metrics import H_CAL, ZSL_TOP1, H, S, U

REFERENCES_FILE = "references.parquet"
#: what a report shows unless told: the two that take seconds (f-CLSWGAN takes minutes: ask for it by name)
DEFAULT_REFERENCES = ("eszsl", "softmax")
#: the columns shown, in percent
SHOWN = (ZSL_TOP1, S, U, H, H_CAL)


def parse_references(text: str | None) -> tuple[str, ...]:
    """``--references`` as baseline names: comma-separated, ``none`` for no section, None for the defaults."""
    from zsltune.baseline import BASELINES

    if text is None:
        return DEFAULT_REFERENCES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("none",):
        return ()
    bad = [n for n in names if n not in BASELINES]
    if bad or not names:
        raise ConfigError(
            f"--references {text}: '{bad[0] if bad else text}' is not a baseline; give a comma-separated list of "
            f"{', '.join(BASELINES)}, or none"
        )
    return names


def _key(name: str, stage: str, data_seed: int) -> dict[str, Any]:
    from zsltune.baseline import get_baseline

    return {"baseline": name, "variant": get_baseline(name).variants[0], "stage": stage, "data_seed": data_seed}


def reference_rows(sweep: Sweep, names: tuple[str, ...], *, stage: str) -> pd.DataFrame:
    """Each baseline's figures (fractions) on ``stage`` of the sweep's data, fitted where ``references.parquet``
    does not hold them yet (then stored there)."""
    from zsltune.baseline import baseline_report
    from zsltune.data import load_stage

    o = sweep.options
    data_seed = int(o.get("data_seed") if o.get("data_seed") is not None else o.get("seed", 0) or 0)
    path = sweep.path / REFERENCES_FILE
    cached = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    rows, fresh = [], []
    val, test = None, None
    for name in names:
        key = _key(name, stage, data_seed)
        if not cached.empty:
            hit = cached[(cached[list(key)] == pd.Series(key)).all(axis=1)]
            if len(hit):
                rows.append(hit.iloc[-1].to_dict())
                continue
        if val is None:  # the stages are loaded only when a baseline has to be fitted
            kw = {"data_root": o.get("data_root"), "attributes": str(o.get("attributes") or "att"), "seed": data_seed}
            dataset = str(o.get("dataset"))
            val = load_stage(dataset, "val", **kw)
            if stage == "test":  # loaded once, when the first baseline has frozen its knobs on val
                test = functools.cache(lambda: load_stage(dataset, "test", **kw))  # noqa: B023 - called in this pass
        out = baseline_report(name, val, test, seed=0)
        row = {**key, **{m: float(out[m]) for m in SHOWN if m in out}}
        rows.append(row)
        fresh.append(row)
    if fresh:
        pd.concat([cached, pd.DataFrame(fresh)], ignore_index=True).to_parquet(path, index=False)
    return pd.DataFrame(rows)


def _pct(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(100 * f, 1)


def references_section(
    sweep: Sweep, table: pd.DataFrame, reruns: pd.DataFrame | None, names: tuple[str, ...]
) -> list[Block]:
    """The report's "Reference baselines" section: the sweep's rank 1 and each baseline, same stage, same data."""
    from zsltune.methods import get_method

    if not names:
        return []
    blocks: list[Block] = [Heading("Reference baselines")]
    method = str(table["method"].iloc[0]) if "method" in table else ""
    try:
        cls = get_method(method)
    except ZsltuneError:  # a method outside the package: nothing to say about its data
        cls = None
    if cls is None or cls.metric_family != "gzsl" or cls.data_source != "features":
        kind = "its own data" if cls is None else f"{cls.data_source} ({cls.metric_family})"
        blocks.append(Paragraph(f"The reference baselines fit image features for GZSL; `{method}` trains on {kind}."))
        return blocks
    ok = reruns[(reruns["status"] == "completed") & (reruns["stage"] == "test")] if reruns is not None else None
    if ok is not None and not ok.empty:
        stage, best = "test", ok[ok["rank"] == ok["rank"].min()]
        ours = {m: _pct(pd.to_numeric(best[m], errors="coerce").mean()) for m in SHOWN if m in best}
        label = f"{method}, rank 1 (mean of {len(best)} seeds)"
    else:
        stage = "val"
        ours = {m: _pct(table[f"val/{m}"].iloc[0]) for m in SHOWN if f"val/{m}" in table}
        label = f"{method}, rank 1 (its best epoch)"
    if not sweep.options.get("dataset"):
        blocks.append(
            Paragraph("No `zsltune.json` in the sweep folder: its data are unknown, so no baseline was fitted.")
        )
        return blocks
    try:
        refs = reference_rows(sweep, names, stage=stage)
    except ZsltuneError as e:  # the data moved or were deleted since the sweep: say so, keep the rest of the report
        blocks.append(Paragraph(f"The reference baselines could not be fitted: {e}"))
        return blocks
    shown = [{"result": label, **ours}]
    shown += [{"result": f"{r['baseline']}" + (f" ({r['variant']})" if r["variant"] != "default" else ""),
               **{m: _pct(r.get(m)) for m in SHOWN}} for r in refs.to_dict("records")]  # fmt: skip
    blocks.append(
        Paragraph(
            f"Accuracies in percent on the **{stage} stage** of the same data. Every baseline knob (ESZSL's γ and "
            "λ, the softmax's weight decay, calibrated stacking's offset of `H_cal`) is chosen on the val stage"
            + (" and frozen for the test stage." if stage == "test" else ".")
            + " The softmax classifies seen images among seen classes only: its S is the seen side's ceiling for "
            f"a linear model. Cached in `{REFERENCES_FILE}`."
        )
    )
    blocks.append(Table(pd.DataFrame(shown)))
    return blocks
