"""The val/test stages: the val stage is cut from trainval only and never holds a test image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zsltune.data import StageData, build_stage, load_dataset, load_stage, resolve_dataset
from zsltune.data.protocol import _holdout
from zsltune.data.xlsa17 import Dataset
from zsltune.errors import DataError

STAGE_ARRAYS = (
    "attributes",
    "class_ids",
    "x_train",
    "y_train",
    "x_seen",
    "y_seen",
    "x_unseen",
    "y_unseen",
    "index_train",
    "index_seen",
    "index_unseen",
)


def assert_no_test_index(ds: Dataset, st: StageData) -> None:
    """No test image in a val stage: neither in its provenance indices nor in its feature rows."""
    test = np.union1d(ds.test_seen, ds.test_unseen)
    assert np.intersect1d(st.class_ids, ds.unseen_classes).size == 0, "a test class in the val stage"
    for part in ("train", "seen", "unseen"):
        idx = getattr(st, f"index_{part}")
        assert np.intersect1d(idx, test).size == 0, f"index_{part} holds test images"
        np.testing.assert_array_equal(getattr(st, f"x_{part}"), ds.features[idx])  # rows are what they claim
        np.testing.assert_array_equal(st.class_ids[getattr(st, f"y_{part}")], ds.labels[idx])


def assert_stages_equal(a: StageData, b: StageData) -> None:
    for name in STAGE_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_seen == b.n_seen and a.class_names == b.class_names


@pytest.fixture(scope="module")
def tiny(tiny_dataset_dir: Path) -> Dataset:
    return load_dataset(tiny_dataset_dir)


# ---------------------------------------------------------------------------------------------- val stage


def test_val_stage_is_cut_from_trainval(tiny):
    st = build_stage(tiny, "val", seed=0)
    assert st.stage == "val" and st.dataset == "TINY" and st.synthetic
    tr, se, un = st.index_train, st.index_seen, st.index_unseen
    assert set(tr) | set(se) <= set(tiny.trainval)
    assert not set(tr) & set(se) and not set(tr) & set(un) and not set(se) & set(un)
    assert len(set(tr)) == tr.size and len(set(se)) == se.size and len(set(un)) == un.size
    # train + seen = every trainval image of a train class; unseen = every trainval image of a val class
    tv_labels = tiny.labels[tiny.trainval]
    np.testing.assert_array_equal(
        np.sort(np.concatenate([tr, se])), np.sort(tiny.trainval[np.isin(tv_labels, tiny.train_classes)])
    )
    np.testing.assert_array_equal(np.sort(un), np.sort(tiny.trainval[np.isin(tv_labels, tiny.val_classes)]))
    assert set(tiny.labels[tr]) == set(tiny.train_classes) == set(tiny.labels[se])
    assert set(tiny.labels[un]) == set(tiny.val_classes)
    assert_no_test_index(tiny, st)


def test_val_stage_labels_are_remapped_seen_first(tiny):
    st = build_stage(tiny, "val")
    n_seen, n_val = tiny.train_classes.size, tiny.val_classes.size
    assert st.n_seen == n_seen and st.n_unseen == n_val and st.num_classes == n_seen + n_val
    np.testing.assert_array_equal(st.class_ids, np.concatenate([tiny.train_classes, tiny.val_classes]))
    np.testing.assert_array_equal(st.attributes, tiny.attributes[st.class_ids])
    assert st.class_names == [tiny.class_names[i] for i in st.class_ids]
    for y in (st.y_train, st.y_seen):
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() < n_seen
    assert st.y_unseen.min() >= n_seen and st.y_unseen.max() < st.num_classes
    assert set(st.y_train) == set(range(n_seen)) and set(st.y_unseen) == set(range(n_seen, st.num_classes))


def test_val_holdout_share_per_class(tiny):
    for share in (0.2, 0.5):
        st = build_stage(tiny, "val", val_share=share, seed=3)
        seen_counts = np.bincount(st.y_seen, minlength=st.n_seen)
        all_counts = seen_counts + np.bincount(st.y_train, minlength=st.n_seen)
        assert (seen_counts >= 1).all() and (seen_counts < all_counts).all()
        expected = np.clip(np.round(all_counts * share), 1, all_counts - 1)
        np.testing.assert_array_equal(seen_counts, expected)
        assert np.all(np.abs(seen_counts / all_counts - share) <= 0.5 / all_counts + 1e-9)
        assert abs(st.y_seen.size / (st.y_seen.size + st.y_train.size) - share) < 0.02


def test_holdout_edge_cases():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 2, 2, 2, 4] + [5] * 10)  # class 3 absent, class 0 and 4 have one image
    mask = _holdout(labels, 0.2, rng)
    held = np.bincount(labels[mask], minlength=6)
    np.testing.assert_array_equal(held, [0, 1, 1, 0, 0, 2])  # never all of a class, at least one if >= 2
    assert _holdout(np.array([], dtype=np.int64), 0.2, rng).size == 0


def test_val_stage_rows_are_copies(tiny):
    st = build_stage(tiny, "val")
    for name in STAGE_ARRAYS:
        assert not np.shares_memory(getattr(st, name), tiny.features), name
    assert st.nbytes == sum(getattr(st, n).nbytes for n in STAGE_ARRAYS)


def test_stage_properties_and_summary(tiny):
    st = build_stage(tiny, "val")
    assert st.feature_dim == 32 and st.attribute_dim == 16
    assert st.summary() == {
        "dataset": "TINY",
        "stage": "val",
        "synthetic": True,
        "attributes": "att",
        "images": {"train": st.y_train.size, "seen": st.y_seen.size, "unseen": st.y_unseen.size},
        "classes": {"seen": st.n_seen, "unseen": st.n_unseen},
        "feature_dim": 32,
        "attribute_dim": 16,
    }


def test_val_stage_deterministic_per_seed(tiny):
    a, b = build_stage(tiny, "val", seed=11), build_stage(tiny, "val", seed=11)
    assert_stages_equal(a, b)
    c = build_stage(tiny, "val", seed=12)
    assert not np.array_equal(np.sort(a.index_seen), np.sort(c.index_seen))  # another held-out draw
    np.testing.assert_array_equal(
        np.sort(np.concatenate([a.index_train, a.index_seen])), np.sort(np.concatenate([c.index_train, c.index_seen]))
    )
    np.testing.assert_array_equal(a.index_unseen, c.index_unseen)  # the val classes do not depend on it
    assert_no_test_index(tiny, c)


# ---------------------------------------------------------------------------------------------- test stage


def test_test_stage_uses_the_official_splits(tiny):
    st = build_stage(tiny, "test", seed=5)
    assert st.stage == "test"
    np.testing.assert_array_equal(st.index_train, tiny.trainval)
    np.testing.assert_array_equal(st.index_seen, tiny.test_seen)
    np.testing.assert_array_equal(st.index_unseen, tiny.test_unseen)
    np.testing.assert_array_equal(st.class_ids, np.concatenate([tiny.seen_classes, tiny.unseen_classes]))
    assert st.n_seen == tiny.seen_classes.size and st.n_unseen == tiny.unseen_classes.size
    for part in ("train", "seen", "unseen"):
        idx = getattr(st, f"index_{part}")
        np.testing.assert_array_equal(getattr(st, f"x_{part}"), tiny.features[idx])
        np.testing.assert_array_equal(st.class_ids[getattr(st, f"y_{part}")], tiny.labels[idx])
    assert st.y_train.max() < st.n_seen and st.y_seen.max() < st.n_seen and st.y_unseen.min() >= st.n_seen
    assert_stages_equal(st, build_stage(tiny, "test", seed=6))  # the seed only matters for val


# ---------------------------------------------------------------------------------------------- leak check


def _add_real_style_train_val_locs(directory: Path, edit_mat) -> tuple[np.ndarray, np.ndarray]:
    """Give att_splits.mat train_loc/val_loc the way the real files have them: over trainval AND test_seen."""
    ds = load_dataset(directory)
    pool = np.concatenate([ds.trainval, ds.test_seen])
    train_loc = np.sort(pool[np.isin(ds.labels[pool], ds.train_classes)])
    val_loc = np.sort(pool[np.isin(ds.labels[pool], ds.val_classes)])
    assert np.intersect1d(train_loc, ds.test_seen).size > 0 and np.intersect1d(val_loc, ds.test_seen).size > 0
    edit_mat(
        directory / "att_splits.mat",
        train_loc=(train_loc + 1)[:, None].astype(np.uint16),
        val_loc=(val_loc + 1)[:, None].astype(np.uint16),
    )
    return train_loc, val_loc


def test_val_stage_ignores_train_loc_and_val_loc(tiny_copy, edit_mat, read_mat):
    before = build_stage(load_dataset(tiny_copy), "val", seed=0)
    train_loc, val_loc = _add_real_style_train_val_locs(tiny_copy, edit_mat)
    assert {"train_loc", "val_loc"} <= set(read_mat(tiny_copy / "att_splits.mat"))

    ds = load_dataset(tiny_copy)
    for seed in (0, 1, 2):
        st = build_stage(ds, "val", seed=seed)
        assert_no_test_index(ds, st)
        # a loader that trusted the files' locs would have put these test_seen images into the val stage
        leaked = np.intersect1d(np.union1d(train_loc, val_loc), ds.test_seen)
        indices = np.concatenate([st.index_train, st.index_seen, st.index_unseen])
        assert leaked.size > 0 and np.intersect1d(indices, leaked).size == 0
    assert_stages_equal(before, build_stage(ds, "val", seed=0))


def test_val_stage_never_sees_test_rows_by_value(tiny):
    """Belt and braces: no row of the val stage equals a test image's feature vector."""
    st = build_stage(tiny, "val")
    test_rows = {r.tobytes() for r in tiny.features[np.concatenate([tiny.test_seen, tiny.test_unseen])]}
    for x in (st.x_train, st.x_seen, st.x_unseen):
        assert not any(r.tobytes() in test_rows for r in x)


