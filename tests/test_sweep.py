"""Real Ray Tune sweeps on tiny synthetic data: Parquet, ASHA, TensorBoard, Optuna pruning, divergence, options."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
import yaml

from zsltune.errors import ConfigError, UnknownNameError
from zsltune.results import EPOCH_COLUMNS, TRIAL_COLUMNS
from zsltune.space import load_space
from zsltune.sweep import SweepOptions, run_sweep
from zsltune.sweep.options import load_options

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def opts(data: Path, storage: Path, **kw) -> SweepOptions:
    base = {
        "space": "linear",
        "dataset": str(data),
        "storage": str(storage),
        "quiet": True,
        "num_samples": 4,
        "max_epochs": 3,
        "seed": 0,
    }
    return SweepOptions(**{**base, **kw})


def test_sweep_writes_parquet_matching_what_ran(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    res = run_sweep(opts(tiny_dataset_dir, tmp_path, name="basic", scheduler="fifo", num_samples=3))
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    assert list(trials.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    assert list(epochs.columns[: len(EPOCH_COLUMNS)]) == list(EPOCH_COLUMNS)
    assert len(trials) == 3 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"completed"}
    assert (trials["method"] == "linear").all() and (trials["stage"] == "val").all()
    # one row per trial-epoch, epochs 1..3 each exactly once
    assert len(epochs) == 9 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert all(sorted(g) == [1, 2, 3] for _, g in epochs.groupby("trial_id")["epoch"])
    for col in ("H", "U", "S", "zsl_top1", "AUSUC", "loss/loss", "node"):
        assert col in epochs
    # best/last columns agree with the epoch rows
    for _, t in trials.iterrows():
        rows = epochs[epochs.trial_id == t.trial_id]
        assert t["best/H"] == pytest.approx(rows["H"].max())
        assert t["last/H"] == pytest.approx(rows.sort_values("epoch")["H"].iloc[-1])
        assert t["epochs"] == 3
    # hyperparameters as columns; the first trial Optuna proposed is the paper defaults, and it ran
    defaults = load_space("linear").defaults("tiny")
    study = optuna.load_study(
        study_name="basic",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    assert study.trials[0].params == defaults
    is_default = (trials[[f"config/{k}" for k in defaults]] == pd.Series(defaults).add_prefix("config/")).all(axis=1)
    assert is_default.sum() == 1
    first = trials[is_default].iloc[0]
    # TensorBoard event files hold the metric curves
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tid = first["trial_id"]
    events = list((res.sweep_dir / f"trial_{tid}").glob("events.out.tfevents*"))
    assert events, "no TensorBoard events in the trial folder"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    h_tag = next(t for t in tags if t.endswith("/H"))
    assert [e.step for e in acc.Scalars(h_tag)] == [1, 2, 3]
    assert [round(e.value, 6) for e in acc.Scalars(h_tag)] == [
        round(v, 6) for v in epochs[epochs.trial_id == tid].sort_values("epoch")["H"]
    ]
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the HParams view


def test_asha_stops_trials_and_optuna_records_them_pruned(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    res = run_sweep(
        opts(
            tiny_dataset_dir,
            tmp_path,
            name="asha",
            scheduler="asha",
            num_samples=8,
            max_epochs=9,
            grace_period=1,
            sampler="random",
            max_concurrent=2,
        )
    )
    trials = pd.read_parquet(res.trials_path)
    assert len(trials) == 8
    stopped = trials[trials.status == "stopped"]
    assert len(stopped) >= 1 and (stopped["epochs"] < 9).all()
    assert (trials[trials.status == "completed"]["epochs"] == 9).all()
    study = optuna.load_study(
        study_name="asha",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    assert states.count(optuna.trial.TrialState.COMPLETE) == (trials.status == "completed").sum()


def test_diverging_trial_fails_with_reason_and_sweep_goes_on(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(load_space("linear").path.read_text())  # type: ignore[union-attr]
    doc["parameters"]["lr"] = {"type": "categorical", "choices": [0.01, 1.0e30], "default": 1.0e30}
    space = tmp_path / "nan.yaml"
    space.write_text(yaml.safe_dump(doc))
    res = run_sweep(
        opts(
            tiny_dataset_dir,
            tmp_path,
            name="nan",
            space=str(space),
            scheduler="fifo",
            num_samples=5,
            sampler="random",
            max_failures=0,
            seed=2,
        )
    )
    trials = pd.read_parquet(res.trials_path)
    failed, ok = trials[trials.status == "failed"], trials[trials.status == "completed"]
    assert len(failed) >= 1 and len(ok) >= 1 and len(trials) == 5
    assert (failed["config/lr"] == 1e30).all() and (ok["config/lr"] == 0.01).all()
    assert failed["error"].str.contains("TrialDiverged").all()
    assert failed["error"].str.contains("diverged").all()


def test_fixed_overrides_reach_the_trainer(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    res = run_sweep(
        opts(
            tiny_dataset_dir,
            tmp_path,
            name="ovr",
            scheduler="fifo",
            num_samples=1,
            max_epochs=1,
            overrides={"temperature": 0.5},
        )
    )
    assert pd.read_parquet(res.trials_path).shape[0] == 1


def test_multi_objective_keeps_a_pareto_front(local_ray, tiny_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    res = run_sweep(
        opts(
            tiny_dataset_dir,
            tmp_path,
            name="mo",
            sampler="nsga2",
            metric="U,S",
            scheduler="fifo",
            num_samples=4,
            max_epochs=2,
        )
    )
    study = optuna.load_study(
        study_name="mo",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    assert len(study.directions) == 2
    front = study.best_trials
    assert 1 <= len(front) <= 4
    values = [t.values for t in study.trials if t.values]
    for t in front:  # nothing dominates a front member
        assert not any(v[0] >= t.values[0] and v[1] >= t.values[1] and v != t.values for v in values)
    # the analysis reads the same front: the study's values are each trial's metrics at its best iteration
    from zsltune.analysis.best import pareto_front, rank_trials
    from zsltune.analysis.report import build_report
    from zsltune.analysis.report_blocks import Figure, Heading
    from zsltune.analysis.sweepdir import load_sweep

    ours = pareto_front(rank_trials(load_sweep(res.sweep_dir)), ["U", "S"], ["max", "max"])
    assert set(ours["trial_id"]) == {t.user_attrs["ray_trial_id"] for t in front}
    for t in front:
        row = ours[ours["trial_id"] == t.user_attrs["ray_trial_id"]].iloc[0]
        assert (row["val/U"], row["val/S"]) == pytest.approx(tuple(t.values))
    blocks = build_report(res.sweep_dir, tmp_path / "report.md")
    assert Heading("Pareto front") in blocks and any(isinstance(b, Figure) and b.alt == "Pareto front" for b in blocks)
    from zsltune.cli import main

    assert main(["analyze", "best", str(res.sweep_dir)]) == 0
    assert f"Pareto front of U, S in mo ({len(front)} trials)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "error", "needle"),
    [
        ({"sampler": "annealing"}, UnknownNameError, "--sampler annealing: unknown sampler; valid samplers: tpe"),
        ({"scheduler": "pbtx"}, UnknownNameError, "--scheduler pbtx"),
        ({"num_samples": 0}, ConfigError, "--num-samples must be >= 1, got 0"),
        ({"gpus_per_trial": -1.0}, ConfigError, "--gpus-per-trial must be >= 0"),
        ({"image_size": 8}, ConfigError, "--image-size must be >= 16 pixels, got 8"),
        ({"recall_at": "10,1"}, ConfigError, "--recall-at 10,1: use a preset (cub, cars, sop) or increasing K from 1"),
        ({"recall_at": "sop"}, ConfigError, "--recall-at applies to retrieval methods (deml); linear reports GZSL"),
        ({"image_size": 448}, ConfigError, "--image-size applies to methods on raw images (deml, sgma); linear"),
        ({"overrides": {"nope": 1}}, ConfigError, "--set nope: not a hyperparameter of linear"),
        ({"sampler": "cmaes", "metric": "U,S"}, ConfigError, "--sampler cmaes optimises one metric"),
        ({"sampler": "nsga2", "metric": "U,S"}, ConfigError, "--metric U,S: --scheduler asha stops trials on one"),
        ({"resume": True, "name": "never-ran"}, ConfigError, "holds no sweep to resume"),
        ({"defaults_first": False, "profile": "paper"}, ConfigError, "--profile paper and --no-defaults-first"),
        ({"defaults_first": False, "grid": ["lr=0.01,0.1"]}, ConfigError, "--no-defaults-first applies to a search"),
    ],
)
def test_bad_options_fail_before_ray_starts(tiny_dataset_dir: Path, tmp_path: Path, change, error, needle) -> None:
    assert not ray.is_initialized() or True  # validation must not need Ray
    with pytest.raises(error) as e:
        run_sweep(opts(tiny_dataset_dir, tmp_path, **change))
    assert needle in str(e.value)


def test_gpus_requested_without_gpus_is_a_clear_error(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--gpus-per-trial 0\.25: the Ray cluster has 0 GPUs"):
        run_sweep(opts(tiny_dataset_dir, tmp_path, name="gpu", gpus_per_trial=0.25))


def test_existing_sweep_name_needs_resume(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    run_sweep(opts(tiny_dataset_dir, tmp_path, name="twice", scheduler="fifo", num_samples=1, max_epochs=1))
    with pytest.raises(ConfigError, match="pass --resume"):
        run_sweep(opts(tiny_dataset_dir, tmp_path, name="twice", num_samples=1, max_epochs=1))


def test_pbt_exploits_checkpoints_without_losing_epochs(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    res = run_sweep(
        opts(tiny_dataset_dir, tmp_path, name="pbt", scheduler="pbt", num_samples=4, max_epochs=6, grace_period=2)
    )
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    assert (trials["status"] == "completed").all(), trials[["status", "error"]]
    # an exploited trial continues from its leader's epoch, so its own history may skip epochs; none repeat
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (epochs.groupby("trial_id")["epoch"].max() == 6).all() and (trials["epochs"] == 6).all()
    assert (epochs["restores"] > 0).any()  # exploitation restored trials from checkpoints


def test_crnet_sweep_runs_paper_defaults_first(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    res = run_sweep(
        opts(
            tiny_dataset_dir,
            tmp_path,
            name="crnet",
            space="crnet",
            scheduler="fifo",
            num_samples=2,
            max_epochs=1,
            overrides={"hidden": 32},
        )
    )
    study = optuna.load_study(
        study_name="crnet",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    defaults = load_space("crnet").defaults("TINY")
    assert defaults["lr"] == 5e-4 and defaults["K"] == 3 and defaults["hidden"] == 1024  # the space's defaults
    del defaults["hidden"]  # fixed by --set: no longer searched
    assert study.trials[0].params == defaults
    assert all("hidden" not in t.params for t in study.trials)
    trials = pd.read_parquet(res.trials_path)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert (trials["config/lr"] == 5e-4).sum() >= 1 and (trials["config/hidden"] == 32).all()


def test_no_defaults_first_draws_every_trial_from_the_sampler(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """``--no-defaults-first`` (for comparing samplers on equal terms): no trial is the space's defaults."""
    res = run_sweep(
        opts(
            tiny_dataset_dir, tmp_path, name="nodef", space="crnet", sampler="random", scheduler="fifo",
            num_samples=2, max_epochs=1, overrides={"hidden": 32}, defaults_first=False,
        )
    )  # fmt: skip
    trials = pd.read_parquet(res.trials_path)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert not (trials["config/lr"] == load_space("crnet").defaults("TINY")["lr"]).any()  # lr is log-uniform


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "gp", "random", "qmc", "nsga2"])
def test_every_sampler_proposes_valid_configs(sampler: str) -> None:
    from zsltune.sweep.search import make_sampler

    space = load_space("crnet")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, seed=0, multi=False))
    for i in range(8):
        trial = study.ask()
        space(trial)
        for p in space.params:
            if p.name in trial.params:
                assert p.contains(trial.params[p.name]), (p.name, trial.params[p.name])
        study.tell(trial, float(i % 3))


