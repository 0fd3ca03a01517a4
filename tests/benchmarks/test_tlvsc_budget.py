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
