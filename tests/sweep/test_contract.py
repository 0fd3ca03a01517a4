"""The method contract from outside the package: a toy method with its own data source, defined in this test
module, runs a real 2-trial sweep and a 2-seed rerun with no edit to zsltune/sweep or analysis; and the driver's
checks that refuse bad input before Ray starts."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from zsltune.data.sources import DataSource, StageRequest, register_source
from zsltune.methods import HP, Choice, Float, Int, Trainer, TrialDiverged, get_method, method_ref, register_method

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Blobs:
    """The toy bundle: Gaussian blobs around class prototypes; not a StageData."""

    dataset: str
    stage: str
    synthetic: bool
    n_seen: int
    protos: np.ndarray  # (C, P)
    x_train: np.ndarray
    y_train: np.ndarray
    x_seen: np.ndarray
    y_seen: np.ndarray
    x_unseen: np.ndarray
    y_unseen: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.protos)


@register_source("toy-blobs")
class ToyBlobs(DataSource):
    kind = "toy blobs"

    def load(self, req: StageRequest) -> Blobs:
        rng = np.random.default_rng(req.seed)
        n_seen = 6 if req.stage == "val" else 8  # the test stage has more seen classes, as trainval does
        protos = rng.normal(size=(10, 8)).astype(np.float32)  # (C, P)
        w = rng.normal(size=(8, 16)).astype(np.float32)  # attribute -> feature map

        def draw(classes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            y = np.repeat(classes, n)
            return (protos[y] @ w + 0.3 * rng.normal(size=(len(y), 16))).astype(np.float32), y

        seen, unseen = np.arange(n_seen), np.arange(n_seen, 10)
        xt, yt = draw(seen, 20)
        xs, ys = draw(seen, 5)
        xu, yu = draw(unseen, 5)
        return Blobs(f"blobs-{req.dataset}", req.stage, True, n_seen, protos, xt, yt, xs, ys, xu, yu)


@register_method("toy")
class Toy(Trainer):
    """Linear compatibility on the blobs; two modules and two optimisers, to exercise the checkpoint."""

    data_source: ClassVar[type[DataSource]] = ToyBlobs
    hparams: ClassVar[dict[str, HP]] = {
        "lr": Float(default=0.05, gt=0),
        "width": Int(default=8),
        "act": Choice(("relu", "tanh"), default="relu"),
        "diverge_at": Int(default=0, low=0, help="raise TrialDiverged in this iteration (0: never)"),
    }

    def __init__(self, config: dict[str, Any], data: Blobs, **kw: Any) -> None:
        super().__init__(config, data, **kw)
        self.img = torch.nn.Linear(16, int(self.config["width"]))
        self.att = torch.nn.Linear(8, int(self.config["width"]))
        self.opt_img = torch.optim.Adam(self.img.parameters(), lr=self.config["lr"])
        self.opt_att = torch.optim.SGD(self.att.parameters(), lr=self.config["lr"])
        self.protos = self.to_device(data.protos)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.relu if self.config["act"] == "relu" else torch.tanh
        return act(self.img(x)) @ self.att(self.protos).T  # (n, C)

    def steps_per_epoch(self) -> int:
        return 8  # 160 training rows in batches of 20

    def train_steps(self, steps: int) -> dict[str, float]:
        if self.epoch + 1 == int(self.config["diverge_at"]):
            raise TrialDiverged(f"toy: diverged on purpose in iteration {self.epoch + 1}")
        x, y = self.to_device(self.data.x_train), self.to_device(self.data.y_train)
        total = 0.0
        for idx in self.next_batches(steps, len(y), 20):
            loss = F.cross_entropy(self.scores(x[idx])[:, : self.data.n_seen], y[idx])
            self.opt_img.zero_grad()
            self.opt_att.zero_grad()
            loss.backward()
            self.opt_img.step()
            self.opt_att.step()
            total += float(loss.detach())
        return {"loss": total}


SPACE = """
method: toy
metric: H
mode: max
max_epochs: 3
grace_period: 1
parameters:
  lr: {type: float, low: 0.01, high: 0.1, log: true}
  act: {type: categorical, choices: [relu, tanh]}