def test_profile_is_the_first_trial(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    """``--space crnet-paper --profile cpu``: the paper's ranges, started from the CPU space's defaults."""
    res = run_sweep(
        opts(
            tiny_dataset_dir, tmp_path, name="cpu", space="crnet-paper", scheduler="fifo", num_samples=1,
            max_epochs=1, profile="cpu", iteration_steps=5,
        )
    )  # fmt: skip
    study = optuna.load_study(
        study_name="cpu",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    first = study.trials[0].params
    assert (first["lr"], first["hidden"], first["att_norm"], first["feat_norm"]) == (5e-4, 1024, "std", "std")
    assert first["lr_schedule"] == "cosine" and first["K"] == 3  # per-dataset values the profile leaves alone
    epochs = pd.read_parquet(res.epochs_path)
    assert list(epochs["step"]) == [5]  # --iteration-steps: an iteration of 5 optimisation steps


def test_resume_refuses_a_changed_option_with_its_stored_value(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    run_sweep(opts(tiny_dataset_dir, tmp_path, name="again", scheduler="fifo", num_samples=1, max_epochs=1))
    stored = (tmp_path / "again" / "zsltune.json").read_text()
    for change, needle in (
        ({"max_epochs": 2}, "--resume: --max-epochs 2 differs from the sweep's stored 1"),
        ({"sampler": "random"}, "--resume: --sampler random differs from the sweep's stored tpe"),
        ({"overrides": {"lr": 0.1}}, "--resume: --set {'lr': 0.1} differs"),
    ):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            kw = {"name": "again", "resume": True, "num_samples": 1, "max_epochs": 1, **change}
            run_sweep(opts(tiny_dataset_dir, tmp_path, **kw))
        assert (tmp_path / "again" / "zsltune.json").read_text() == stored  # nothing rewritten
    # the same options again (the space by name, the dataset by path) resume
    res = run_sweep(opts(tiny_dataset_dir, tmp_path, name="again", resume=True, num_samples=1, max_epochs=1))
    assert res.counts["completed"] == 1


def _study(sweep_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal"))
    )
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def test_resume_with_more_samples_continues_the_study(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    """``--resume --num-samples 4`` on a finished 2-trial sweep runs 2 more trials: the same Optuna study, the same
    Parquet files, the stored options updated; fewer than stored is then refused and writes nothing."""
    from zsltune.analysis.best import rank_trials
    from zsltune.analysis.sweepdir import load_sweep

    kw = {"name": "more", "scheduler": "fifo", "max_epochs": 1, "max_concurrent": 1}  # one actor, reused: fast
    first = run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, num_samples=2))
    before = set(pd.read_parquet(first.trials_path)["trial_id"])
    res = run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, resume=True, num_samples=4))
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    assert len(trials) == 4 and trials["trial_id"].is_unique and before < set(trials["trial_id"])
    assert set(trials["status"]) == {"completed"} and res.counts["completed"] == 4
    assert len(epochs) == 4 and not epochs.duplicated(["trial_id", "epoch"]).any()
    study = _study(res.sweep_dir)
    assert len(study.trials) == 4 and {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == set(trials["trial_id"])
    defaults = load_space("linear").defaults("tiny")
    assert [t.params == defaults for t in study.trials] == [True, False, False, False]  # not enqueued again
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # the sampler's draws moved on
    stored = (res.sweep_dir / "zsltune.json").read_text()
    assert json.loads(stored)["num_samples"] == 4
    assert json.loads((res.sweep_dir / "provenance.json").read_text())["resumes"][-1]["applied"] == {
        "num_samples": [2, 4]
    }
    assert len(rank_trials(load_sweep(res.sweep_dir))) == 4  # analyze best / report read all of them

    files = {f: (res.sweep_dir / f).read_bytes() for f in ("trials.parquet", "optuna.journal", "provenance.json")}
    with pytest.raises(
        ConfigError, match=re.escape("--resume: --num-samples 3 is fewer than the sweep's stored 4")
    ) as e:
        run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, resume=True, num_samples=3))
    assert "\n" not in str(e.value)
    assert (res.sweep_dir / "zsltune.json").read_text() == stored
    assert {f: (res.sweep_dir / f).read_bytes() for f in files} == files  # nothing written


