"""Reading a sweep directory: its stored options, ``trials.parquet`` and ``epochs.parquet``, and its metrics.

Works while the sweep is still running: the Parquet files are replaced atomically by the sweep's driver, a trial
may be ``running`` or have no epoch rows yet, and ``epochs.parquet`` may lag ``trials.parquet`` by one write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from zsltune import provenance
from zsltune.errors import ConfigError, DataError, ZsltuneError
from zsltune.provenance import SPACE_COPY
from zsltune.results import EPOCHS_FILE, TRIALS_FILE

OPTIONS_FILE = "zsltune.json"  # zsltune.sweep.options.OPTIONS_FILE (not imported: that module imports the methods)
#: numeric columns of an epoch row that are bookkeeping, not metrics
NOT_METRICS = frozenset(
    {"epoch", "wall_s", "epoch_s", "device_s", "timestamp", "train_s", "eval_s", "pid", "restores", "seed", "rank"}
)


@dataclass
class Sweep:
    """One sweep directory as read now."""

    path: Path
    options: dict[str, Any]
    trials: pd.DataFrame  # every row, every stage and status (selection code filters to stage == "val")
    epochs: pd.DataFrame  # may be empty
    metric: str  # the metric the sweep ranked epochs by (trials' best/<m> columns are at its best epoch)
    mode: str
    space_params: dict[str, Any] = field(default_factory=dict)  # name -> zsltune.space.Param, when the YAML loads
    provenance: dict[str, Any] | None = None  # provenance.json; None for a sweep from before it was recorded

    @property
    def name(self) -> str:
        return self.path.name

    def metrics(self) -> list[str]:
        """Metrics a trial reported (``best/<m>`` columns and numeric epoch columns), bookkeeping left out."""
        names = {c.split("/", 1)[1] for c in self.trials.columns if c.startswith("best/")}
        names |= {c for c in self.epochs.columns if pd.api.types.is_numeric_dtype(self.epochs[c])}
        return sorted(n for n in names if n not in NOT_METRICS and n != "trial_id")

    def mode_of(self, metric: str) -> str:
        if metric == self.metric:
            return self.mode
        return "min" if metric.startswith("loss") or metric.endswith("_s") else "max"

    def check_metric(self, metric: str, option: str = "--by") -> None:
        available = self.metrics()
        if metric not in available:
            raise ConfigError(
                f"{option} {metric}: no such metric in {self.path}; available: {', '.join(available) or 'none yet'}"
            )

    @property
    def synthetic(self) -> bool | None:
        """True/False when trials.parquet says whether the features were synthetic, None when it does not."""
        col = self.trials.get("synthetic")
        if col is None or col.isna().all():
            return None
        return bool(col.dropna().astype(bool).any())


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        msg = f"{path}: not a readable Parquet file ({type(e).__name__}); re-run or resume the sweep"
        raise DataError(msg) from None


def space_source(d: Path, options: dict[str, Any]) -> str | None:
    """The space a sweep ran: its copy in the sweep folder (as it ran), else the stored path (a sweep from before
    the copy was kept: the live YAML, which may have changed since)."""
    copy = d / SPACE_COPY
    return str(copy) if copy.is_file() else options.get("space")


def _search_metric(d: Path, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The metric and mode the sweep's Parquet sink used (zsltune.json and the space as it ran), else H / max."""
    params: dict[str, Any] = {}
    space_metric, mode = "H", "max"
    source = space_source(d, options)
    if source:
        try:
            from zsltune.space import load_space

            space = load_space(source)
            space_metric, mode = space.metric, space.mode
            params = {p.name: p for p in space.params}
        except ZsltuneError:  # the YAML moved or changed since the sweep: fall back to the defaults
            pass
    metrics = [m.strip() for m in str(options.get("metric") or space_metric).split(",") if m.strip()]
    return (metrics[0] if len(metrics) == 1 else space_metric), mode, params


def load_sweep(path: str | Path) -> Sweep:
    """Read one sweep directory; :class:`~zsltune.errors.DataError` when it holds no results."""
    d = Path(path).expanduser()
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory; pass a sweep directory (the folder holding trials.parquet)")
    if not (d / TRIALS_FILE).is_file():
        hint = (
            "the sweep has not finished a trial epoch yet (wait) or was not started"
            if (d / OPTIONS_FILE).is_file()
            else "not a sweep directory; pass the folder `zsltune run` printed (…/zsltune_results/<sweep>)"
        )
        raise DataError(f"{d}: no {TRIALS_FILE} (no Parquet results): {hint}")
    options: dict[str, Any] = {}
    if (d / OPTIONS_FILE).is_file():
        try:
            options = json.loads((d / OPTIONS_FILE).read_text())
        except json.JSONDecodeError as e:
            msg = f"{d / OPTIONS_FILE}: invalid JSON ({e.msg} at line {e.lineno}); restore the file"
            raise DataError(msg) from None
    trials = _read_parquet(d / TRIALS_FILE)
    epochs = _read_parquet(d / EPOCHS_FILE) if (d / EPOCHS_FILE).is_file() else pd.DataFrame()
    for col in ("trial_id", "stage", "status"):
        if col not in trials:
            raise DataError(f"{d / TRIALS_FILE}: no '{col}' column; not a zsltune trials file")
    if "trial_id" not in epochs or "epoch" not in epochs:
        epochs = pd.DataFrame({"trial_id": pd.Series(dtype=str), "epoch": pd.Series(dtype="int64")})
    metric, mode, params = _search_metric(d, options)
    return Sweep(d, options, trials, epochs, metric, mode, params, provenance=provenance.read(d))


def with_recall_columns(metrics: tuple[str, ...] | list[str], columns: Any, prefix: str = "") -> list[str]:
    """``metrics`` and, after them, every ``recall@K`` the columns hold (``prefix`` + name) not already listed, by K:
    a retrieval stage's list is data-side (SOP: 1, 10, 100, 1000), so the tables take it from the results."""
    have = {str(c)[len(prefix) :] for c in columns if str(c).startswith(prefix)}
    extra = [m for m in have if m.startswith("recall@") and m[7:].isdigit() and m not in metrics]
    return [*metrics, *sorted(extra, key=lambda m: int(m[7:]))]


def config_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith("config/"))


def plain(v: Any) -> Any:
    """A Parquet cell as a plain Python value (numpy scalars unwrapped); None for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return v
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def config_of(row: pd.Series | dict[str, Any], space_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters of a trials row, without the inactive (missing) ones, in their search-space types.

    Parquet widens an int column holding a missing value to float and stores a categorical that mixes types as
    strings; the space says what each parameter was, so ``batch_size`` comes back as ``32``, not ``32.0``.
    """
    out: dict[str, Any] = {}
    for key, raw in dict(row).items():
        if not str(key).startswith("config/"):
            continue
        v = plain(raw)
        if v is None:
            continue
        name = str(key).split("/", 1)[1]
        p = (space_params or {}).get(name)
        if p is not None and p.type == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)
        elif p is not None and p.type == "float" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        elif p is not None and p.type == "categorical" and v not in p.choices:
            v = next((c for c in p.choices if str(c) == str(v)), v)
        out[name] = v
    return out


def config_text(config: dict[str, Any]) -> str:
    """``lr=0.0001, K=3``: compact, with floats in 3 significant digits."""
    parts = []
    for k, v in config.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def markdown_table(frame: pd.DataFrame, *, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""

    def cell(v: Any) -> str:
        v = plain(v)
        if v is None:
            return ""
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