"""


def test_toy_space_is_checked_against_the_toys_declarations(tmp_path: Path) -> None:
    """The toy's own file and YAML are all a method needs: its space loads, checked against its declarations."""
    from zsltune.errors import SpaceError
    from zsltune.space import load_space

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    assert load_space(space).defaults("d", fallback=Toy.default_config("d")) == {"lr": 0.05, "act": "relu"}
    space.write_text(SPACE.replace("low: 0.01", "low: 0.0").replace("log: true", "log: false"))
    with pytest.raises(SpaceError) as e:
        load_space(space)
    assert str(e.value) == f"{space}: toy: lr low must be a finite number > 0, got 0.0"


def test_checkpoint_holds_every_module_and_optimiser() -> None:
    data = ToyBlobs().load(StageRequest(dataset="x", stage="val"))
    a = Toy({}, data, seed=0)
    a.fit_epoch()
    assert set(a.stateful()) == {"img", "att", "opt_img", "opt_att", "model"}
    state = a.state_dict()
    import copy

    state = copy.deepcopy(state)
    a.fit_epoch()
    b = Toy({}, data, seed=99)
    b.load_state_dict(state)
    b.fit_epoch()
    for name in ("img", "att"):
        for p, q in zip(getattr(a, name).parameters(), getattr(b, name).parameters(), strict=True):
            assert torch.equal(p, q)
    assert a.opt_img.state_dict()["state"][0]["exp_avg"].equal(b.opt_img.state_dict()["state"][0]["exp_avg"])


def test_method_by_import_path() -> None:
    ref, path = method_ref(Toy)
    assert ref.endswith(":Toy") and path is not None and Path(path).is_dir()
    assert get_method(ref) is Toy
    assert method_ref(get_method("crnet")) == ("zsltune.methods.crnet:CRnet", None)


@pytest.mark.slow
def test_toy_method_sweep_and_rerun(tmp_path: Path) -> None:
    from zsltune.analysis.rerun import rerun
    from zsltune.sweep import SweepOptions, run_sweep

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    res = run_sweep(
        SweepOptions(
            space=str(space), dataset="d", storage=str(tmp_path / "s"), name="toy", num_samples=2, scheduler="fifo",
            quiet=True,
        )
    )  # fmt: skip
    assert res.counts["completed"] == 2, res.counts
    trials = pd.read_parquet(res.trials_path)
    assert set(trials["method"]) == {"toy"} and set(trials["dataset"]) == {"blobs-d"} and (trials["epochs"] == 3).all()
    epochs = pd.read_parquet(res.epochs_path)
    assert len(epochs) == 6 and epochs["gamma"].notna().all()

    out = rerun(res.sweep_dir, top=1, seeds=2, quiet=True)
    f = out.frame
    assert len(f) == 2 and (f["status"] == "completed").all() and (f["stage"] == "test").all()
    assert sorted(f["seed"]) == [0, 1] and set(f["dataset"]) == {"blobs-d"}
    sel = out.plan.selection[0]
    assert (f["epochs_run"] == sel.epochs).all() and sel.schedule_epochs == 3
    # γ chosen on validation at the selected epoch, frozen, applied on test; the test-picked one is an oracle
    best_ep = epochs[(epochs["trial_id"] == sel.trial_id) & (epochs["epoch"] == sel.epochs)]
    assert sel.knobs == {"gamma": pytest.approx(float(best_ep["gamma"].iloc[0]))}
    assert (f["gamma"] == sel.knobs["gamma"]).all() and (f["val_knob/gamma"] == sel.knobs["gamma"]).all()
    assert (f["oracle_H_cal"] >= f["H_cal"] - 1e-12).all() and f["oracle_gamma"].notna().all()
    plan = json.loads((res.sweep_dir / "rerun" / "rerun.json").read_text())
    assert plan["selection"][0]["knobs"]["gamma"] == sel.knobs["gamma"]


