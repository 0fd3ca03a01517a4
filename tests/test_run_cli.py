"""`zsltune run` and `python zsltune/run.py` (what `ray submit` runs): options, errors, a real end-to-end sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zsltune.cli import main

RUN_PY = Path(__file__).resolve().parent.parent / "zsltune" / "run.py"


def test_run_py_works_as_a_plain_script_from_another_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(RUN_PY), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0 and "--gpus-per-trial" in out.stdout and "--resume" in out.stdout


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--space", "nosuch"], "--space nosuch: unknown search space; valid spaces: "),
        (["--space", "linear", "--sampler", "sa"], "--sampler sa: unknown sampler"),
        (["--space", "linear", "--set", "lr"], "--set lr: expected NAME=VALUE"),
        (["--space", "linear", "--dataset", "NOPE", "--data-root", "/nonexistent"], "--dataset NOPE: not found"),
        ([], "--space is required"),
    ],
)
def test_bad_run_options_give_one_clear_line(argv: list[str], needle: str, capsys, tmp_path: Path) -> None:
    code = main(["run", "--storage", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zsltune: error: ") and needle in err[0], err


def test_bad_option_via_script_has_no_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(RUN_PY), "--space", "nosuch", "--storage", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and "unknown search space" in out.stderr


def test_script_runs_a_sweep_end_to_end(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(RUN_PY),
            "--space",
            "linear",
            "--dataset",
            str(tiny_dataset_dir),
            "--storage",
            str(tmp_path),
            "--name",
            "script",
            "--num-samples",
            "2",
            "--max-epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trials.parquet" in out.stdout and "tensorboard --logdir" in out.stdout
    assert len(pd.read_parquet(tmp_path / "script" / "trials.parquet")) == 2
