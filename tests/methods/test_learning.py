"""A method's defaults learn, judged against a reference on the same data: every shipped method, trained with its
search space's defaults (nothing overridden) for a fixed number of optimisation steps on a small calibrated twin (the
demo's generator row: unseen classes borrow their look from seen ones, so a linear baseline has the seen bias),
reaches at least 0.8x what ESZSL (Romera-Paredes & Torr, 2015; knobs chosen on the same val stage) gets there: its
uncalibrated H for a method scored on H, its calibrated H for one scored on a calibrated H. Image methods: SGMA
against ESZSL on the same images' pixels, DeML against retrieval by colour histograms. The registry test fails for a
method with a space and no entry here (not timed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _spaces import space_defaults

from zsltune.baseline import baseline_report, colour_histograms
from zsltune.data import StageData, synth_fresh
from zsltune.data.sources import StageRequest
from zsltune.data.synth import TWINS
from zsltune.methods import get_method

#: method -> (optimisation steps, the metric the space optimises, the reference's metric it is held to)
LEARNING: dict[str, tuple[int, str, str]] = {
    "linear": (600, "H", "H"),
    "crnet": (1200, "H", "H"),
    "clarel": (600, "H_alpha", "H_cal"),
    "tlvsc": (600, "H", "H"),
    "deml": (150, "recall@1", "recall@1"),
    "sgma": (300, "H_cal", "H_cal"),
}
SHARE = 0.8  # of the reference's figure


@pytest.fixture(scope="module")
def learn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 classes (val stage: 13 seen + 3 unseen = 16, chance per-class accuracy 1/16), 100 images a class, the demo's
    generator row a little less noisy (difficulty 0.7)."""
    out = tmp_path_factory.mktemp("learn") / "LEARN"
    return synth_fresh(
        out, seed=3, classes=20, attributes=32, images=2000, feature_dim=64, captions=True, difficulty=0.7,
        params=TWINS["demo"],
    )  # fmt: skip


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


#: methods measured below their reference here, with the issue that owns the defect (strict: a fix shows as XPASS)
SHORT_OF_REFERENCE = {
    # H_cal 0.38 with the cropping net (0.48 with the detached crop) vs ESZSL on the same pixels 0.69, 32 px parts
    "sgma": "SGMA's attention guided by the semantics (issue 25)",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_REFERENCE[n]))
        if n in SHORT_OF_REFERENCE
        else n
        for n in sorted(LEARNING)
    ],
)
def test_space_defaults_learn(
    name: str, learn_dir: Path, image_dir: Path, parts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, metric, ref_metric = LEARNING[name]
    cls = get_method(name)
    source = cls.source({}).name
    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path / "cache"))
    root = {"images": image_dir, "xlsa17-images": parts_dir}.get(source, learn_dir)
    data = cls.source({}).load(StageRequest(dataset=str(root), stage="val"))
    assert data.num_classes >= 10  # chance per-class accuracy over all stage classes <= 0.1
    iters = 6
    config = space_defaults(name, data.dataset)  # the space's defaults, as a sweep's first trial has them
    t = cls(config, data, seed=0, max_epochs=iters, iteration_steps=steps // iters)
    before = t.evaluate()[metric]
    for _ in range(iters):
        t.fit_epoch()
    after = t.evaluate()
    ref = _reference(source, data)
    assert after[metric] >= SHARE * ref[ref_metric], (name, after, {"reference": ref})
    assert after[metric] > before, (name, before, after)  # beats the randomly initialised network


def _reference(source: str, data: object) -> dict[str, float]:
    """The reference's figures on the method's own val stage: ESZSL on features (or on the images' pixels), or
    retrieval by colour histograms on retrieval images."""
    if source == "images":
        from zsltune.metrics import recall_at_k

        cache, y = data.cached("eval")  # type: ignore[attr-defined]
        e = colour_histograms(cache.pixels)
        return recall_at_k(e, e, y, y, exclude_self=True)
    if source == "xlsa17-images":
        data = _pixels_stage(data)
    return baseline_report("eszsl", data)  # type: ignore[arg-type]


def _pixels_stage(data: object) -> StageData:
    """An image stage as features: each image's pixels, flattened and scaled to [0, 1] (N, R*R*3)."""
    x, y = {}, {}
    for split in ("train", "seen", "unseen"):
        cache, y[split] = data.cached(split)  # type: ignore[attr-defined]
        x[split] = np.asarray(cache.pixels, np.float32).reshape(len(y[split]), -1) / 255.0
    c = data.num_classes  # type: ignore[attr-defined]
    return StageData(
        dataset="pixels", stage="val", attribute_kind="att", synthetic=True,
        attributes=data.attributes, n_seen=data.n_seen, class_ids=np.arange(c),  # type: ignore[attr-defined]
        class_names=[str(i) for i in range(c)],
        x_train=x["train"], y_train=y["train"], x_seen=x["seen"], y_seen=y["seen"], x_unseen=x["unseen"],
        y_unseen=y["unseen"], index_train=np.arange(len(y["train"])), index_seen=np.arange(len(y["seen"])),
        index_unseen=np.arange(len(y["unseen"])),
    )  # fmt: skip
