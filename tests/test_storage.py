"""``--storage`` URIs: a sweep into an S3 bucket (a real moto server on loopback), and destinations refused with one
line before anything is created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pyarrow.fs as pafs
import pytest
from _procs import kill_tree, run_cmd

from zsltune.cli import main
from zsltune.storage import parse_storage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for this module only; killed by pid."""
    pytest.importorskip("moto")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        t0 = time.monotonic()
        while True:  # up once it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() - t0 > 60:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=30)


def _s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in _s3_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    name = f"zsl-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ep = s3_endpoint.split("://", 1)[1]
    pafs.S3FileSystem(endpoint_override=ep, scheme="http", allow_bucket_creation=True).create_dir(name)
    return name


def test_sweep_into_an_s3_bucket(bucket: str, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    uri = f"s3://{bucket}/zsl"
    cmd = run_cmd(tiny_dataset_dir, tmp_path, "s3sweep", "--num-samples", "3", "--max-epochs", "2")
    cmd[cmd.index("--storage") + 1] = uri
    cmd.remove("--quiet")
    out = subprocess.run([*cmd, "--scheduler", "fifo"], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{uri}/s3sweep/trials.parquet" in out.stdout and "sweep folder: " in out.stdout

    fs = parse_storage(uri).fs
    trials = pd.read_parquet(f"{bucket}/zsl/s3sweep/trials.parquet", filesystem=fs)
    epochs = pd.read_parquet(f"{bucket}/zsl/s3sweep/epochs.parquet", filesystem=fs)
    assert len(trials) == 3 and (trials["status"] == "completed").all()
    assert len(epochs) == 3 * 2 and set(epochs["trial_id"]) == set(trials["trial_id"])
    # the study, as uploaded: every trial told, and checkpoints beside it in the same folder
    journal = tmp_path / "optuna.journal"
    pafs.copy_files(f"{bucket}/zsl/s3sweep/optuna.journal", str(journal), source_filesystem=fs)
    study = optuna.load_study(
        study_name="s3sweep",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3
    ckpts = [i for i in fs.get_file_info(pafs.FileSelector(f"{bucket}/zsl/s3sweep", recursive=True))]
    assert sum(i.base_name.startswith("checkpoint_") for i in ckpts) == 3  # each trial kept its newest one
    assert not list(cwd.iterdir()) and not (tmp_path / "s3sweep").exists()  # nothing local but the driver's mirror


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zsltune: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("storage", "needles"),
    [
        ("gs://bucket/zsl", ("--storage gs://bucket/zsl", "'gs://' scheme is not supported", "s3://")),
        ("/proc/nope", ("--storage /proc/nope", "cannot create or write", "a folder you can write to")),
        ("s3://no-such-endpoint/zsl", ("--storage s3://no-such-endpoint/zsl", "cannot reach the S3 endpoint")),
    ],
)
def test_bad_storage_is_one_line_and_creates_nothing(
    storage: str, needles: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for k, v in _s3_env(f"http://127.0.0.1:{_free_port()}").items():  # a port nothing listens on
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    assert main(["run", "--space", "linear", "--storage", storage]) == 2
    line = _one_line(capsys)
    assert all(n in line for n in needles), line
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    assert time.monotonic() - t0 < 30  # an unreachable endpoint fails fast, not after minutes of retries


def test_bad_results_env_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ZSLTUNE_RESULTS", "gs://bucket/zsl")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--space", "linear"]) == 2
    assert "ZSLTUNE_RESULTS=gs://bucket/zsl" in _one_line(capsys)
    assert not list(tmp_path.iterdir())


def test_missing_bucket_is_one_line(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for k, v in _s3_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--space", "linear", "--storage", "s3://no-such-bucket/zsl"]) == 2
    assert "bucket 'no-such-bucket' does not exist" in _one_line(capsys)


def test_file_uri_is_the_local_folder(tmp_path: Path) -> None:
    loc = parse_storage(f"file://{tmp_path}/res")
    assert loc.local == tmp_path / "res" and loc.uri == str(tmp_path / "res")