def test_resume_applies_a_new_concurrency_and_a_longer_budget(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sweep(opts(tiny_dataset_dir, tmp_path, name="conc", scheduler="fifo", num_samples=1, max_epochs=1))
    kw = {"name": "conc", "resume": True, "max_epochs": 1}
    with pytest.raises(ConfigError, match=re.escape("--resume: --time-budget 0.001 has already run out (the sweep's")):
        run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, time_budget=0.001))
    res = run_sweep(
        opts(tiny_dataset_dir, tmp_path, **kw, num_samples=2, max_concurrent=1, time_budget=600.0, quiet=False)
    )
    err = capsys.readouterr().err
    assert "--num-samples 1 -> 2, --time-budget None -> 600.0, --max-concurrent None -> 1 for the rest" in err
    assert "1 more trial (2 in all), tpe + fifo, up to 1 at once" in err
    stored = json.loads((res.sweep_dir / "zsltune.json").read_text())
    assert (stored["num_samples"], stored["max_concurrent"], stored["time_budget"]) == (2, 1, 600)
    trials = pd.read_parquet(res.trials_path)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    with pytest.raises(
        ConfigError, match=re.escape("--resume: --time-budget 300 is shorter than the sweep's stored 600")
    ):
        run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, time_budget=300))


def test_interrupted_sweep_resumed_with_more_concurrency_starts_the_rest_anew(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """A 2-trial sweep interrupted in its first trial (Tune's stop signal), resumed with ``--max-concurrent 2``: the
    restored job finishes the interrupted trial and starts none of its own; the second runs in a new job with the
    new concurrency. Every trial-epoch once, and the study holds every trial."""
    import os
    import signal
    import threading

    import pyarrow.fs as pafs
    from _procs import read_parquet

    from zsltune.sweep.callbacks import stored_statuses

    sweep = tmp_path / "cut"
    stop = threading.Event()

    def interrupt_once_a_trial_starts() -> None:
        while not stop.wait(0.05):
            trials = read_parquet(sweep / "trials.parquet")
            if trials is not None and len(trials):  # written as the first trial starts: Tune's handler is in place
                os.kill(os.getpid(), signal.SIGUSR1)  # what Tune treats as Ctrl+C: a last snapshot, then it returns
                return

    kw = {"name": "cut", "max_epochs": 2, "overrides": {"batch_size": 1}}  # batch 1: the trial outlasts the signal
    watcher = threading.Thread(target=interrupt_once_a_trial_starts, daemon=True)
    watcher.start()
    try:
        run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, scheduler="fifo", num_samples=2, max_concurrent=1))
    finally:
        stop.set()
        watcher.join()
    before = pd.read_parquet(sweep / "trials.parquet")
    assert list(before["status"]) == ["running"], before[["trial_id", "status", "epochs"]]

    res = run_sweep(opts(tiny_dataset_dir, tmp_path, **kw, resume=True, num_samples=2, max_concurrent=2))
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and (trials["epochs"] == 2).all()
    assert len(epochs) == 4 and not epochs.duplicated(["trial_id", "epoch"]).any()
    # the restored job started nothing (it would have run its second sample): the new job, Ray's newest snapshot,
    # ran the other trial
    newest = set(stored_statuses(pafs.LocalFileSystem(), str(sweep)))
    assert newest == set(trials["trial_id"]) - set(before["trial_id"]) and len(newest) == 1
    assert len(_study(sweep).trials) == 2
    assert json.loads((sweep / "zsltune.json").read_text())["max_concurrent"] == 2


