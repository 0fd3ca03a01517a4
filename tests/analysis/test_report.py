"""`analyze report`: Markdown and HTML, real PNG figures, CIs from the reruns, published numbers, data provenance."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib.image
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from zsltune.analysis.paper import PAPER_RESULTS, paper_results
from zsltune.analysis.report import report
from zsltune.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1024, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01, path


def test_report_with_reruns(crnet_sweep: Path, crnet_rerun, tmp_path: Path) -> None:
    out = tmp_path / "rep" / "crnet.md"
    assert report(crnet_sweep, out) == out
    text = out.read_text()
    assert "**Data: synthetic.**" in text and "not comparable" in text
    assert "**Test stage**" in text and "Student-t 95%" in text
    row1 = next(ln for ln in text.splitlines() if ln.startswith("| 1 |") and "±" in ln)
    assert re.search(r"\d\.\d{4} ± \d\.\d{4}", row1)  # 3 seeds: the t interval, no bootstrap beside it
    assert not re.search(r"\[\d\.\d{4}, \d\.\d{4}\]", row1)
    assert "Paired comparisons on the same seeds" in text and "rank 1 - rank 2" in text
    # CRnet's published AWA2 row (Table 1: U 52.6, S 78.8, H 63.1) next to ours, with its source
    assert "paper: CRnet" in text and "| 52.6 | 78.8 | 63.1 |" in text and "Table 1 (GZSL)" in text
    assert "fANOVA importance" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert {Path(i).stem.split("-")[-1] for i in images} == {"history", "importance", "slice", "tradeoff"}
    for name in images:
        _check_png(out.parent / name)


def test_report_without_reruns_says_validation(sweep_copy) -> None:
    d = sweep_copy("noreruns")
    path = report(d)
    text = path.read_text()
    assert path == d / "report.md" and "validation-stage numbers" in text and "No test-stage reruns yet" in text
    assert "**validation stage: not comparable**" in text and "±" not in text
    for png in d.glob("report-*.png"):
        _check_png(png)


def test_report_html_embeds_figures(crnet_sweep: Path, crnet_rerun, tmp_path: Path) -> None:
    path = report(crnet_sweep, tmp_path / "r.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count('src="data:image/png;base64,') == 4
    assert "<b>Data: synthetic.</b>" in text and (tmp_path / "r-tradeoff.png").is_file()


def test_report_skips_importance_with_one_completed_trial(sweep_copy) -> None:
    d = sweep_copy("one-trial")
    (d / "optuna.journal").unlink()
    study = optuna.create_study(
        study_name=d.name, storage=JournalStorage(JournalFileBackend(str(d / "optuna.journal"))), direction="maximize"
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 1e-4}, distributions={"lr": optuna.distributions.FloatDistribution(1e-6, 1e-3)}, value=0.1
        )
    )
    text = report(d).read_text()
    assert "Only 1 completed trial(s) in the Optuna study: importance needs at least 2; skipped." in text
    assert "-importance.png" not in text and "-slice.png" in text
    (d / "optuna.journal").unlink()
    assert "No Optuna study in this sweep" in report(d).read_text()


def test_report_bad_out(crnet_sweep: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--out .*report\.txt: .* end the file name in \.md or \.html"):
        report(crnet_sweep, tmp_path / "report.txt")


def test_paper_table_is_consistent_and_cited() -> None:
    table = paper_results()
    assert PAPER_RESULTS.name == "paper_results.csv" and table["source"].str.contains("Table").all()
    assert set(table["method"]) == {"crnet", "clarel", "tlvsc", "sgma", "deml"}
    gz = table.dropna(subset=["U", "S", "H"])
    h = 2 * gz["U"] * gz["S"] / (gz["U"] + gz["S"])
    assert ((h - gz["H"]).abs() < 0.15).all(), "a transcribed U/S/H triple is inconsistent"
    crnet = table[(table["method"] == "crnet") & (table["dataset"] == "CUB")].iloc[0]
    assert (crnet["U"], crnet["S"], crnet["H"]) == (45.5, 56.8, 50.5)


def test_report_copies_no_stale_state(crnet_sweep: Path, tmp_path: Path) -> None:
    shutil.copy2(crnet_sweep / "trials.parquet", tmp_path / "trials.parquet")  # no zsltune.json, no epochs, no study
    text = report(tmp_path).read_text()
    assert "No Optuna study in this sweep" in text and "## Optimisation history" in text


def test_report_shows_reference_baselines_fitted_on_the_same_test_stage(
    crnet_sweep: Path, crnet_rerun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from zsltune.analysis import references
    from zsltune.baseline import baseline_report
    from zsltune.data import load_stage

    sweep = tmp_path / "s"
    shutil.copytree(crnet_sweep, sweep)
    (sweep / references.REFERENCES_FILE).unlink(missing_ok=True)
    text = report(sweep, references=("eszsl", "softmax")).read_text()
    section = text.split("## Reference baselines", 1)[1].split("\n## ", 1)[0]
    assert "**test stage**" in section and "crnet, rank 1 (mean of 3 seeds)" in section
    dataset = json.loads((sweep / "zsltune.json").read_text())["dataset"]
    direct = baseline_report("eszsl", load_stage(dataset, "val"), load_stage(dataset, "test"))  # knobs from val
    cells = next(ln for ln in section.splitlines() if ln.startswith("| eszsl |")).split("|")[2:7]
    assert [float(c) for c in cells] == [round(100 * direct[m], 1) for m in references.SHOWN]
    softmax = next(ln for ln in section.splitlines() if ln.startswith("| softmax |")).split("|")
    assert 0 < float(softmax[3]) <= 100 and softmax[4].strip() in ("", "nan", "None")  # S only
    # the second report reads references.parquet: nothing is refitted
    monkeypatch.setattr("zsltune.baseline.baseline_report", lambda *a, **k: pytest.fail("refitted"))
    assert "| eszsl |" in report(sweep, references=("eszsl",)).read_text()


def test_report_references_on_the_val_stage_without_reruns_and_bad_names(sweep_copy) -> None:
    from zsltune.analysis.references import parse_references

    d = sweep_copy("refs-val")
    section = report(d, references=("eszsl",)).read_text().split("## Reference baselines", 1)[1]
    assert "**val stage**" in section and "crnet, rank 1 (its best epoch)" in section and "| eszsl |" in section
    assert "## Reference baselines" not in report(d, references=()).read_text()
    assert parse_references(None) == ("eszsl", "softmax") and parse_references("none") == ()
    with pytest.raises(ConfigError, match=r"--references eszsl,lda: 'lda' is not a baseline; .* or none"):
        parse_references("eszsl,lda")


def test_recall_columns_follow_the_results() -> None:
    """A retrieval stage's Recall@K list is data-side: the tables take every recall@K the results hold, by K."""
    from zsltune.analysis.sweepdir import with_recall_columns

    cols = ["last/recall@1", "last/recall@1000", "last/recall@10", "last/NMI", "last/recall@x", "config/K"]
    assert with_recall_columns(["recall@1", "NMI"], cols, prefix="last/") == [
        "recall@1", "NMI", "recall@10", "recall@1000",
    ]  # fmt: skip
