"""``provenance.json`` of a real tiny sweep and its rerun: code, versions, machine, command and data hashes; the
space copy that keeps ``analyze`` reading the space as it ran; sweeps from before provenance still open."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from zsltune.analysis.best import best
from zsltune.analysis.report import build_report
from zsltune.analysis.report_blocks import Paragraph
from zsltune.analysis.sweepdir import load_sweep
from zsltune.errors import DataError
from zsltune.provenance import PROVENANCE_FILE, RERUN_FILE, SPACE_COPY, read
from zsltune.space import load_space

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def test_sweep_records_code_machine_command_and_data(crnet_sweep: Path, awa2_like_dir: Path) -> None:
    doc = json.loads((crnet_sweep / PROVENANCE_FILE).read_text())
    head = _git("rev-parse", "HEAD")
    if head is None:  # not run from a checkout: nothing claimed
        assert doc["git"] == {}
    else:
        assert doc["git"]["commit"] == head.strip()
        assert doc["git"]["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))
    assert {"python", "zsltune", "torch", "ray", "optuna", "numpy"} <= set(doc["versions"])
    assert doc["machine"]["host"] and doc["machine"]["cpu"] and doc["machine"]["cpu_count"] >= 1
    assert isinstance(doc["command"], list) and doc["written_at"]
    data = doc["data"]
    assert Path(data["path"]) == awa2_like_dir.resolve()
    for name in ("res101.mat", "att_splits.mat"):  # the bytes the trials read
        assert data["sha256"][name] == hashlib.sha256((awa2_like_dir / name).read_bytes()).hexdigest()
    assert data["synthetic"]["generator_version"] >= 1 and data["synthetic"]["data_seed"] == 0
    assert (crnet_sweep / SPACE_COPY).read_text() == Path(str(load_space("crnet").path)).read_text()


def test_the_space_as_it_ran_decides_analyze_not_the_live_yaml(crnet_sweep: Path, tmp_path: Path) -> None:
    live = tmp_path / "crnet-live.yaml"
    shutil.copy2(Path(str(load_space("crnet").path)), live)
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):  # the same results; `new` keeps its space copy and provenance, `old` is pre-provenance
        shutil.copytree(crnet_sweep, d, ignore=shutil.ignore_patterns("*.pkl", "crnet-tiny_*", "reruns*", "rerun*"))
        opts = json.loads((d / "zsltune.json").read_text())
        (d / "zsltune.json").write_text(json.dumps({**opts, "space": str(live)}))
    for f in (SPACE_COPY, PROVENANCE_FILE):
        (old / f).unlink()
    before = best(new)
    text = re.sub(
        r"^mode: max.*$", "mode: min", re.sub(r"^metric: H\b.*$", "metric: S", live.read_text(), flags=re.M), flags=re.M
    )
    assert text != live.read_text()
    live.write_text(text)  # edited after the sweep
    after = best(new)
    assert (after.attrs["by"], after.attrs["mode"]) == ("H", "max")
    assert list(after["trial_id"]) == list(before["trial_id"])
    summary = build_report(new, tmp_path / "r2.md")[1]
    assert isinstance(summary, Paragraph) and "ranked by validation `H` (max)" in summary.text
    # the check can fail: a sweep without the copy follows the live YAML, and still opens
    assert best(old).attrs["by"] == "S"
    assert any("not recorded" in b.text for b in build_report(old, tmp_path / "r3.md") if isinstance(b, Paragraph))


def test_report_opens_with_the_provenance(crnet_sweep: Path, tmp_path: Path) -> None:
    blocks = build_report(crnet_sweep, tmp_path / "r.md")
    line = next(b.text for b in blocks if isinstance(b, Paragraph) and b.text.startswith("Provenance:"))
    assert "res101.mat" in line and "torch" in line and load_sweep(crnet_sweep).provenance is not None


def test_rerun_records_its_own_provenance_and_the_sweeps(crnet_sweep: Path, crnet_rerun) -> None:
    doc = json.loads((crnet_sweep / RERUN_FILE).read_text())
    assert doc["sweep"] == read(crnet_sweep)
    assert doc["data"]["sha256"]["res101.mat"] == read(crnet_sweep)["data"]["sha256"]["res101.mat"]


def test_a_damaged_provenance_file_is_named(tmp_path: Path) -> None:
    (tmp_path / PROVENANCE_FILE).write_text("{not json")
    with pytest.raises(DataError, match=r"provenance\.json: invalid JSON"):
        read(tmp_path)


def test_the_optuna_study_reads_as_analyze_best_does(crnet_sweep: Path) -> None:
    """optuna-dashboard's view of the sweep: metric names, the winner's value = `analyze best`'s, user attributes."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(crnet_sweep / "optuna.journal")))
    study = optuna.load_study(study_name=crnet_sweep.name, storage=storage)
    assert study.metric_names == ["H"]
    table = best(crnet_sweep)
    assert study.best_value == pytest.approx(table["val/H"].iloc[0])
    for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
        row = table[table["trial_id"] == t.user_attrs["ray_trial_id"]]
        assert len(row) == 1 and t.value == pytest.approx(row["val/H"].iloc[0])  # the best epoch's, every trial
        assert {"U", "S", "H_cal", "best_iteration"} <= set(t.user_attrs)
        assert t.user_attrs["best_iteration"] == row["best_epoch"].iloc[0]
