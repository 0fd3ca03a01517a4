"""The xlsa17 loader on well-formed input: shapes, 0-based ids, class lists, optional pieces, attribute kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from zsltune.data import build_stage, load_dataset
from zsltune.data.xlsa17 import derive_val_classes

N, C, P, D = 600, 12, 16, 32


def _names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_tiny_dataset_shapes_and_ids(tiny_dataset_dir, read_mat):
    ds = load_dataset(tiny_dataset_dir)
    res, splits = read_mat(tiny_dataset_dir / "res101.mat"), read_mat(tiny_dataset_dir / "att_splits.mat")

    assert ds.name == "TINY" and ds.root == tiny_dataset_dir
    assert ds.features.shape == (N, D) and ds.features.dtype == np.float32
    assert ds.features.flags.c_contiguous
    np.testing.assert_array_equal(ds.features, res["features"].T.astype(np.float32))
    assert ds.labels.shape == (N,) and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, res["labels"].ravel().astype(np.int64) - 1)  # 1-based on disk
    assert ds.labels.min() == 0 and ds.labels.max() == C - 1
    assert ds.attributes.shape == (C, P) and ds.attributes.dtype == np.float32
    np.testing.assert_allclose(ds.attributes, splits["att"].T, rtol=1e-6)
    assert ds.attribute_kind == "att" and ds.synthetic is True
    assert ds.num_images == N and ds.num_classes == C
    assert ds.class_names == [f"class_{i + 1:03d}" for i in range(C)]
    assert ds.image_files is not None and len(ds.image_files) == N
    for attr in ("trainval", "test_seen", "test_unseen"):
        loc = getattr(ds, attr)
        assert loc.dtype == np.int64
        np.testing.assert_array_equal(loc, splits[f"{attr}_loc"].ravel().astype(np.int64) - 1)
    # synth_fresh puts every image in exactly one split
    everything = np.concatenate([ds.trainval, ds.test_seen, ds.test_unseen])
    np.testing.assert_array_equal(np.sort(everything), np.arange(N))


def test_class_lists_are_consistent(tiny_dataset_dir):
    ds = load_dataset(tiny_dataset_dir)
    names = np.array(ds.class_names)
    assert sorted(names[ds.seen_classes]) == sorted(_names(tiny_dataset_dir / "trainvalclasses.txt"))
    assert sorted(names[ds.unseen_classes]) == sorted(_names(tiny_dataset_dir / "testclasses.txt"))
    assert sorted(names[ds.train_classes]) == sorted(_names(tiny_dataset_dir / "trainclasses1.txt"))
    assert sorted(names[ds.val_classes]) == sorted(_names(tiny_dataset_dir / "valclasses1.txt"))
    for ids in (ds.seen_classes, ds.unseen_classes, ds.train_classes, ds.val_classes):
        assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0)  # sorted, unique
    assert np.intersect1d(ds.seen_classes, ds.unseen_classes).size == 0
    np.testing.assert_array_equal(np.union1d(ds.seen_classes, ds.unseen_classes), np.arange(C))
    assert np.intersect1d(ds.train_classes, ds.val_classes).size == 0
    np.testing.assert_array_equal(np.union1d(ds.train_classes, ds.val_classes), ds.seen_classes)
    assert set(ds.labels[ds.trainval]) <= set(ds.seen_classes)
    assert set(ds.labels[ds.test_seen]) <= set(ds.seen_classes)
    assert set(ds.labels[ds.test_unseen]) == set(ds.unseen_classes)


def test_missing_optional_pieces_are_derived(tiny_copy, edit_mat):
    """No original_att, allclasses_names, image_files or class lists; extra keys present: still loads."""
    before = load_dataset(tiny_copy)
    edit_mat(
        tiny_copy / "att_splits.mat",
        drop=("original_att", "allclasses_names"),
        train_loc=np.array([[N + 50]]),  # out of range on purpose: train_loc/val_loc are never read
        val_loc=np.array([[0]]),
        notes=np.array(["written by hand"]),
        extra_matrix=np.ones((3, 3)),
    )
    edit_mat(tiny_copy / "res101.mat", drop=("image_files",), extra=np.arange(4))
    for txt in tiny_copy.glob("*.txt"):
        txt.unlink()

    ds = load_dataset(tiny_copy)
    np.testing.assert_array_equal(ds.features, before.features)
    np.testing.assert_array_equal(ds.labels, before.labels)
    assert ds.image_files is None
    assert ds.class_names == [f"class_{i + 1:03d}" for i in range(C)]
    # seen/unseen come from the labels of the splits; the val split is a seeded draw from the seen classes
    np.testing.assert_array_equal(ds.seen_classes, np.unique(ds.labels[ds.trainval]))
    np.testing.assert_array_equal(ds.unseen_classes, np.unique(ds.labels[ds.test_unseen]))
    np.testing.assert_array_equal(ds.seen_classes, before.seen_classes)
    np.testing.assert_array_equal(ds.unseen_classes, before.unseen_classes)
    np.testing.assert_array_equal(ds.val_classes, derive_val_classes(ds.seen_classes, seed=1))
    np.testing.assert_array_equal(ds.train_classes, np.setdiff1d(ds.seen_classes, ds.val_classes))
    assert ds.val_classes.size >= 1 and ds.train_classes.size >= 1
    assert build_stage(ds, "val").n_unseen == ds.val_classes.size  # usable end to end


def test_class_names_from_allclasses_txt(tiny_dataset_dir, tiny_copy, edit_mat):
    edit_mat(tiny_copy / "att_splits.mat", drop=("allclasses_names",))
    names = [f"species_{i}" for i in range(C)]
    (tiny_copy / "allclasses.txt").write_text("\n".join(names) + "\n\n", encoding="utf-8")
    for fname in ("trainvalclasses.txt", "testclasses.txt", "trainclasses1.txt", "valclasses1.txt"):
        ids = [int(n.split("_")[1]) - 1 for n in _names(tiny_copy / fname)]
        (tiny_copy / fname).write_text("".join(f"  {names[i]}  \n" for i in ids), encoding="utf-8")  # padded
    ds = load_dataset(tiny_copy)
    assert ds.class_names == names
    ref = load_dataset(tiny_dataset_dir)  # the same classes under their original names
    for attr in ("seen_classes", "unseen_classes", "train_classes", "val_classes"):
        np.testing.assert_array_equal(getattr(ds, attr), getattr(ref, attr))


def test_missing_val_lists_are_derived_per_split(tiny_copy):
    from_lists = load_dataset(tiny_copy, split=1)
    (tiny_copy / "trainclasses1.txt").unlink()
    derived = load_dataset(tiny_copy, split=1)  # valclasses1.txt alone is not enough: derived
    np.testing.assert_array_equal(derived.seen_classes, from_lists.seen_classes)
    np.testing.assert_array_equal(derived.val_classes, derive_val_classes(from_lists.seen_classes, seed=1))
    split2 = load_dataset(tiny_copy, split=2)  # no *classes2.txt in synth_fresh's output
    np.testing.assert_array_equal(split2.val_classes, derive_val_classes(from_lists.seen_classes, seed=2))
    for ds in (derived, split2):
        np.testing.assert_array_equal(np.union1d(ds.train_classes, ds.val_classes), ds.seen_classes)
        assert np.intersect1d(ds.train_classes, ds.val_classes).size == 0


def test_derive_val_classes():
    seen = np.arange(3, 43)
    val = derive_val_classes(seen, seed=5)
    assert val.size == 10 and set(val) <= set(seen) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(val, derive_val_classes(seen, seed=5))
    assert not np.array_equal(val, derive_val_classes(seen, seed=6))
    assert derive_val_classes(np.array([1, 2]), seed=0).size == 1  # never all of the seen classes


def test_features_stored_n_by_d_are_accepted(tiny_copy, edit_mat, read_mat):
    before = load_dataset(tiny_copy)
    edit_mat(tiny_copy / "res101.mat", features=read_mat(tiny_copy / "res101.mat")["features"].T)
    np.testing.assert_array_equal(load_dataset(tiny_copy).features, before.features)


def test_integer_typed_labels_and_locs(tiny_copy, edit_mat, read_mat):
    before = load_dataset(tiny_copy)
    res, splits = read_mat(tiny_copy / "res101.mat"), read_mat(tiny_copy / "att_splits.mat")
    edit_mat(tiny_copy / "res101.mat", labels=res["labels"].astype(np.uint8))
    edit_mat(tiny_copy / "att_splits.mat", trainval_loc=splits["trainval_loc"].astype(np.float64).T)  # 1 x N
    ds = load_dataset(tiny_copy)
    np.testing.assert_array_equal(ds.labels, before.labels)
    np.testing.assert_array_equal(ds.trainval, before.trainval)


@pytest.mark.parametrize("kind", ["att", "original_att"])
def test_attribute_kinds_from_att_splits(tiny_dataset_dir, read_mat, kind):
    ds = load_dataset(tiny_dataset_dir, attributes=kind)
    expected = read_mat(tiny_dataset_dir / "att_splits.mat")[kind].T
    assert ds.attribute_kind == kind and ds.attributes.shape == (C, P)
    np.testing.assert_allclose(ds.attributes, expected.astype(np.float32))


def test_original_att_differs_from_att(tiny_dataset_dir):
    att = load_dataset(tiny_dataset_dir, attributes="att").attributes
    orig = load_dataset(tiny_dataset_dir, attributes="original_att").attributes
    assert not np.allclose(att, orig)
    np.testing.assert_allclose(np.linalg.norm(att, axis=1), 1.0, rtol=1e-5)  # att: l2-normalised rows


def test_sentence_attributes(tiny_copy):
    rng = np.random.default_rng(0)
    sent = rng.standard_normal((24, C))  # (P_sent, C), like CUB's 1024 x 200
    scipy.io.savemat(tiny_copy / "sent_splits.mat", {"att": sent, "trainval_loc": np.array([[1]])})
    ds = load_dataset(tiny_copy, attributes="sent")
    ref = load_dataset(tiny_copy)
    assert ds.attribute_kind == "sent" and ds.attributes.shape == (C, 24)
    np.testing.assert_allclose(ds.attributes, sent.T.astype(np.float32))
    # everything else still comes from res101.mat / att_splits.mat (sent_splits' locs are ignored)
    np.testing.assert_array_equal(ds.trainval, ref.trainval)
    np.testing.assert_array_equal(ds.labels, ref.labels)
    np.testing.assert_array_equal(ds.val_classes, ref.val_classes)


def test_name_override_and_user_path(tiny_dataset_dir):
    assert load_dataset(str(tiny_dataset_dir), name="custom").name == "custom"
