"""A method's defaults learn: every shipped method, trained with its search space's defaults (nothing overridden) for
a fixed number of optimisation steps on a small synthetic stage where chance per-class accuracy is <= 0.1, reaches
validation H >= 0.2. The registry test fails for a method with a space and no entry here (not timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zsltune.data import synth_fresh
from zsltune.data.sources import StageRequest
from zsltune.methods import get_method

#: method -> (optimisation steps, the metric whose value must reach 0.2: the space's own H variant)
LEARNING: dict[str, tuple[int, str]] = {
    "linear": (600, "H"),
    "crnet": (1200, "H"),
    "clarel": (600, "H_alpha"),
    "tlvsc": (1200, "H_cal"),
    "deml": (300, "recall@1"),
    "sgma": (300, "H_cal"),
}
BAR = 0.2


@pytest.fixture(scope="module")
def learn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 classes (val stage: 13 seen + 3 unseen = 16, chance per-class accuracy 1/16), 100 images a class, features
    a little less noisy than the default (difficulty 0.7; 1.0 mimics ResNet features on AWA2)."""
    out = tmp_path_factory.mktemp("learn") / "LEARN"
    return synth_fresh(
        out, seed=3, classes=20, attributes=32, images=2000, feature_dim=64, captions=True, difficulty=0.7
    )


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic retrieval images: 60 classes x 12 of 32x32; the val stage trains on 24 classes and evaluates on 6
    (72 images, chance recall@1 about 1/6)."""
    from zsltune.data.synth_images import synth_images

    return synth_images(tmp_path_factory.mktemp("learn") / "IMG", classes=60, per_class=12, size=32, seed=3)


@pytest.fixture(scope="module")
def parts_dir(learn_dir: Path) -> Path:
    """Synthetic part images (32x32, 30 a class) around ``learn_dir``'s class side, an xlsa17 folder over images."""
    from zsltune.data.synth_images import synth_images

    return synth_images(learn_dir.with_name("PARTS"), kind="parts", per_class=30, size=32, like=learn_dir, seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(LEARNING))
def test_space_defaults_learn(
    name: str, learn_dir: Path, image_dir: Path, parts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, metric = LEARNING[name]
    cls = get_method(name)
    source = cls.source({}).name
    images = source == "images"
    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path / "cache"))
    root = {"images": image_dir, "xlsa17-images": parts_dir}.get(source, learn_dir)
    data = cls.source({}).load(StageRequest(dataset=str(root), stage="val"))
    assert data.num_classes >= 10  # chance per-class accuracy over all stage classes <= 0.1
    iters = 6
    t = cls({}, data, seed=0, max_epochs=iters, iteration_steps=steps // iters)  # the space's defaults, as they are
    before = t.evaluate()[metric]
    for _ in range(iters):
        t.fit_epoch()
    after = t.evaluate()
    assert after[metric] >= BAR, (name, before, after)
    assert after[metric] > before, (name, before, after)  # beats the randomly initialised network
    if images:  # and retrieval by colour alone
        from zsltune.baseline import colour_histograms
        from zsltune.metrics import recall_at_k

        cache, y = data.cached("eval")
        e = colour_histograms(cache.pixels)
        assert after[metric] > recall_at_k(e, e, y, y, exclude_self=True)[metric], (name, after)
