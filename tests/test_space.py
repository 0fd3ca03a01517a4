"""Search-space YAML: every shipped space is valid, and each malformed file fails naming file, parameter and fix."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from zsltune.errors import SpaceError, UnknownNameError
from zsltune.methods import get_method
from zsltune.space import available_spaces, load_space

GOOD = {
    "method": "linear",
    "metric": "H",
    "mode": "max",
    "max_epochs": 4,
    "grace_period": 1,
    "parameters": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True, "default": 1.0e-3},
        "batch_size": {"type": "categorical", "choices": [32, 64], "default": {"CUB": 32, "*": 64}},
        "att_norm": {"type": "categorical", "choices": ["raw", "l2"], "default": "l2"},
        "weight_decay": {
            "type": "float",
            "low": 1.0e-6,
            "high": 1.0e-2,
            "log": True,
            "default": 1.0e-4,
            "condition": {"att_norm": "l2"},
        },
    },
}


def write(tmp_path: Path, doc: object, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


@pytest.mark.parametrize("name", available_spaces())
def test_shipped_spaces_are_valid_and_match_their_trainer(name: str) -> None:
    space = load_space(name)
    trainer = get_method(space.method)
    assert set(space.names) <= set(trainer.all_hparams())
    for ds in ("AWA2", "CUB", "SUN", "demo"):
        for k, v in space.defaults(ds).items():
            assert next(p for p in space.params if p.name == k).contains(v)


def test_defaults_per_dataset_and_conditions(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    assert space.defaults("CUB")["batch_size"] == 32
    assert space.defaults("AWA2")["batch_size"] == 64
    assert "weight_decay" in space.defaults("AWA2")


def test_define_by_run_respects_conditions(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for _ in range(30):
        t = study.ask()
        space(t)
        params = t.params
        assert ("weight_decay" in params) == (params["att_norm"] == "l2")
        assert 1e-4 <= params["lr"] <= 1e-1
        study.tell(t, 0.0)


def bad(**change: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in change.items():
        if key in doc["parameters"]:
            doc["parameters"][key] = value
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (bad(lr={"type": "floaty", "low": 0, "high": 1, "default": 0.5}), "unknown type 'floaty'"),
        (
            bad(lr={"type": "float", "low": 3.0, "high": 1.0, "default": 2.0}),
            "low <= high must hold, got low=3.0, high=1.0",
        ),
        (bad(lr={"type": "float", "low": 0.1, "high": 1.0, "default": 2.0}), "default 2.0 is outside [0.1, 1.0]"),
        (bad(lr={"type": "float", "low": 0.0, "high": 1.0, "log": True, "default": 0.5}), "log scale needs low > 0"),
        (bad(lr={"type": "float", "low": "1e-5", "high": 1.0, "default": 0.5}), "'low' must be a number"),
        (bad(batch_size={"type": "categorical", "choices": [32, 64], "default": 48}), "default 48 is outside choices"),
        (bad(batch_size={"type": "categorical", "choices": [32], "default": {"CUB": 32}}), "'*' entry"),
        (
            bad(weight_decay={"type": "float", "low": 0.1, "high": 1.0, "default": 0.5, "condition": {"nope": 1}}),
            "condition on unknown parameter 'nope'",
        ),
        (bad(lr={"type": "float", "low": 0.1, "high": 1.0, "default": 0.5, "lowest": 1}), "unknown key 'lowest'"),
        (bad(mode="maximise"), "mode must be 'max' or 'min'"),
        (bad(max_epochs=0), "max_epochs must be a positive integer"),
        (bad(image_size="big"), "image_size must be >= 16 pixels, got 'big'"),
        (bad(recall_at=[8, 4]), "recall_at '8,4': use a preset (cub, cars, sop) or increasing K from 1"),
        (bad(recall_at={"sop": 1}), "recall_at must be a preset name or a list of K"),
        ({"method": "linear", "metric": "H"}, "missing top-level key 'parameters'"),
    ],
)
def test_malformed_space_names_file_parameter_and_fix(tmp_path: Path, doc: dict, needle: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert str(path) in msg and needle in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("param", "spec", "needle"),
    [
        (
            "temperature",
            {"type": "float", "low": 0.0, "high": 1.0},
            "linear: temperature low must be a finite number > 0, got 0.0",
        ),
        (
            "batch_size",
            {"type": "categorical", "choices": [0, 32]},
            "linear: batch_size choice must be an integer >= 1, got 0",
        ),
        (
            "att_norm",
            {"type": "categorical", "choices": ["raw", "std"]},
            "att_norm choice must be one of raw, l2, got 'std'",
        ),
        ("depth", {"type": "int", "low": 1, "high": 4}, "parameter 'depth' is not a hyperparameter of linear"),
    ],
)
def test_space_outside_the_declarations_fails_at_load(tmp_path: Path, param: str, spec: dict, needle: str) -> None:
    """A space searches inside the trainer's declared ranges: one line naming the file, the parameter, the rule and
    the value, when it loads."""
    path = write(tmp_path, {**GOOD, "parameters": {param: spec}})
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and needle in msg and "\n" not in msg


def test_a_space_may_start_from_other_defaults_than_the_papers() -> None:
    """The CPU space's first trial differs from the trainer's (paper) defaults; the paper space's is the trainer's."""
    cls = get_method("clarel")
    paper = cls.default_config("CUB")
    assert load_space("clarel").defaults("CUB")["embed_dim"] == 256 != paper["embed_dim"] == 1024
    assert load_space("clarel-paper").defaults("CUB")["embed_dim"] == paper["embed_dim"]


def test_invalid_yaml_syntax_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "method: linear\nparameters: {lr: [1, 2\n")
    with pytest.raises(SpaceError, match=r"invalid YAML at line \d+"):
        load_space(path)


def test_unknown_space_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as e:
        load_space("nosuchmethod")
    assert "crnet" in str(e.value) and "linear" in str(e.value)


def test_fixing_a_parameter_removes_it_and_decides_conditions(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    fixed = space.fix({"att_norm": "raw", "lr": 0.01})
    assert fixed.names == ["batch_size"]  # weight_decay depended on att_norm == l2
    kept = space.fix({"att_norm": "l2"})
    assert sorted(kept.names) == ["batch_size", "lr", "weight_decay"]
    assert all(not p.condition for p in kept.params)


def test_a_parameter_without_default_takes_the_trainers(tmp_path: Path) -> None:
    """A space may leave a default to the trainer's declaration (the paper's)."""
    from zsltune.methods import get_method

    path = tmp_path / "lin.yaml"
    path.write_text(
        "method: linear\nmetric: H\nmode: max\nmax_epochs: 2\ngrace_period: 1\nparameters:\n"
        "  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
    )
    space = load_space(path)
    assert space.params[0].default is None and space.defaults("demo") == {}
    fallback = get_method("linear").default_config("demo")
    assert space.defaults("demo", fallback=fallback) == {"lr": fallback["lr"]}


def test_data_side_keys_reach_the_space(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, {**GOOD, "image_size": 448, "recall_at": [1, 10, 100, 1000]}))
    assert space.image_size == 448 and space.recall_at == "1,10,100,1000"
    assert load_space(write(tmp_path, GOOD)).image_size is None
