"""A method's defaults learn: every shipped method, trained with its search space's defaults (nothing overridden) for
a fixed number of optimisation steps on a small synthetic stage where chance per-class accuracy is <= 0.1, reaches
validation H >= 0.2. The registry test fails for a method with a space and no entry here (not timed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zsltune.data import synth_fresh
from zsltune.data.sources import StageRequest
from zsltune.methods import get_method

#: method -> (optimisation steps, the metric whose value must reach 0.2: the space's own H variant)
LEARNING: dict[str, tuple[int, str]] = {
    "linear": (600, "H"),
    "crnet": (1200, "H"),
    "clarel": (600, "H_alpha"),
    "tlvsc": (1200, "H_cal"),
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


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(LEARNING))
def test_space_defaults_learn(name: str, learn_dir: Path) -> None:
    steps, metric = LEARNING[name]
    cls = get_method(name)
    data = cls.source({}).load(StageRequest(dataset=str(learn_dir), stage="val"))
    assert data.num_classes >= 10  # chance per-class accuracy over all stage classes <= 0.1
    iters = 6
    t = cls({}, data, seed=0, max_epochs=iters, iteration_steps=steps // iters)  # the space's defaults, as they are
    before = t.evaluate()[metric]
    for _ in range(iters):
        t.fit_epoch()
    after = t.evaluate()
    assert after[metric] >= BAR, (name, before, after)
    assert after[metric] > before, (name, before, after)