# ---------------------------------------------------------------------------------------------- load_stage


def test_load_stage_from_a_directory(tiny_dataset_dir, tiny):
    st = load_stage(str(tiny_dataset_dir), "val", seed=4)
    assert st.dataset == "TINY"
    assert_stages_equal(st, build_stage(tiny, "val", seed=4))
    assert_stages_equal(load_stage("TINY", "test", data_root=tiny_dataset_dir.parent), build_stage(tiny, "test"))


def test_resolve_dataset_generates_into_the_test_cache(tiny_copy, capsys):
    (tiny_copy / "res101.mat").unlink()  # a real-style class side without features
    out = resolve_dataset(str(tiny_copy))
    cache = Path(os.environ["ZSLTUNE_CACHE"])
    assert out.is_relative_to(cache) and (out / "res101.mat").is_file()
    assert "has no res101.mat; using synthetic features" in capsys.readouterr().err
    mtime = (out / "res101.mat").stat().st_mtime_ns
    assert resolve_dataset(str(tiny_copy), quiet=True) == out  # generated once, then reused
    assert (out / "res101.mat").stat().st_mtime_ns == mtime and capsys.readouterr().err == ""
    ds = load_dataset(out)
    assert ds.synthetic and ds.features.shape == (600, 2048)


def test_synthetic_cache_follows_the_class_lists(tiny_copy):
    """Editing a class list of the class side must not serve the cache entry holding the old copy."""
    (tiny_copy / "res101.mat").unlink()
    first = resolve_dataset(str(tiny_copy), quiet=True)
    train = (tiny_copy / "trainclasses1.txt").read_text(encoding="utf-8").split()
    val = (tiny_copy / "valclasses1.txt").read_text(encoding="utf-8").split()
    (tiny_copy / "trainclasses1.txt").write_text("\n".join(train[1:]), encoding="utf-8")
    (tiny_copy / "valclasses1.txt").write_text("\n".join([*val, train[0]]), encoding="utf-8")
    second = resolve_dataset(str(tiny_copy), quiet=True)
    assert second != first
    ds = load_dataset(second)
    assert sorted(ds.class_names[i] for i in ds.val_classes) == sorted([*val, train[0]])


def test_resolve_dataset_unknown_name(tiny_dataset_dir):
    with pytest.raises(DataError, match=r"--dataset NOPE: not found \(datasets under .*: TINY\)"):
        resolve_dataset("NOPE", data_root=tiny_dataset_dir.parent)


def test_demo_dataset():
    st = load_stage("demo", "val")
    assert st.dataset == "demo" and st.synthetic and st.feature_dim == 512
    assert resolve_dataset("demo").is_relative_to(Path(os.environ["ZSLTUNE_CACHE"]))
