"""Every registered method honours the trainer contract (timm-style smoke test over the registry)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _spaces import space_defaults

from zsltune.data import build_stage, load_dataset
from zsltune.data.sources import StageRequest
from zsltune.errors import ConfigError, UnknownNameError
from zsltune.methods import METRIC_FAMILIES, Trainer, get_method, list_methods
from zsltune.space import available_spaces, load_space

#: shrink the sizes that only cost time, so each method runs in a second on the tiny dataset
TINY_SIZES = {
    "hidden": 32, "batch_size": 32, "embed_dim": 32, "lstm_units": 16, "filters": 8, "word_dim": 16,
    "n_syn": 20, "cls_epochs": 2, "pre_epochs": 2,
    "width": 8, "bottleneck": 4, "batch_classes": 4, "per_class": 2, "crop": 28, "d": 16,
    "part_size": 16, "warmup_steps": 1,
}  # fmt: skip


@pytest.fixture(scope="module")
def captioned_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from zsltune.data import synth_fresh
    from zsltune.data.synth_images import synth_images

    out = tmp_path_factory.mktemp("registry") / "TINYCAP"
    synth_fresh(out, seed=0, classes=12, attributes=16, images=600, feature_dim=32, captions=True)
    # the same folder also in the CUB image layout, for methods on pixels (the "images" source)
    img = synth_images(out.with_name("TINYIMG"), classes=12, per_class=5, size=32, seed=0)
    for f in img.iterdir():
        (shutil.copytree if f.is_dir() else shutil.copyfile)(f, out / f.name)
    # and part images around its class side as an xlsa17 folder over images (the "xlsa17-images" source)
    synth_images(out.with_name("TINYPARTS"), kind="parts", per_class=6, size=32, like=out, seed=0)
    return out


@pytest.fixture(scope="module")
def stage(tiny_dataset_dir: Path):
    return build_stage(load_dataset(tiny_dataset_dir), "val")


def method_stage(cls: type[Trainer], root: Path):
    """The val stage as the sweep loads it for ``cls``: through the method's own data source."""
    if cls.source({}).name == "xlsa17-images":
        root = root.with_name("TINYPARTS")
    return cls.source({}).load(StageRequest(dataset=str(root), stage="val"))


def tiny_config(cls: type[Trainer]) -> dict:
    """The method's CPU space's defaults (the paper's sizes cost minutes), its sizes shrunk further."""
    return {**space_defaults(cls.name), **{k: v for k, v in TINY_SIZES.items() if k in cls.all_hparams()}}


def shipped_methods() -> list[str]:
    """The package's own methods (tests may register toy methods of their own)."""
    return [n for n in list_methods() if get_method(n).__module__.startswith("zsltune.")]


def test_every_method_has_a_search_space_and_vice_versa() -> None:
    """Each method has the space of its own name; every shipped space (``clarel-paper`` too) names a method."""
    assert set(shipped_methods()) <= set(available_spaces())
    for name in shipped_methods():
        assert load_space(name).method == name
    from zsltune.methods.hparams import check_space

    for name in available_spaces():
        space = load_space(name)
        assert space.method in shipped_methods(), name
        check_space(space.method, get_method(space.method).all_hparams(), space)  # fits the declared kinds and ranges


@pytest.mark.parametrize("name", shipped_methods())
def test_method_contract(name: str, captioned_tiny: Path) -> None:
    cls = get_method(name)
    stage = method_stage(cls, captioned_tiny)
    trainer = cls(tiny_config(cls), stage, device="cpu", seed=0, max_epochs=3)
    losses = trainer.fit_epoch()
    assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    assert trainer.epoch == 1
    metrics = trainer.evaluate()
    keys = METRIC_FAMILIES[cls.metric_family]
    assert set(keys) <= set(metrics)  # a method may report more (e.g. CLAREL's α sweep, recall@k)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    assert all(0.0 <= metrics[k] <= 1.0 for k in keys), metrics

    # a checkpoint round trip resumes bit-identically
    state = copy.deepcopy(trainer.state_dict())  # state_dict() aliases live tensors; a checkpoint is a copy
    a = trainer.fit_epoch()
    clone = cls(tiny_config(cls), stage, device="cpu", seed=123, max_epochs=3)  # as a restarted trial would
    clone.load_state_dict(state)
    assert clone.epoch == 1
    b = clone.fit_epoch()
    assert a == b
    for p, q in zip(trainer.model.parameters(), clone.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", shipped_methods())
def test_unknown_hyperparameter_is_rejected(name: str, captioned_tiny: Path) -> None:
    cls = get_method(name)
    with pytest.raises(ConfigError, match=f"{name}: unknown hyperparameter 'no_such_knob'"):
        cls({"no_such_knob": 1}, method_stage(cls, captioned_tiny))


@pytest.mark.parametrize("name", shipped_methods())
def test_declarations(name: str) -> None:
    """Every hyperparameter declares a valid default for every dataset (the paper's, per dataset where the paper
    tunes it so); the shipped space fits the declared kinds and ranges; the data source and metric family are
    known."""
    from zsltune.methods.hparams import check_config, check_space

    cls = get_method(name)
    check_space(name, cls.all_hparams(), load_space(name))
    for k, hp in cls.all_hparams().items():
        assert not isinstance(hp.default, dict) or "*" in hp.default, f"{name}: {k}'s per-dataset default has no '*'"
    for ds in ("AWA1", "AWA2", "APY", "CUB", "SUN", "demo"):
        defaults = cls.default_config(ds)
        assert set(defaults) == set(cls.all_hparams())
        check_config(name, cls.all_hparams(), defaults)  # each one valid
    assert cls.metric_family in METRIC_FAMILIES and cls.source({}).name


#: the paper spaces' defaults that are not the trainer's: the backbone and crop the paper's runs need a weights
#: file for, while the trainer's default runs without one
RUNNABLE_NOT_PAPER = {"deml": {"backbone", "crop"}, "sgma": {"backbone", "crop"}}


@pytest.mark.parametrize("name", [n for n in available_spaces() if n.endswith("-paper")])
def test_paper_spaces_start_from_the_trainers_defaults(name: str) -> None:
    """A ``-paper`` space's first trial is the paper's configuration, which the trainer declares: one source."""
    space = load_space(name)
    cls = get_method(space.method)
    hps = cls.all_hparams()
    for ds in ("AWA1", "AWA2", "APY", "CUB", "SUN", "demo"):
        for p in space.params:
            if p.name not in RUNNABLE_NOT_PAPER.get(space.method, set()):
                assert hps[p.name].cast(p.default_for(ds)) == hps[p.name].default_for(ds), (ds, p.name)


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as e:
        get_method("resnet")
    assert all(n in str(e.value) for n in list_methods())


def test_seeded_trainers_are_deterministic(stage) -> None:
    cls = get_method("linear")
    runs = [cls({}, stage, seed=7).fit_epoch() for _ in range(2)]
    assert runs[0] == runs[1]
    assert cls({}, stage, seed=8).fit_epoch() != runs[0]
    assert np.isfinite(list(runs[0].values())).all()


def test_every_method_with_a_space_has_a_learning_test() -> None:
    """A number means something: each shipped method's defaults must be shown to learn (tests/methods/test_learning)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_learning", Path(__file__).with_name("test_learning.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    missing = sorted(set(shipped_methods()) & set(available_spaces()) - set(mod.LEARNING))
    assert not missing, f"methods with a search space but no learning test: {missing}"
