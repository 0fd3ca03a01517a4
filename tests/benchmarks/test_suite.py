"""The benchmark suite's pieces on tiny sizes (nothing timed): pools written here (the real one is recorded into the
cache, :mod:`benchmarks.record_pool`), the replay of every strategy on one, the per-method step table over the
registry, and ``python -m benchmarks`` writing its table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.replay import STRATEGIES, Nearest, Table, compare, replay
from zsltune.space import load_space


def synthetic_pool(n: int = 40, horizon: int = 8, seed: int = 0) -> pd.DataFrame:
    """CRnet configurations drawn from its space; each curve rises to a quality set by lr and hidden size."""
    space = load_space("crnet")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows = []
    for i in range(n):
        trial = study.ask()
        space(trial)
        p = trial.params
        q = 0.5 - 0.1 * abs(np.log10(p["lr"]) + 3.5) + 0.05 * (p["hidden"] == 1024)
        for t in range(1, horizon + 1):
            rows.append({"config_id": i, "iteration": t, "value": q * (1 - np.exp(-t / 3)),
                         **{f"config/{k}": v for k, v in p.items()}})  # fmt: skip
        study.tell(trial, 0.0)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool.parquet"
    synthetic_pool().to_parquet(out, index=False)
    return out


def test_pools_merge_without_repeating_a_configuration() -> None:
    from benchmarks.record_pool import merge_pools, with_seed

    old, new = synthetic_pool(n=6, horizon=3), synthetic_pool(n=4, horizon=3, seed=1)
    again = old[old["config_id"] == 2].assign(config_id=9)  # a configuration the old pool has (a sweep's defaults)
    merged = merge_pools(old, pd.concat([new, again], ignore_index=True))
    assert sorted(merged["config_id"].unique()) == list(range(10))  # 6 old + 4 new, numbered on; the repeat left out
    assert merged.groupby("config_id").size().eq(3).all()
    pd.testing.assert_frame_equal(merged[merged["config_id"] < 6], with_seed(old))  # an old pool: one seed, 0
    table = Table.read_frame(merged, "crnet")
    assert table.curves.shape == (10, 3)
    with pytest.raises(ValueError, match="pools of different spaces"):
        merge_pools(old, new.drop(columns="config/lr"))


def test_replay_every_strategy_on_a_table(pool: Path) -> None:
    table = Table.read(pool, "crnet")
    assert table.curves.shape == (40, 8) and set(table.configs.columns) >= {"lr", "hidden", "K"}
    near, squared = Nearest(table), Nearest(table, metric="squared")
    for i in (0, 7, 21):  # a recorded configuration maps onto itself
        params = {k: v for k, v in table.configs.iloc[i].items() if not (isinstance(v, float) and np.isnan(v))}
        assert near(params) == i and squared(params) == i
    with pytest.raises(ValueError, match="metric 'l1': unknown; valid: gower, squared"):
        Nearest(table, metric="l1")
    curve = replay(table, "tpe+asha", budget=60, seed=0)
    assert curve.shape == (60,) and np.all(np.diff(curve) >= 0)  # best so far never falls
    assert curve[-1] <= table.curves.max() + 1e-12
    best = int(np.argmax(table.curves.max(1)))
    first = {k: v for k, v in table.configs.iloc[best].items() if not (isinstance(v, float) and np.isnan(v))}
    handed = replay(table, "random", budget=table.horizon, seed=0, first=first)  # a sweep's enqueued defaults
    assert handed[-1] == pytest.approx(table.curves[best].max())
    eff = compare(table, budget=60, repeats=2)
    assert list(eff.summary["strategy"]) == list(STRATEGIES)
    rand = eff.summary.set_index("strategy").loc["random"]
    assert rand["best_mean"] == pytest.approx(eff.target)
    assert (eff.summary["fraction"] > 0).all() and rand["fraction"] == pytest.approx(1.0, abs=0.3)


def test_method_steps_cover_the_registry(tiny_dataset_dir: Path) -> None:
    from benchmarks.method_steps import COMPILE, measure
    from zsltune.methods import list_methods

    rows = measure(["linear", "crnet"], steps=1, warmup=0, dataset=str(tiny_dataset_dir))
    assert {(r["method"], r["arm"]) for r in rows} >= {("linear", "cpu fp32"), ("crnet", "cpu fp32")}
    assert all(r["ms_per_step"] > 0 and r["speedup_vs_cpu"] > 0 for r in rows)
    assert set(COMPILE) <= set(list_methods())  # every compile target names a registered method
    rows = measure(["linear"], steps=1, warmup=0, dataset=str(tiny_dataset_dir), compiled=True)
    comp = next(r for r in rows if r["arm"] == "cpu compiled")
    assert comp["compile_s"] > 0 and comp["ms_per_step"] > 0


def test_suite_writes_its_table_json_and_plot(pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.__main__ as suite

    monkeypatch.setattr(suite, "REPLAY_REPEATS", {True: 2, False: 2})  # the piece's shape, not its figures
    monkeypatch.setattr(suite, "REPLAY_STRATEGIES", ("random", "tpe+asha"))
    rc = suite.main(["--only", "replay", "--quick", "--pool", str(pool), "--out", str(tmp_path)])
    assert rc == 0
    piece = json.loads((tmp_path / "results.json").read_text())["pieces"]["replay"]
    assert piece["rc"] == 0 and "tpe+asha fraction (surrogate)" in piece["figures"]
    for replayed in ("surrogate", "nearest"):
        assert set(piece[replayed]) == {"random", "tpe+asha"}
        r = piece[replayed]["random"]
        assert r["fraction"] is not None and r["fraction_lo"] <= r["fraction"]  # hi: None where a resample never
    assert piece["seed_noise"]["configs"] == 0 and piece["surrogate_counts"] is None  # no repeats in this pool
    assert {"curve", "best", "curve_raw", "best_raw"} <= set(piece["surrogate_error"])
    md = (tmp_path / "results.md").read_text()
    assert "| replay |" in md and ("is met." in md or "is NOT met." in md) and "seed noise unknown" in md
    for png in ("search_efficiency.png", "search_efficiency_surrogate.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_image_trials_share_one_decoded_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes on the node's cache hold about one copy of the decoded images; private copies hold two."""
    from benchmarks.bench_image_memory import measure
    from zsltune.data.synth_images import synth_images

    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path / "cache"))
    folder = synth_images(tmp_path / "IMG", classes=10, per_class=40, size=64, seed=0)
    rows = {r["mode"]: r["copies"] for r in measure(str(folder), (2,))}
    assert rows["cache"] < 1.5 < rows["copy"], rows


