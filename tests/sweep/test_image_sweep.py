"""A method on raw images through the whole pipeline: a real 2-trial SGMA sweep on synthetic part images (an xlsa17
folder over images), its Parquet and TensorBoard files, and the test-stage rerun with the knob frozen from
validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: tiny sizes (the trainer's cost, not its behaviour)
TINY = {"width": 8, "batch_size": 16, "part_size": 16, "warmup_steps": 1, "bottleneck": 4}


@pytest.mark.slow
def test_sgma_sweep_parquet_tensorboard_and_rerun(tmp_path: Path) -> None:
    from zsltune.analysis.rerun import rerun
    from zsltune.data import synth_fresh
    from zsltune.data.synth_images import synth_images
    from zsltune.sweep import SweepOptions, run_sweep

    side = synth_fresh(tmp_path / "SIDE", classes=12, attributes=16, images=24, feature_dim=8, seed=5)
    parts = synth_images(tmp_path / "PARTS", kind="parts", per_class=8, size=32, like=side, seed=5)
    res = run_sweep(
        SweepOptions(
            space="sgma", dataset=str(parts), storage=str(tmp_path / "s"), name="sgma", num_samples=2,
            scheduler="fifo", max_epochs=2, iteration_steps=2, overrides=TINY, quiet=True,
        )
    )  # fmt: skip
    assert res.counts["completed"] == 2, res.counts
    trials = pd.read_parquet(res.trials_path)
    assert set(trials["method"]) == {"sgma"} and (trials["epochs"] == 2).all()
    epochs = pd.read_parquet(res.epochs_path)
    assert len(epochs) == 4 and epochs[["H_cal", "zsl_top1", "gamma"]].notna().all().all()
    for tid in trials["trial_id"]:
        assert list((res.sweep_dir / f"trial_{tid}").glob("events.out.tfevents*")), "no TensorBoard events"

    # the same sweep as a replay pool (benchmarks/record_pool.py records one this way): curves per configuration
    from benchmarks.record_pool import pool_from_sweep
    from benchmarks.replay import Table

    table = Table.read_frame(pool_from_sweep(res.sweep_dir, "H_cal"), "sgma")
    assert table.curves.shape == (2, 2) and np.allclose(np.sort(table.curves.max(1)), np.sort(trials["best/H_cal"]))

    out = rerun(res.sweep_dir, top=1, seeds=1, quiet=True)
    f = out.frame
    assert len(f) == 1 and (f["status"] == "completed").all() and (f["stage"] == "test").all()
    sel = out.plan.selection[0]
    assert (f["gamma"] == sel.knobs["gamma"]).all()  # chosen on validation, frozen on test
