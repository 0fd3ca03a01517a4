"""The Parquet sink of a sweep: ``trials.parquet`` (one row per trial) and ``epochs.parquet`` (one per trial-epoch).

Rows are keyed (``trial_id`` and ``(trial_id, epoch)``) and upserted, so a resumed sweep that re-reports an epoch
replaces the row instead of doubling it, and a sink re-opened on an existing directory starts from what is there.
Files are written to a temporary name and renamed, so a reader never sees a half-written file. Plain
``pandas.read_parquet`` reads them. This module does not import Ray: the Tune callback lives in :mod:`zsltune.sweep`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

TRIALS_FILE, EPOCHS_FILE = "trials.parquet", "epochs.parquet"
#: columns every trials.parquet has, whatever the method; then config/<param>, best/<metric>, last/<metric>
TRIAL_COLUMNS = (
    "trial_id",
    "sweep",
    "method",
    "dataset",
    "stage",
    "seed",
    "status",
    "error",
    "failures",
    "last_failure",
    "epochs",
    "best_epoch",
    "wall_s",
    "device_s",
    "node",
    "hostname",
    "node_ip",
    "started_at",
    "ended_at",
)
#: per-iteration bookkeeping kept in epochs.parquet but not summarised into best/<m> and last/<m>
BOOKKEEPING = frozenset({"pid", "restores", "timestamp", "train_s", "eval_s", "epoch_s", "wall_s", "device_s", "step"})
#: trials.parquet's time columns: seconds since the epoch in memory, UTC timestamps on disk
TIME_COLUMNS = ("started_at", "ended_at")
EPOCH_COLUMNS = ("trial_id", "epoch", "wall_s", "epoch_s", "device_s", "timestamp")
STATUSES = ("running", "completed", "stopped", "failed")


def write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def clean_value(v: Any) -> Any:
    """Parquet-friendly scalars: numpy scalars to Python, containers to strings."""
    if hasattr(v, "item") and callable(v.item):
        try:
            return v.item()
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, list | tuple | dict | set):
        return str(v)
    return v


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> int:
    """A stored count, 0 where absent (a row from before the column existed reads back as None or NaN)."""
    return int(v) if _finite(v) else 0


def uniform_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing value types (a categorical of 0 and "auto") become strings, so Arrow can store them."""
    for col in [c for c in df.columns if df[c].dtype == object]:
        kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and not kinds <= {int, float}:
            df[col] = [None if v is None else str(v) for v in df[col]]
    return df


