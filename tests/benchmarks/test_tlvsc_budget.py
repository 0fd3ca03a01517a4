"""The TL-VSC budget comparison's bookkeeping: compute spent from the steps and each trial's samples per step."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks.tlvsc_budget import reach, spent_curve


def test_compute_counts_each_trials_samples_in_the_order_reported() -> None:
    trials = pd.DataFrame(
        {"trial_id": ["a", "b"], "config/batch_size": [64, 256], "config/n_critic": [5, 3]}
    )  # 384 and 1,024 samples a step
    epochs = pd.DataFrame(
        {
            "trial_id": ["a", "b", "a", "b"],
            "epoch": [1, 1, 2, 2],
            "step": [200, 200, 400, 400],
            "timestamp": [1, 2, 3, 4],
            "H": [0.1, 0.3, 0.2, 0.25],
        }
    )
    c = spent_curve(epochs, trials, unit=384 * 200)  # one of the defaults' iterations
    assert c["compute"].tolist() == pytest.approx([1, 1 + 1024 / 384, 2 + 1024 / 384, 2 + 2 * 1024 / 384])
    assert c["best"].tolist() == [0.1, 0.3, 0.3, 0.3]
    assert reach(c, 0.3) == pytest.approx(1 + 1024 / 384) and math.isinf(reach(c, 0.31))


def test_run_sets_each_sweeps_reach_of_the_others_best(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison's bookkeeping with the two real sweeps stubbed out (they take 20 minutes): the compute sweep's
    cheaper trials reach the iterations sweep's best sooner, in default-iterations of compute."""
    from types import SimpleNamespace

    import benchmarks.tlvsc_budget as tb
    import zsltune.sweep

    def fake(o):  # the compute sweep runs a cheap trial (batch 32, n_critic 1) where the other runs the defaults
        d = tmp_path / o.budget
        d.mkdir()
        batch, critic = (32, 1) if o.budget == "compute" else (64, 5)
        pd.DataFrame({"trial_id": ["a"], "config/batch_size": [batch], "config/n_critic": [critic]}).to_parquet(
            d / "trials.parquet"
        )
        h = [0.1, 0.3, 0.4] if o.budget == "compute" else [0.1, 0.3]
        pd.DataFrame(
            {
                "trial_id": "a",
                "epoch": range(1, len(h) + 1),
                "step": [100 * (i + 1) for i in range(len(h))],
                "timestamp": range(len(h)),
                "H": h,
            }
        ).to_parquet(d / "epochs.parquet")
        return SimpleNamespace(epochs_path=d / "epochs.parquet", sweep_dir=d)

    monkeypatch.setattr(zsltune.sweep, "run_sweep", fake)
    got = tb.run(num_samples=1, seeds=[0])
    assert "the iterations sweep's best after" in got["text"]
    rows = {r["budget"]: r for r in got["rows"]}
    assert rows["compute"]["compute_to_iterations_best"] < rows["compute"]["compute"]
    assert math.isinf(rows["iterations"]["compute_to_compute_best"])  # 0.4 is never reached by the other