def test_gpu_packing_runs_trainers_side_by_side(tiny_dataset_dir: Path) -> None:
    """The packing emulation (trainer-level, for the lent GPU machine) runs N trainers in N processes; on CPU it only
    has to work: every process trains and reports its iterations, none is out of memory."""
    from benchmarks.gpu_packing import pack

    r = pack("linear", str(tiny_dataset_dir), 2, 1.0, 5)
    assert r["n"] == 2 and r["iterations_per_hour"] > 0 and r["oom"] == 0


def test_fixed_size_space_is_a_valid_space(tmp_path: Path) -> None:
    """The sweep benchmarks' CRnet space without its size parameters loads (its profiles lose them too)."""
    from benchmarks._bench_util import fixed_size_space

    space = load_space(str(fixed_size_space(tmp_path)))
    assert not {"K", "hidden", "batch_size"} & {p.name for p in space.params}
    assert all("hidden" not in v for v in space.profiles.values())


def test_calibration_table_on_a_tiny_twin(tmp_path: Path) -> None:
    """The calibration piece on a tiny class side (only att_splits.mat and class lists: a twin is generated), its
    verdicts computed against the published figures of the row it is reported under."""
    from benchmarks import calibration
    from zsltune.data import synth_fresh

    root = tmp_path / "root"
    synth_fresh(root / "AWA1", classes=30, attributes=16, images=1500, feature_dim=32, seed=0)
    (root / "AWA1" / "res101.mat").unlink()
    got = calibration.measure("AWA1", data_root=str(root))
    assert {"eszsl zsl_top1", "eszsl S", "eszsl U", "softmax S", "oracle H", "crude H"} <= set(got)
    assert all(0 <= v <= 100 for v in got.values())
    # the oracle's unseen features come from the twin's own generator: a supervised classifier, far above ESZSL
    assert got["oracle U"] > got["eszsl U"] + 10 and got["oracle H"] > got["eszsl H"] + 10, got
    # the crude generator (a ridge of the class means, real residuals) feeds the same classifier: below the oracle
    assert got["crude U"] < got["oracle U"], got
    v = calibration.verdicts("AWA1", got)
    assert set(v) == {"eszsl zsl_top1", "eszsl S", "eszsl U", "softmax S"}
    assert "| AWA1 |" in calibration.table({"AWA1": got})


def test_sgma_guidance_measures_both_arms_on_every_seed(tmp_path: Path) -> None:
    """The SGMA guidance piece on tiny part images and a few steps: every (crop, seed) row in range, one chance
    figure per seed whatever the arm (the same images and random centres), and a win count that matches the rows."""
    from benchmarks import sgma_guidance

    small = {**sgma_guidance.SMALL, "warmup_steps": 2}
    got = sgma_guidance.measure(seeds=[0, 1], steps=4, root=tmp_path, small=small,
                                stage_args={"classes": 12, "per_class": 8})  # fmt: skip
    rows, summary = got["rows"], got["summary"]
    assert set(rows) == {"net", "detached"} and all(set(r) == {0, 1} for r in rows.values())
    assert all(0 <= v <= 1 for r in rows.values() for row in r.values() for v in row.values())
    assert all(rows["net"][s]["chance"] == rows["detached"][s]["chance"] for s in (0, 1))
    assert summary["net beats detached zsl"] == sum(rows["net"][s]["zsl"] > rows["detached"][s]["zsl"] for s in (0, 1))
    assert "| mean |" in sgma_guidance.table(got)
