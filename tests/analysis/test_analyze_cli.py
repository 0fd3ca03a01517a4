"""`zsltune analyze ...` through zsltune.cli.main: output, files, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from zsltune.cli import main
from zsltune.results import ResultsSink


def test_analyze_best_prints_and_writes(crnet_sweep: Path, tmp_path: Path, capsys) -> None:
    assert main(["analyze", "best", str(crnet_sweep), "--top", "2", "--by", "U", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best configurations by validation U (max)" in out and "val/U" in out and "hidden=32" in out
    assert len(pd.read_csv(tmp_path / "best.csv")) == 2 and (tmp_path / "best.md").is_file()


def test_analyze_report_via_cli(crnet_sweep: Path, tmp_path: Path, capsys) -> None:
    assert main(["analyze", "report", str(crnet_sweep), "--out", str(tmp_path / "r.md")]) == 0
    assert f"report: {tmp_path / 'r.md'}" in capsys.readouterr().out and (tmp_path / "r-history.png").is_file()


def test_analyze_rerun_resume_via_cli(crnet_sweep: Path, crnet_rerun, capsys) -> None:
    """--resume on a finished rerun restores the Tune job, runs nothing again and loses or doubles no row."""
    before = pd.read_parquet(crnet_sweep / "reruns.parquet")
    assert main(["analyze", "rerun", str(crnet_sweep), "--resume", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(crnet_sweep / "reruns.parquet")
    after = pd.read_parquet(crnet_sweep / "reruns.parquet")
    pd.testing.assert_frame_equal(before, after)


def _empty_sweep(root: Path) -> Path:
    d = root / "empty-sweep"
    sink = ResultsSink(d, metric="H")
    sink.start_trial("t0", config={"lr": 0.1}, stage="val", method="linear", dataset="TINY")
    sink.end_trial("t0", status="failed", error="boom")
    sink.flush(force=True)
    (d / "zsltune.json").write_text(json.dumps({"space": "linear", "dataset": "demo"}))
    return d


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["best", "{empty_dir}"], "no trials.parquet (no Parquet results): not a sweep directory"),
        (["best", "{missing}"], "not a directory; pass a sweep directory"),
        (["best", "{empty_sweep}"], "empty sweep: no completed trial at the val stage (trials: 1 failed)"),
        (["best", "{sweep}", "--by", "recall@5"], "--by recall@5: no such metric in"),
        (["report", "{empty_sweep}"], "empty sweep: no completed trial"),
        (["report", "{sweep}", "--by", "nope"], "available: AUSUC, H, H_cal, S, U"),
        (["report", "{sweep}", "--references", "lda"], "--references lda: 'lda' is not a baseline"),
        (["rerun", "{empty_dir}", "--top", "1", "--seeds", "1"], "no trials.parquet"),
        (["rerun", "{empty_sweep}", "--top", "1", "--seeds", "1"], "empty sweep"),
        (["rerun", "{sweep}", "--top", "0", "--seeds", "1"], "--top must be >= 1"),
    ],
)
def test_bad_input_gives_one_clear_line(
    argv: list[str], needle: str, crnet_sweep: Path, sweep_copy, tmp_path: Path, capsys
) -> None:
    empty_dir = tmp_path / "nothing-here"
    empty_dir.mkdir()
    paths = {
        "empty_dir": empty_dir,
        "missing": tmp_path / "missing",
        "empty_sweep": _empty_sweep(tmp_path),
        "sweep": sweep_copy("cli"),
    }
    code = main(["analyze", *(a.format(**paths) for a in argv)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zsltune: error: ") and needle in err[0], err