class ResultsSink:
    """Accumulates trial and epoch rows for one sweep directory and writes them atomically."""

    def __init__(self, sweep_dir: str | Path, *, metric: str, mode: str = "max", min_interval_s: float = 2.0):
        self.dir = Path(sweep_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metric, self.mode = metric, mode
        self.min_interval_s = min_interval_s
        self.trials: dict[str, dict[str, Any]] = {}
        self.epochs: dict[tuple[str, int], dict[str, Any]] = {}
        self._by_trial: dict[str, dict[int, dict[str, Any]]] = {}
        self._dirty = False
        self._last_flush = -math.inf
        self.write_s = 0.0  # time spent writing, for the overhead benchmark
        if (self.dir / TRIALS_FILE).is_file():
            for row in pd.read_parquet(self.dir / TRIALS_FILE).to_dict("records"):
                for col in TIME_COLUMNS:  # back to seconds (a file from before the change holds floats already)
                    if isinstance(row.get(col), pd.Timestamp):
                        row[col] = None if pd.isna(row[col]) else row[col].timestamp()
                self.trials[row["trial_id"]] = row
        if (self.dir / EPOCHS_FILE).is_file():
            for row in pd.read_parquet(self.dir / EPOCHS_FILE).to_dict("records"):
                self.epochs[(row["trial_id"], int(row["epoch"]))] = row
                self._by_trial.setdefault(row["trial_id"], {})[int(row["epoch"])] = row

    @property
    def trials_path(self) -> Path:
        return self.dir / TRIALS_FILE

    @property
    def epochs_path(self) -> Path:
        return self.dir / EPOCHS_FILE

    def start_trial(self, trial_id: str, *, config: dict[str, Any], **fields: Any) -> None:
        row = self.trials.setdefault(trial_id, {"trial_id": trial_id, "started_at": time.time(), "epochs": 0})
        row.update({k: clean_value(v) for k, v in fields.items()})
        row.update({f"config/{k}": clean_value(v) for k, v in config.items()})
        row["status"] = "running"
        row["error"] = None
        row["failures"] = _count(row.get("failures"))
        self._dirty = True

    def add_epoch(self, trial_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        """Upsert the row of one trial-epoch and refresh the trial's best/last columns."""
        row = {"trial_id": trial_id, "epoch": int(epoch)}
        row.update({k: clean_value(v) for k, v in metrics.items() if k not in row})
        self.epochs[(trial_id, int(epoch))] = row
        self._by_trial.setdefault(trial_id, {})[int(epoch)] = row
        trial = self.trials.setdefault(trial_id, {"trial_id": trial_id, "started_at": time.time()})
        self._refresh(trial)
        for key in ("wall_s", "device_s", "node", "hostname", "node_ip"):
            if key in metrics:
                trial[key] = clean_value(metrics[key])
        self._dirty = True

    def _refresh(self, trial: dict[str, Any]) -> None:
        """best/<m> (at the best epoch by the sweep metric) and last/<m>, from the trial's current epoch rows."""
        rows = self._by_trial[trial["trial_id"]]
        for k in [k for k in trial if k.startswith(("best/", "last/"))]:
            del trial[k]
        last = rows[max(rows)]
        scored = [r for r in rows.values() if _finite(r.get(self.metric))]
        best = (max if self.mode == "max" else min)(scored, key=lambda r: r[self.metric]) if scored else None
        trial["epochs"] = int(last["epoch"])
        trial["best_epoch"] = int(best["epoch"]) if best else None
        for prefix, r in (("last/", last), ("best/", best)):
            for k, v in (r or {}).items():
                if k in ("trial_id", "epoch") or k in BOOKKEEPING:
                    continue
                if isinstance(v, int | float) and not isinstance(v, bool):
                    trial[prefix + k] = v

    def end_trial(self, trial_id: str, *, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        row = self.trials.setdefault(trial_id, {"trial_id": trial_id})
        row.update(status=status, error=error, ended_at=time.time())
        self._dirty = True

    def drop_trials(self, trial_ids: list[str]) -> None:
        """Forget trials: their row in trials.parquet and their rows in epochs.parquet."""
        gone = set(trial_ids)
        for tid in gone:
            self.trials.pop(tid, None)
            self._by_trial.pop(tid, None)
        self.epochs = {k: v for k, v in self.epochs.items() if k[0] not in gone}
        self._dirty = True

    def record_failure(self, trial_id: str, reason: str) -> None:
        """One failed attempt of a trial, retried or final: ``failures`` += 1, ``last_failure`` = its reason.

        ``error`` stays for the terminal failure (:meth:`end_trial`); a trial that failed, was retried and then
        completed keeps ``error`` empty and tells its story in ``failures`` and ``last_failure``.
        """
        row = self.trials.setdefault(trial_id, {"trial_id": trial_id})
        row["failures"] = _count(row.get("failures")) + 1
        row["last_failure"] = reason
        self._dirty = True

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        trials = pd.DataFrame(list(self.trials.values()))
        for col in TRIAL_COLUMNS:
            if col not in trials:
                trials[col] = None
        trials["failures"] = [_count(v) for v in trials["failures"]]
        for col in TIME_COLUMNS:
            trials[col] = pd.to_datetime(pd.to_numeric(trials[col], errors="coerce"), unit="s", utc=True)
        trials = uniform_columns(trials[list(TRIAL_COLUMNS) + sorted(c for c in trials if c not in TRIAL_COLUMNS)])
        epochs = pd.DataFrame(sorted(self.epochs.values(), key=lambda r: (r["trial_id"], r["epoch"])))
        for col in EPOCH_COLUMNS:
            if col not in epochs:
                epochs[col] = None
        epochs = uniform_columns(epochs[list(EPOCH_COLUMNS) + sorted(c for c in epochs if c not in EPOCH_COLUMNS)])
        return trials, epochs

    def flush(self, *, force: bool = False) -> bool:
        """Write both files if anything changed (at most every ``min_interval_s`` unless ``force``)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_flush < self.min_interval_s):
            return False
        t0 = time.perf_counter()
        trials, epochs = self.frames()
        write_atomic(epochs, self.epochs_path)
        write_atomic(trials, self.trials_path)
        self.write_s += time.perf_counter() - t0
        self._dirty, self._last_flush = False, now
        return True


def read_results(sweep_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials, epochs)`` of a sweep directory."""
    d = Path(sweep_dir)
    return pd.read_parquet(d / TRIALS_FILE), pd.read_parquet(d / EPOCHS_FILE)
