"""The six real xlsa17 class sides (``ZSLTUNE_DATA``) with synthetic features: published split sizes, class
counts, and a val stage without test images. Skipped when ``ZSLTUNE_DATA`` is unset.

Features are 16-d here (``synth_like(..., feature_dim=16)``) to stay fast; N, locs and classes are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from zsltune.data import Dataset, build_stage, load_dataset, synth_like

# trainval, test_seen, test_unseen images; seen, unseen classes; train, val classes (split 1); attribute dim
PUBLISHED = {
    "APY": ((5_932, 1_483, 7_924), (20, 12), (15, 5), 64),
    "AWA1": ((19_832, 4_958, 5_685), (40, 10), (27, 13), 85),
    "AWA2": ((23_527, 5_882, 7_913), (40, 10), (27, 13), 85),
    "CUB": ((7_057, 1_764, 2_967), (150, 50), (100, 50), 312),
    "FLO": ((5_631, 1_403, 1_155), (82, 20), (62, 20), 1024),  # no class lists: val classes derived
    "SUN": ((10_320, 2_580, 1_440), (645, 72), (580, 65), 102),
}
# images of train_loc/val_loc that are also in test_seen_loc, in the files that have them
TRAIN_VAL_LOC_LEAKS = {
    ("AWA1", "att_splits.mat"): (3_404, 1_554),
    ("AWA2", "att_splits.mat"): (4_031, 1_851),
    ("CUB", "sent_splits.mat"): (1_173, 591),
    ("FLO", "att_splits.mat"): (1_173, 230),
    ("SUN", "att_splits.mat"): (2_320, 260),
}
DATASETS = sorted(PUBLISHED)


@pytest.fixture(scope="module")
def synth_real(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Dataset]:
    """``synth_real(name)``: the real class side of ``name`` with 16-d synthetic features, loaded (memoised)."""
    out_root = tmp_path_factory.mktemp("real16")
    loaded: dict[str, Dataset] = {}

    def get(name: str) -> Dataset:
        if name not in loaded:
            assert (real_root / name / "att_splits.mat").is_file(), f"{real_root / name} lacks att_splits.mat"
            loaded[name] = load_dataset(synth_like(real_root / name, out_root / name, feature_dim=16))
        return loaded[name]

    return get


def _locs(path: Path) -> dict[str, np.ndarray]:
    mat = scipy.io.loadmat(str(path))
    return {k: np.asarray(v).astype(np.int64).ravel() - 1 for k, v in mat.items() if k.endswith("_loc")}


@pytest.mark.parametrize("name", DATASETS)
def test_published_split_sizes(synth_real, real_root, name):
    (n_tv, n_ts, n_tu), (n_seen, n_unseen), (n_train, n_val), p = PUBLISHED[name]
    ds = synth_real(name)
    assert (ds.trainval.size, ds.test_seen.size, ds.test_unseen.size) == (n_tv, n_ts, n_tu)
    assert ds.num_images == n_tv + n_ts + n_tu  # every real image is in exactly one split
    assert (ds.seen_classes.size, ds.unseen_classes.size) == (n_seen, n_unseen)
    assert (ds.train_classes.size, ds.val_classes.size) == (n_train, n_val)
    assert ds.attributes.shape == (n_seen + n_unseen, p) and ds.features.shape == (ds.num_images, 16)
    assert ds.synthetic
    real = _locs(real_root / name / "att_splits.mat")  # the synthetic copy keeps the real locs
    for split in ("trainval", "test_seen", "test_unseen"):
        np.testing.assert_array_equal(getattr(ds, split), real[f"{split}_loc"])


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "FLO"])
def test_class_lists_match_the_real_files(synth_real, real_root, name):
    ds = synth_real(name)
    names = np.array(ds.class_names)

    def listed(fname: str) -> list[str]:
        text = (real_root / name / fname).read_text(encoding="utf-8")
        return sorted(s.strip() for s in text.splitlines() if s.strip())

    assert sorted(names[ds.seen_classes]) == listed("trainvalclasses.txt")
    assert sorted(names[ds.unseen_classes]) == listed("testclasses.txt")
    assert sorted(names[ds.train_classes]) == listed("trainclasses1.txt")
    assert sorted(names[ds.val_classes]) == listed("valclasses1.txt")


@pytest.mark.parametrize("name", DATASETS)
def test_val_stage_holds_no_test_index(synth_real, name):
    ds = synth_real(name)
    st = build_stage(ds, "val", seed=0)
    test = np.union1d(ds.test_seen, ds.test_unseen)
    assert np.intersect1d(st.class_ids, ds.unseen_classes).size == 0, f"{name}: a test class in the val stage"
    for part in ("train", "seen", "unseen"):
        idx = getattr(st, f"index_{part}")
        assert idx.size > 0 and np.isin(idx, ds.trainval).all()
        assert np.intersect1d(idx, test).size == 0, f"{name}: val index_{part} holds test images"
        np.testing.assert_array_equal(getattr(st, f"x_{part}"), ds.features[idx])
    assert (st.n_seen, st.n_unseen) == PUBLISHED[name][2]
    assert st.index_train.size + st.index_seen.size + st.index_unseen.size <= ds.trainval.size
    assert abs(st.index_seen.size / (st.index_seen.size + st.index_train.size) - 0.2) < 0.02

    test_stage = build_stage(ds, "test")
    n_tv, n_ts, n_tu = PUBLISHED[name][0]
    assert (test_stage.y_train.size, test_stage.y_seen.size, test_stage.y_unseen.size) == (n_tv, n_ts, n_tu)
    assert (test_stage.n_seen, test_stage.n_unseen) == PUBLISHED[name][1]


@pytest.mark.parametrize(("name", "fname"), sorted(TRAIN_VAL_LOC_LEAKS))
def test_real_train_loc_overlaps_test_seen(real_root, name, fname):
    """Why the val stage is built from trainval_loc only: the files' train_loc/val_loc hold test_seen images."""
    locs = _locs(real_root / name / fname)
    leaks = tuple(np.intersect1d(locs[k], locs["test_seen_loc"]).size for k in ("train_loc", "val_loc"))
    assert leaks == TRAIN_VAL_LOC_LEAKS[name, fname]
    assert np.intersect1d(locs["train_loc"], locs["test_unseen_loc"]).size == 0


def test_files_without_train_loc(real_root):
    """APY and CUB's att_splits.mat carry no train_loc/val_loc at all; the loader never needs them."""
    for name in ("APY", "CUB"):
        assert not {"train_loc", "val_loc"} & set(_locs(real_root / name / "att_splits.mat"))


def test_cub_sentence_attributes(synth_real):
    ds = synth_real("CUB")
    sent = load_dataset(ds.root, attributes="sent")
    assert sent.attributes.shape == (200, 1024) and sent.attribute_kind == "sent"
    np.testing.assert_array_equal(sent.trainval, ds.trainval)
    st = build_stage(sent, "val")
    assert st.attribute_dim == 1024 and (st.n_seen, st.n_unseen) == (100, 50)