@pytest.mark.slow
def test_diverged_trial_ends_failed_and_is_not_retried(tmp_path: Path) -> None:
    """A configuration that diverges would diverge again: the trial ends failed with its reason after one attempt
    (retries, --max-failures 2 here, are for lost nodes and out-of-memory), and Optuna records it as FAIL."""
    import optuna

    from zsltune.sweep import SweepOptions, run_sweep

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    res = run_sweep(
        SweepOptions(
            space=str(space), dataset="d", storage=str(tmp_path / "s"), name="div", num_samples=2, scheduler="fifo",
            max_failures=2, overrides={"diverge_at": 2}, quiet=True,
        )
    )  # fmt: skip
    assert res.counts["failed"] == 2, res.counts
    trials = pd.read_parquet(res.trials_path)
    assert (trials["status"] == "failed").all() and (trials["failures"] == 1).all()
    assert trials["error"].str.contains("diverged on purpose in iteration 2").all()
    epochs = pd.read_parquet(res.epochs_path)
    assert sorted(epochs["epoch"]) == [1, 1] and (epochs["restores"] == 0).all()  # one attempt, no NaN row
    journal = res.sweep_dir / "optuna.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2


@pytest.mark.slow
def test_grid_with_repeats_and_the_ablation_report(tmp_path: Path) -> None:
    """--grid act --repeats 2: every (level, seed) runs its full budget; the report groups by the level with
    intervals and pairs each level with the baseline on the same seeds."""
    from zsltune.analysis.ablation import ablation_tables
    from zsltune.analysis.report import report
    from zsltune.analysis.sweepdir import load_sweep
    from zsltune.errors import ConfigError
    from zsltune.sweep import SweepOptions, run_sweep

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    res = run_sweep(
        SweepOptions(
            space=str(space), dataset="d", storage=str(tmp_path / "s"), name="grid", grid=["act"], repeats=2,
            seed=5, quiet=True,
        )
    )  # fmt: skip
    assert res.counts["completed"] == 4, res.counts
    trials = pd.read_parquet(res.trials_path)
    assert sorted(zip(trials["config/act"], trials["seed"], strict=True)) == [
        ("relu", 5), ("relu", 6), ("tanh", 5), ("tanh", 6),
    ]  # fmt: skip
    assert (trials["config/lr"] == 0.05).all() and (trials["epochs"] == 3).all()  # the rest fixed, full budget
    summary, paired, base = ablation_tables(load_sweep(res.sweep_dir))
    assert base == {"act": "relu"}  # the space's first choice
    h = summary[summary["metric"] == "H"].set_index("level")
    for lv in (("relu",), ("tanh",)):
        vals = trials.loc[trials["config/act"] == lv[0], "last/H"]
        assert h.loc[[lv], "n"].item() == 2 and h.loc[[lv], "mean"].item() == pytest.approx(vals.mean())
    diff = paired[paired["metric"] == "H"]
    relu = trials[trials["config/act"] == "relu"].set_index("seed")["last/H"]
    tanh = trials[trials["config/act"] == "tanh"].set_index("seed")["last/H"]
    assert diff["mean_diff"].item() == pytest.approx((tanh - relu).mean()) and diff["n"].item() == 2

    text = report(res.sweep_dir, baseline="act=tanh").read_text()
    assert "## Ablation" in text and "against the baseline **act=tanh**" in text and "act=relu" in text
    with pytest.raises(ConfigError, match="--baseline act=sigmoid: no trials at that level"):
        report(res.sweep_dir, baseline="act=sigmoid")
    with pytest.raises(ConfigError, match="NAME one of the grid's parameters"):
        report(res.sweep_dir, baseline="lr=1")