def test_compute_budget_gives_costlier_configurations_fewer_iterations(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """``--budget compute``: a real ASHA search where only batch_size varies. An iteration of batch b (2 steps of b
    samples) costs b/64 of the defaults', so batch 256 spends the budget of 4 in one iteration, batch 32 in eight."""
    doc = yaml.safe_load(load_space("linear").path.read_text())  # type: ignore[union-attr]
    doc["parameters"]["batch_size"] = {"type": "categorical", "choices": [32, 64, 256], "default": 64}
    space = tmp_path / "cost.yaml"
    space.write_text(yaml.safe_dump(doc))
    fixed = {k: v for k, v in load_space("linear").defaults("tiny").items() if k != "batch_size"}
    res = run_sweep(
        opts(
            tiny_dataset_dir, tmp_path, space=str(space), name="cost", budget="compute", sampler="random", seed=2,
            num_samples=3, max_epochs=4, grace_period=1, iteration_steps=2, overrides=fixed, max_concurrent=2,
        )
    )  # fmt: skip
    trials, epochs = pd.read_parquet(res.trials_path), pd.read_parquet(res.epochs_path)
    assert "compute" in epochs and "horizon" in epochs
    by_batch: dict[int, list[int]] = {}
    for tid, rows in epochs.sort_values("epoch").groupby("trial_id"):
        t = trials[trials.trial_id == tid].iloc[0]
        b = int(t["config/batch_size"])
        assert list(rows["epoch"]) == list(range(1, len(rows) + 1))
        assert rows["compute"].tolist() == pytest.approx([e * b / 64 for e in rows["epoch"]])  # its cost per iteration
        assert (rows["horizon"] == math.ceil(4 * 64 / b)).all()
        assert (t["status"] == "completed") == (rows["compute"].iloc[-1] >= 4)
        by_batch.setdefault(b, []).append(len(rows))
    assert {32, 256} <= set(by_batch), by_batch  # the seed draws a cheap and a costly configuration
    assert by_batch[256] == [1] * len(by_batch[256])  # the costliest spends the whole budget in one iteration
    assert max(by_batch[256]) < min(by_batch[32])
    journal = optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
    study = optuna.load_study(study_name="cost", storage=optuna.storages.JournalStorage(journal))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == (trials.status == "completed").sum()  # a full budget is COMPLETE, not PRUNED
    assert load_options(res.sweep_dir).budget == "compute"
