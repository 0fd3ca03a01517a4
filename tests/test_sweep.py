"""Real Ray Tune sweeps on tiny synthetic data: Parquet, ASHA, TensorBoard, Optuna pruning, divergence, options."""

from __future__ import annotations

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
    from analysis.best import pareto_front, rank_trials
    from analysis.report import build_report
    from analysis.sweepdir import load_sweep

    ours = pareto_front(rank_trials(load_sweep(res.sweep_dir)), ["U", "S"], ["max", "max"])
    assert set(ours["trial_id"]) == {t.user_attrs["ray_trial_id"] for t in front}
    for t in front:
        row = ours[ours["trial_id"] == t.user_attrs["ray_trial_id"]].iloc[0]
        assert (row["val/U"], row["val/S"]) == pytest.approx(tuple(t.values))
    blocks = build_report(res.sweep_dir, tmp_path / "report.md")
    assert ("h2", "Pareto front") in blocks and any(b[0] == "img" and b[2] == "Pareto front" for b in blocks)
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


def test_paper_profile_is_the_first_trial(local_ray, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    """``--profile paper``: the published configuration (Adam lr 1e-5, hidden 2048, ...) runs first."""
    res = run_sweep(
        opts(
            tiny_dataset_dir, tmp_path, name="paper", space="crnet", scheduler="fifo", num_samples=1, max_epochs=1,
            profile="paper", iteration_steps=5,
        )
    )  # fmt: skip
    study = optuna.load_study(
        study_name="paper",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(res.sweep_dir / "optuna.journal"))
        ),
    )
    first = study.trials[0].params
    assert (first["lr"], first["hidden"], first["att_norm"], first["feat_norm"]) == (1e-5, 2048, "l2", "none")
    assert first["lr_schedule"] == "constant" and first["K"] == 3  # per-dataset values the profile leaves alone
    epochs = pd.read_parquet(res.epochs_path)
    assert list(epochs["step"]) == [5]  # --iteration-steps: an iteration of 5 optimisation steps


def test_resume_refuses_a_changed_option_with_its_stored_value(
    local_ray, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    run_sweep(opts(tiny_dataset_dir, tmp_path, name="again", scheduler="fifo", num_samples=1, max_epochs=1))
    stored = (tmp_path / "again" / "zsltune.json").read_text()
    for change, needle in (
        ({"num_samples": 5}, "--resume: --num-samples 5 differs from the sweep's stored 1"),
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