def test_joint_grid_levels_and_their_product(tmp_path: Path) -> None:
    """``I:J=1:1,2:4``-style items vary parameters together (only the pairs given); items multiply."""
    from zsltune.space import load_space
    from zsltune.sweep.grid import grid_configs, grid_levels, grid_names

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    items = ["lr:width=0.01:8,0.02:16", "act"]
    levels = grid_levels(items, method="toy", hparams=Toy.all_hparams(), space=load_space(space))
    assert levels == {("lr", "width"): [(0.01, 8), (0.02, 16)], ("act",): [("relu",), ("tanh",)]}
    assert grid_configs(levels) == [
        {"lr": 0.01, "width": 8, "act": "relu"}, {"lr": 0.01, "width": 8, "act": "tanh"},
        {"lr": 0.02, "width": 16, "act": "relu"}, {"lr": 0.02, "width": 16, "act": "tanh"},
    ]  # fmt: skip
    assert grid_names(items) == ["lr", "width", "act"]


@pytest.mark.parametrize(
    ("grid", "expect"),
    [
        (["lr"], "--grid lr: a float parameter needs its levels, e.g. --grid lr=V1,V2"),
        (["act=relu,swish"], "--grid act=relu,swish: toy: act must be one of relu, tanh, got 'swish'"),
        (["depth"], "--grid depth: depth is not a hyperparameter of toy"),
        (["lr:act=0.01:relu,0.02"], "each level needs 2 value(s) joined by ':'"),
        (["lr:act"], "parameters varied together need their levels"),
        (["act", "act=relu"], "--grid act: given twice"),
    ],
)
def test_bad_grid_is_one_line_before_ray(grid: list[str], expect: str, tmp_path: Path) -> None:
    from zsltune.errors import ConfigError
    from zsltune.sweep.options import SweepOptions, prepare

    space = tmp_path / "toy.yaml"
    space.write_text(SPACE)
    with pytest.raises(ConfigError) as e:
        prepare(SweepOptions(space=str(space), dataset="d", storage=str(tmp_path / "s"), grid=grid))
    assert expect in str(e.value)


def test_grid_items_parse_once_for_the_sweep_and_the_ablation_report() -> None:
    """``zsltune run --grid`` and ``analyze report``'s ablation read the stored items with one parser: names, and the
    levels given (each value as YAML) or None, nothing checked against a method."""
    from types import SimpleNamespace

    from zsltune.analysis.ablation import _items, grid_of
    from zsltune.sweep.grid import grid_names, parse_grid_items

    items = ["act", "lr = 0.01, 0.1", "I:J=1:1,2:4", "flag=true,false", "mode=gen,,"]
    parsed = parse_grid_items(items)
    assert parsed == [
        (["act"], None), (["lr"], [(0.01,), (0.1,)]), (["I", "J"], [(1, 1), (2, 4)]),
        (["flag"], [(True,), (False,)]), (["mode"], [("gen",)]),
    ]  # fmt: skip
    assert grid_names(items) == ["act", "lr", "I", "J", "flag", "mode"]
    sweep = SimpleNamespace(options={"grid": items})
    assert _items(sweep) == parsed and grid_of(sweep) == grid_names(items)
    assert _items(SimpleNamespace(options={})) == [] and grid_of(SimpleNamespace(options={"grid": None})) == []


