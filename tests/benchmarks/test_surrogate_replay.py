"""The replay's measures on pools written here (nothing recorded, nothing timed): the surrogate's leave-out error
against the seed noise, the fraction of random search's compute, the seed column, and the missing pool's message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.replay import Table, fraction, fractions, replay
from benchmarks.surrogate import KINDS, Surrogate, leave_out_error, pick, seed_noise, verdict
from zsltune.space import load_space


def seeded_pool(
    n: int = 80, horizon: int = 8, *, repeated: int = 20, seeds: int = 3, noise: float = 0.05, smooth: bool = True
) -> pd.DataFrame:
    """CRnet configurations from its space; the first ``repeated`` at ``seeds`` seeds. Each run's curve rises to a
    quality that is a smooth function of lr and hidden (``smooth``) or a random level per configuration, shifted by
    a per-run seed offset of std ``noise``."""
    space = load_space("crnet")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        trial = study.ask()
        space(trial)
        p = trial.params
        q = 0.5 - 0.3 * abs(np.log10(p["lr"]) + 3.4) + 0.05 * (p["hidden"] == 1024) if smooth else rng.uniform(0, 0.4)
        for s in range(seeds if i < repeated else 1):
            off = rng.normal(0, noise)  # a seed moves the whole run, as a different initialisation does
            for t in range(1, horizon + 1):
                v = q * (1 - np.exp(-t / 3)) + off + rng.normal(0, 0.003)
                rows.append({"config_id": i, "seed": s, "iteration": t, "value": v,
                             **{f"config/{k}": x for k, x in p.items()}})  # fmt: skip
        study.tell(trial, 0.0)
    return pd.DataFrame(rows)


def test_pool_reads_its_seeds_and_an_old_pool_as_one() -> None:
    df = seeded_pool(n=10, repeated=4)
    table = Table.read_frame(df, "crnet")
    assert table.runs.shape == (10, 3, 8) and list(table.seeds) == [3] * 4 + [1] * 6
    first = df[df["config_id"] == 0].pivot(index="seed", columns="iteration", values="value").to_numpy()
    assert np.allclose(table.curves[0], first.mean(0))  # the answer is the mean over seeds
    old = Table.read_frame(df[df["seed"] == 0].drop(columns="seed"), "crnet")  # a pool before the column existed
    assert old.runs.shape == (10, 1, 8) and (old.seeds == 1).all() and seed_noise(old)["configs"] == 0
    ok, line = verdict(leave_out_error(old, trees=10), seed_noise(old))
    assert ok is None and "seed noise unknown" in line


def test_surrogate_counts_on_a_smooth_function_and_not_on_noise() -> None:
    smooth = Table.read_frame(seeded_pool(noise=0.05), "crnet")
    err, noise = leave_out_error(smooth, trees=30), seed_noise(smooth)
    assert noise["configs"] == 20 and noise["curve"] == pytest.approx(0.05, rel=0.3)
    assert err["curve"] < noise["curve"] and err["best"] < noise["best"], (err, noise)
    assert verdict(err, noise)[0] is True
    # the level is a random draw per configuration, not a function of it: nothing to learn beyond the mean
    rough = Table.read_frame(seeded_pool(noise=0.02, smooth=False), "crnet")
    err, noise = leave_out_error(rough, trees=30), seed_noise(rough)
    assert err["curve"] > noise["curve"] and err["best"] > noise["best"], (err, noise)
    ok, line = verdict(err, noise)
    assert ok is False and "does NOT count" in line


def test_pick_keeps_the_kind_with_the_least_leave_out_error() -> None:
    smooth = Table.read_frame(seeded_pool(n=40, repeated=10), "crnet")
    kind, errors = pick(smooth, trees=20)
    assert set(errors) == set(KINDS) and errors[kind]["best"] == min(e["best"] for e in errors.values())
    assert errors["forest"] != errors["extra"]  # three models, not one under three names
    with pytest.raises(ValueError, match="surrogate kind 'svm': unknown; valid: forest, extra, boosting"):
        Surrogate.of(smooth, kind="svm")


def test_surrogate_answers_a_replay() -> None:
    table = Table.read_frame(seeded_pool(n=30, repeated=5), "crnet")
    sur = Surrogate.of(table, trees=10)
    best = replay(table, "tpe+asha", budget=40, seed=0, answer=sur.curve)
    assert best.shape == (40,) and np.all(np.diff(best) >= 0)
    noisy = Surrogate.of(table, trees=10, noise=0.05)
    params = {k: v for k, v in table.configs.iloc[0].items() if not (isinstance(v, float) and math.isnan(v))}
    a, b = (noisy.curve(params, np.random.default_rng(s)) for s in (0, 1))
    assert np.allclose(a - b, (a - b)[0]) and abs((a - b)[0]) > 0  # one shift per trial, the shape kept


def test_fraction_of_random_compute() -> None:
    rng = np.random.default_rng(0)
    budget = 100
    x = np.arange(1, budget + 1) / budget
    rand = np.stack([np.minimum(x * 0.5 + rng.normal(0, 0.01), 0.5) for _ in range(30)])
    rand = np.maximum.accumulate(rand, 1)
    fast = np.maximum.accumulate(np.minimum(rand * 2, 0.6), 1)  # gets twice as far for the same compute
    never = rand * 0.5
    fr = fractions({"random": rand, "same": rand.copy(), "fast": fast, "never": never}, boot=200)
    assert fr["random"]["fraction"] == pytest.approx(1.0, abs=0.05) and fr["same"] == fr["random"]
    assert fr["fast"]["fraction"] == pytest.approx(0.5, abs=0.05)
    assert fr["fast"]["fraction_lo"] <= fr["fast"]["fraction"] <= fr["fast"]["fraction_hi"] < 1
    assert math.isinf(fr["never"]["fraction"]) and math.isinf(fraction(never, float(rand[:, -1].mean())))


def test_missing_pool_names_its_path_and_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.__main__ as suite
    from benchmarks.record_pool import MissingPool, pool_path, require_pool

    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path / "cache"))
    assert pool_path() == tmp_path / "cache" / "pools" / "crnet.parquet"
    with pytest.raises(MissingPool) as e:
        require_pool()
    msg = str(e.value)
    assert "\n" not in msg and str(pool_path()) in msg
    assert "python -m benchmarks.record_pool --num-samples 60 --repeats 3 --repeat-first 30" in msg
    missing = tmp_path / "elsewhere.parquet"
    with pytest.raises(MissingPool, match=f"--out {missing}"):
        require_pool(missing)
    assert suite.main(["--only", "replay", "--pool", str(missing), "--out", str(tmp_path / "o")]) == 1
    text = (tmp_path / "o" / "results.md").read_text()
    assert f"no replay pool at {missing}" in text


def test_repeat_grid_reads_back_as_the_pools_configurations() -> None:
    """The repeats' ``--grid`` item, parsed and checked as a sweep parses it, gives back the pool's configurations
    exactly (floats through YAML, an inactive beta as a placeholder), each keyed to its config_id."""
    from benchmarks.record_pool import _key, _varied, repeat_grid
    from zsltune.methods import get_method
    from zsltune.sweep.grid import grid_configs, grid_levels

    df = seeded_pool(n=8, repeated=0)
    assert df.groupby("config_id")["config/beta"].first().isna().any()  # some use_beta false: beta inactive
    items, keys = repeat_grid(df, "crnet", 6)
    levels = grid_levels(items, method="crnet", hparams=get_method("crnet").all_hparams(), space=load_space("crnet"))
    params = _varied(df, "crnet", {})
    confs = grid_configs(levels)
    assert [keys[_key(params, [c[p.name] for p in params])] for c in confs] == list(range(6))
    lr = df.groupby("config_id")["config/lr"].first()
    assert [c["lr"] for c in confs] == list(lr[:6])  # bit for bit
    items, _ = repeat_grid(df, "crnet", 2, {"hidden": 32})  # a parameter the sweeps fix is not varied
    assert "hidden" not in items[0].split("=")[0].split(":")


def test_live_check_sets_both_replays_beside_the_sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live piece's bookkeeping with the real sweeps stubbed out (they take an hour): each arm's best next to
    the nearest and the surrogate replay at the same compute."""
    from types import SimpleNamespace

    import benchmarks.__main__ as suite
    import zsltune.sweep

    pool = tmp_path / "pool.parquet"
    seeded_pool(n=20, repeated=4).to_parquet(pool, index=False)
    epochs = tmp_path / "epochs.parquet"
    pd.DataFrame({"timestamp": range(12), "H": np.linspace(0, 0.3, 12)}).to_parquet(epochs)
    monkeypatch.setattr(zsltune.sweep, "run_sweep", lambda o: SimpleNamespace(epochs_path=epochs))
    monkeypatch.setattr(suite, "POOL", pool)
    got = suite.live_piece(False, tmp_path)
    assert {"random live best", "tpe+asha replay mean", "tpe+asha replay mean (surrogate)"} <= set(got["figures"])
    assert got["text"].count("surrogate replay at the same compute") == 2
    assert got["text"].count("seed noise) -> ") == 4  # each band widened by the pool's measured seed noise


