"""`analyze rerun`: a real Ray Tune job over (configuration, seed) on the test stage; selection sees val rows only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from zsltune.analysis.best import best
from zsltune.analysis.rerun import PLAN_FILE, RERUN_DIR, RERUNS_FILE, plan_rerun, rerun
from zsltune.errors import ConfigError, DataError


def test_rerun_top2_seeds3_on_the_test_stage(crnet_sweep: Path, crnet_rerun) -> None:
    frame = pd.read_parquet(crnet_sweep / RERUNS_FILE)
    assert len(frame) == 6 and not frame.duplicated(["rank", "seed"]).any()
    assert (frame["stage"] == "test").all() and (frame["status"] == "completed").all()
    assert (frame["synthetic"]).all() and (frame["dataset"] == "AWA2").all() and (frame["method"] == "crnet").all()
    for _, g in frame.groupby("rank"):
        assert sorted(g["seed"]) == [0, 1, 2]
        assert g["loss/loss"].nunique() == 3, "the seed did not reach the trainer: three identical runs"
        for m in ("H", "U", "S", "zsl_top1"):
            assert g[m].between(0, 1).all()
    # the top 2 of the search, each trained for exactly its best epoch count, with its own configuration
    top = best(crnet_sweep, top=2)
    trials = pd.read_parquet(crnet_sweep / "trials.parquet").set_index("trial_id")
    for rank, row in top.set_index("rank").iterrows():
        g = frame[frame["rank"] == rank]
        assert (g["trial_id"] == row["trial_id"]).all()
        assert (g["epochs"] == row["best_epoch"]).all() and (g["epochs_run"] == g["epochs"]).all()
        assert g["val/H"].iloc[0] == pytest.approx(row["val/H"])
        for col in [c for c in trials.columns if c.startswith("config/")]:
            want = trials.loc[row["trial_id"], col]
            if pd.notna(want):
                assert (g[col] == want).all(), col
    # γ of calibrated stacking: chosen on validation at the selected epoch, frozen, applied on test
    epochs = pd.read_parquet(crnet_sweep / "epochs.parquet")
    plan_doc = json.loads((crnet_sweep / RERUN_DIR / PLAN_FILE).read_text())
    for sel in plan_doc["selection"]:
        at = epochs[(epochs["trial_id"] == sel["trial_id"]) & (epochs["epoch"] == sel["epochs"])].iloc[0]
        assert sel["knobs"] == {"gamma": pytest.approx(at["gamma"])} and sel["schedule_epochs"] == 2
        g = frame[frame["rank"] == sel["rank"]]
        assert (g["gamma"] == sel["knobs"]["gamma"]).all() and (g["val_knob/gamma"] == sel["knobs"]["gamma"]).all()
        assert (g["oracle_H_cal"] >= g["H_cal"] - 1e-12).all() and g["oracle_gamma"].notna().all()
    # Tune's own experiment, one folder per (rank, seed)
    exp = crnet_sweep / RERUN_DIR
    assert (exp / "tuner.pkl").is_file() and len(list(exp.glob("rank*_seed*"))) == 6
    plan = json.loads((exp / PLAN_FILE).read_text())
    assert [s["trial_id"] for s in plan["selection"]] == list(top["trial_id"]) and plan["seeds"] == [0, 1, 2]


def test_selection_reads_only_val_rows_and_precedes_the_test_data(sweep_copy) -> None:
    d = sweep_copy("decoy")
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    decoy = trials.iloc[[0]].assign(trial_id="decoy", stage="test", status="completed")
    for col in [c for c in trials.columns if c.startswith(("best/", "last/"))]:
        decoy[col] = 1e6  # a test-stage row that would win on every metric if selection looked at it
    pd.concat([trials, decoy], ignore_index=True).to_parquet(d / "trials.parquet", index=False)
    ep = epochs.iloc[[0]].assign(trial_id="decoy", H=1e6, U=1e6, S=1e6, zsl_top1=1e6)
    pd.concat([epochs, ep], ignore_index=True).to_parquet(d / "epochs.parquet", index=False)

    for by in ("H", "zsl_top1"):  # from trials.parquet's best/ columns, and from epochs.parquet
        assert "decoy" not in set(best(d, by=by)["trial_id"])
        plan = plan_rerun(d, top=10, seeds=2, by=by)
        assert len(plan.selection) == 3 and "decoy" not in {s.trial_id for s in plan.selection}
        assert max(s.val for s in plan.selection) < 1
    assert "stage == 'val'" in plan.selected_from

    # no test data before selection: point the sweep at a dataset that cannot load. The rerun freezes its selection
    # (rerun/rerun.json, without the decoy) and only then reaches for the test stage, which fails.
    opts = json.loads((d / "zsltune.json").read_text())
    (d / "zsltune.json").write_text(json.dumps({**opts, "dataset": str(d / "no-such-dataset")}))
    with pytest.raises(DataError, match="cannot load the test stage of the sweep's dataset"):
        rerun(d, top=2, seeds=2, quiet=True)
    frozen = json.loads((d / RERUN_DIR / PLAN_FILE).read_text())
    assert [s["rank"] for s in frozen["selection"]] == [1, 2]
    assert "decoy" not in {s["trial_id"] for s in frozen["selection"]}
    assert not (d / RERUNS_FILE).exists() and not (d / RERUN_DIR / "tuner.pkl").exists()


def test_rerun_refuses_to_overwrite_and_checks_resume(crnet_sweep: Path, crnet_rerun, sweep_copy) -> None:
    with pytest.raises(ConfigError, match="a rerun already exists; pass --resume"):
        rerun(crnet_sweep, top=2, seeds=3, quiet=True)
    with pytest.raises(ConfigError, match=r"--top 3: the interrupted rerun .* used 2"):
        rerun(crnet_sweep, top=3, resume=True, quiet=True)
    d = sweep_copy("fresh")
    with pytest.raises(ConfigError, match="holds no rerun to resume; drop --resume"):
        rerun(d, resume=True, quiet=True)
    with pytest.raises(ConfigError, match="--seeds must be >= 1"):
        rerun(d, top=1, seeds=0, quiet=True)
    with pytest.raises(ConfigError, match="--cpus-per-trial must be > 0"):
        rerun(d, top=1, seeds=1, cpus_per_trial=0, quiet=True)
    (d / "trials.parquet").unlink()
    with pytest.raises(DataError, match=r"no trials\.parquet \(no Parquet results\)"):
        rerun(d, top=1, seeds=1, quiet=True)
    assert not (d / RERUN_DIR).exists()  # nothing written for a rerun that cannot start


def test_a_compute_budget_trial_keeps_its_own_schedule_horizon(sweep_copy) -> None:
    d = sweep_copy("compute")
    trials = pd.read_parquet(d / "trials.parquet")
    before = {s.trial_id: s.schedule_epochs for s in plan_rerun(d, top=3, seeds=1).selection}
    trials["last/horizon"] = [7 + i for i in range(len(trials))]  # --budget compute: each trial's own iterations
    trials.to_parquet(d / "trials.parquet", index=False)
    own = dict(zip(trials["trial_id"], trials["last/horizon"], strict=True))
    for s in plan_rerun(d, top=3, seeds=1).selection:
        assert s.schedule_epochs == max(own[s.trial_id], s.epochs) != before[s.trial_id]
