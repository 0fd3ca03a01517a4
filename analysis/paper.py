"""The papers' published numbers (``analysis/paper_results.csv``), for the report's side-by-side table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from zsltune.errors import DataError
from zsltune.metrics import PAPER_RECALL_KS, ZSL_TOP1, H, S, U, recall_keys

PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.csv"
#: metric columns of the table, in percent as the papers print them
PAPER_METRICS = (U, S, H, ZSL_TOP1, *recall_keys(PAPER_RECALL_KS))


def paper_results(path: str | Path = PAPER_RESULTS) -> pd.DataFrame:
    """The whole table: method, dataset, attributes, U, S, H, zsl_top1, recall@K (percent), variant, source."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: the table of published results is missing; restore analysis/paper_results.csv")
    table = pd.read_csv(p, comment="#", dtype={"method": str, "dataset": str, "attributes": str})
    missing = {"method", "dataset", "source"} - set(table.columns)
    if missing:
        raise DataError(f"{p}: missing column(s) {', '.join(sorted(missing))}")
    return table


def paper_rows(method: str, dataset: str, *, path: str | Path = PAPER_RESULTS) -> pd.DataFrame:
    """Published rows for one method and dataset (names compared case-insensitively; AwA2 == AWA2)."""
    t = paper_results(path)
    keep = (t["method"].str.lower() == str(method).lower()) & (t["dataset"].str.upper() == str(dataset).upper())
    return t[keep].reset_index(drop=True)