def test_record_keeps_the_first_sweep_when_the_repeats_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two sweeps stubbed (they take an hour): the first one's curves survive a failed repeat sweep, at a path
    the error names; nothing is written at ``--out``."""
    from types import SimpleNamespace

    import zsltune.sweep
    from benchmarks.record_pool import record

    calls = []

    def fake(o):
        calls.append(o)
        if len(calls) > 1:
            raise OSError("node lost")
        d = tmp_path / "sweep"
        d.mkdir()
        pd.DataFrame(
            {"trial_id": ["a", "b"], "status": "completed", "config/lr": [3e-4, 6e-4], "config/hidden": [400, 1024]}
        ).to_parquet(d / "trials.parquet")
        pd.DataFrame({"trial_id": ["a", "a", "b", "b"], "epoch": [1, 2, 1, 2], "H": [0.0, 0.2, 0.1, 0.3]}).to_parquet(
            d / "epochs.parquet"
        )
        return SimpleNamespace(sweep_dir=d)

    monkeypatch.setattr(zsltune.sweep, "run_sweep", fake)
    out = tmp_path / "pool.parquet"
    with pytest.raises(RuntimeError, match=r"first sweep.s 2 configurations are kept at .*pool\.first\.parquet"):
        record(out=out, num_samples=2, repeats=3, repeat_first=2)
    kept = pd.read_parquet(tmp_path / "pool.first.parquet")
    assert kept["config_id"].nunique() == 2 and kept["value"].max() == 0.3 and not out.exists()