def test_stored_options_load_with_one_line_errors_and_resources_checked(tmp_path: Path) -> None:
    """``load_options`` (``--resume``, ``analyze rerun``): the stored options back, or one line naming the file;
    ``check_resources``: a trial's resources checked as ``zsltune run`` checks them."""
    from dataclasses import replace

    from zsltune.errors import ConfigError, DataError
    from zsltune.sweep.options import OPTIONS_FILE, SweepOptions, check_resources, load_options, save_options

    o = SweepOptions(space="crnet", dataset="d", cpus_per_trial=2.0, grid=["act"], overrides={"hidden": 32})
    save_options(o, tmp_path / "s")
    assert load_options(tmp_path / "s") == o
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / OPTIONS_FILE).write_text(json.dumps({"space": "linear", "dataset": "demo"}))
    assert load_options(tmp_path / "old") == SweepOptions(space="linear", dataset="demo")
    with pytest.raises(DataError, match=rf"no {OPTIONS_FILE} \(the sweep's options\)"):
        load_options(tmp_path)
    for text, needle in [
        ("{", "invalid JSON"),
        ("[]", "not a JSON object of sweep options"),
        ('{"space": "crnet", "bogus": 1}', "unknown option(s) bogus"),
    ]:
        (tmp_path / "s" / OPTIONS_FILE).write_text(text)
        with pytest.raises(DataError) as e:
            load_options(tmp_path / "s")
        assert needle in str(e.value) and str(tmp_path / "s" / OPTIONS_FILE) in str(e.value)
        assert "\n" not in str(e.value)
    check_resources(o)
    for change, needle in [
        ({"cpus_per_trial": 0}, "--cpus-per-trial must be > 0, got 0"),
        ({"gpus_per_trial": -1.0}, "--gpus-per-trial must be >= 0"),
        ({"gpus_per_trial": 1.5}, "--gpus-per-trial above 1 must be a whole number, got 1.5"),
        ({"memory_per_trial": 0.0}, "--memory-per-trial must be > 0 GB"),
    ]:
        with pytest.raises(ConfigError) as e:
            check_resources(replace(o, **change))
        assert needle in str(e.value)


def _cli(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``zsltune ARGS`` in a fresh interpreter; prints whether Ray was started after it returns."""
    code = (
        "import sys; from zsltune.cli import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
        "ray = sys.modules.get('ray')\n"
        "print('RAY_STARTED' if ray is not None and ray.is_initialized() else 'NO_RAY', file=sys.stdout)\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--stage", "test"], "zsltune analyze rerun"),
        (["--set", "K=abc"], "--set K=abc: crnet: K must be an integer >= 1, got 'abc'"),
        (["--set", "att_norm=cosine"], "att_norm must be one of raw, l2, std, got 'cosine'"),
        (["--set", "K=100"], "K <= seen classes must hold"),  # a per-dataset rule: needs the data's class count
    ],
)
def test_bad_options_exit_2_with_one_line_and_start_no_ray(args: list[str], expect: str, tmp_path: Path) -> None:
    r = _cli("run", "--space", "crnet", "--storage", str(tmp_path), "--name", "bad", *args)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("zsltune: error")]
    assert len(errors) == 1 and expect in errors[0], r.stderr
    assert all(ln.startswith("zsltune: ") for ln in lines), r.stderr  # progress notes at most, no traceback
    assert r.stdout.strip().endswith("NO_RAY")
    assert not (tmp_path / "bad").exists()  # nothing started, nothing written


def test_data_seed_apart_from_search_seed(tmp_path: Path) -> None:
    """``--seed`` moves the search and the trials only; ``--data-seed`` the synthetic data and the hold-out."""
    from zsltune.sweep import SweepOptions, load_data, prepare

    cls = get_method("linear")
    bundles = {}
    for seed, data_seed in ((1, None), (2, None), (1, 5)):
        o, *_ = prepare(SweepOptions(space="linear", seed=seed, data_seed=data_seed, storage=str(tmp_path)))
        assert o.data_seed == (0 if data_seed is None else data_seed) and o.seed == seed
        bundles[(seed, data_seed)] = load_data(cls, {}, stage="val", options=o)
    a, b, c = bundles[(1, None)], bundles[(2, None)], bundles[(1, 5)]
    assert np.array_equal(a.index_seen, b.index_seen) and np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.index_seen, c.index_seen) or not np.array_equal(a.x_train[:5], c.x_train[:5])
    # a sweep stored before --data-seed existed drew its data with its seed: reruns keep doing so
    old = load_data(cls, {}, stage="val", options={"dataset": "demo", "seed": 5})
    assert np.array_equal(old.index_seen, c.index_seen)
