"""Every bad-input case is one ``DataError`` whose one-line message names the file and the problem; the CLI prints
it as ``zsltune: error: ...`` with exit code 2 and no traceback (``--debug`` re-raises)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zsltune.cli import main
from zsltune.data import build_stage, load_dataset
from zsltune.errors import DataError, ZsltuneError

N, C = 600, 12
RES, ATT = "res101.mat", "att_splits.mat"


def load_error(directory: Path, **kwargs: Any) -> str:
    """The message of the DataError that loading ``directory`` raises; checks that it is one line."""
    with pytest.raises(DataError) as info:
        load_dataset(directory, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def assert_names(msg: str, path: Path, *problems: str) -> None:
    assert str(path) in msg, f"message does not name {path}: {msg}"
    for p in problems:
        assert p in msg, f"message does not say {p!r}: {msg}"


def _lines(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


# ---------------------------------------------------------------------------------------------- missing files


def test_dataset_directory_missing(tmp_path):
    missing = tmp_path / "nope"
    assert_names(load_error(missing), missing, "dataset directory not found", "zsltune data synth")


@pytest.mark.parametrize("fname", [RES, ATT])
def test_missing_mat_file(tiny_copy, fname):
    (tiny_copy / fname).unlink()
    assert_names(load_error(tiny_copy), tiny_copy / fname, "file not found")


def test_missing_sent_splits_for_sent_attributes(tiny_copy):
    assert_names(load_error(tiny_copy, attributes="sent"), tiny_copy / "sent_splits.mat", "file not found")


def test_unknown_attribute_kind(tiny_dataset_dir):
    with pytest.raises(DataError, match=r"attributes must be one of att, original_att, sent, got 'word2vec'"):
        load_dataset(tiny_dataset_dir, attributes="word2vec")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- missing keys


@pytest.mark.parametrize(
    ("fname", "key", "kwargs"),
    [
        (RES, "features", {}),
        (RES, "labels", {}),
        (ATT, "att", {}),
        (ATT, "original_att", {"attributes": "original_att"}),
        (ATT, "trainval_loc", {}),
        (ATT, "test_seen_loc", {}),
        (ATT, "test_unseen_loc", {}),
    ],
)
def test_missing_key(tiny_copy, edit_mat, fname, key, kwargs):
    edit_mat(tiny_copy / fname, drop=(key,))
    assert_names(load_error(tiny_copy, **kwargs), tiny_copy / fname, f"missing key '{key}'", "keys present:")


def test_missing_att_in_sent_splits(tiny_copy):
    import scipy.io

    scipy.io.savemat(tiny_copy / "sent_splits.mat", {"sentences": np.ones((4, C))})
    msg = load_error(tiny_copy, attributes="sent")
    assert_names(msg, tiny_copy / "sent_splits.mat", "missing key 'att'", "sentences")


# ---------------------------------------------------------------------------------------------- wrong shapes


def test_features_with_wrong_number_of_images(tiny_copy, edit_mat, read_mat):
    feats = read_mat(tiny_copy / RES)["features"]  # (D, N)
    edit_mat(tiny_copy / RES, features=feats[:, : N - 1])
    assert_names(
        load_error(tiny_copy),
        tiny_copy / RES,
        "'features' must be a numeric D x N matrix",
        f"N = {N}",
        f"shape {(feats.shape[0], N - 1)}",
    )


def test_features_not_a_matrix(tiny_copy, edit_mat):
    edit_mat(tiny_copy / RES, features=np.ones(N))  # savemat writes (1, N): right N but D = 1 is fine...
    load_dataset(tiny_copy)  # ...so a single feature per image loads
    edit_mat(tiny_copy / RES, features=np.array(["not numbers"] * 3))
    assert_names(load_error(tiny_copy), tiny_copy / RES, "'features' must be a numeric D x N matrix")


def test_features_with_nan(tiny_copy, edit_mat, read_mat):
    feats = read_mat(tiny_copy / RES)["features"]
    feats[3, 7] = np.nan
    edit_mat(tiny_copy / RES, features=feats)
    assert_names(load_error(tiny_copy), tiny_copy / RES, "NaN or inf")


@pytest.mark.parametrize("labels", [np.zeros((0, 1)), np.array([["a"], ["b"]])], ids=["empty", "strings"])
def test_labels_not_numeric_or_empty(tiny_copy, edit_mat, labels):
    edit_mat(tiny_copy / RES, labels=labels)
    assert_names(load_error(tiny_copy), tiny_copy / RES, "'labels' must be a non-empty numeric N x 1 array")


@pytest.mark.parametrize("bad", [1.5, np.nan], ids=["fraction", "nan"])
def test_labels_not_integer(tiny_copy, edit_mat, read_mat, bad):
    labels = read_mat(tiny_copy / RES)["labels"].astype(np.float64)
    labels[10, 0] = bad
    edit_mat(tiny_copy / RES, labels=labels)
    assert_names(load_error(tiny_copy), tiny_copy / RES, "'labels' must be integer class ids")


def test_labels_zero_based_on_disk(tiny_copy, edit_mat, read_mat):
    labels = read_mat(tiny_copy / RES)["labels"]
    edit_mat(tiny_copy / RES, labels=labels - 1)  # someone saved 0-based labels
    assert_names(load_error(tiny_copy), tiny_copy / RES, "1-based class ids >= 1, got 0")


def test_attributes_with_too_few_classes(tiny_copy, edit_mat, read_mat):
    att = read_mat(tiny_copy / ATT)["att"]  # (P, C)
    edit_mat(tiny_copy / ATT, att=att[:, : C - 1])
    assert_names(
        load_error(tiny_copy), tiny_copy / ATT, f"has {C - 1} columns", f"go up to {C}", "do not belong together"
    )


def test_class_names_count_mismatch(tiny_copy, edit_mat, read_mat):
    names = read_mat(tiny_copy / ATT)["allclasses_names"]
    edit_mat(tiny_copy / ATT, allclasses_names=names[: C - 2])
    assert_names(load_error(tiny_copy), tiny_copy / ATT, f"{C - 2} class names for {C} attribute columns")


# ---------------------------------------------------------------------------------------------- bad indices


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("trainval_loc", N + 1),
        ("trainval_loc", 0),
        ("test_seen_loc", -3),
        ("test_unseen_loc", N + 1),
        ("test_unseen_loc", 2.5),
    ],
)
def test_index_out_of_range(tiny_copy, edit_mat, read_mat, key, bad):
    loc = read_mat(tiny_copy / ATT)[key].astype(np.float64)
    loc[len(loc) // 2, 0] = bad
    edit_mat(tiny_copy / ATT, **{key: loc})
    assert_names(
        load_error(tiny_copy),
        tiny_copy / ATT,
        f"'{key}' indices must be 1-based integers in 1..{N}",
        "the number of images in res101.mat",
    )


def test_index_not_numeric(tiny_copy, edit_mat):
    edit_mat(tiny_copy / ATT, test_seen_loc=np.array(["1", "2"]))
    assert_names(load_error(tiny_copy), tiny_copy / ATT, "'test_seen_loc' must hold integer image indices")


@pytest.mark.parametrize(
    ("a", "b"),
    [("trainval_loc", "test_seen_loc"), ("trainval_loc", "test_unseen_loc"), ("test_seen_loc", "test_unseen_loc")],
)
def test_overlapping_splits(tiny_copy, edit_mat, read_mat, a, b):
    splits = read_mat(tiny_copy / ATT)
    shared = splits[b][:5]
    edit_mat(tiny_copy / ATT, **{a: np.concatenate([splits[a], shared])})
    assert_names(load_error(tiny_copy), tiny_copy / ATT, f"{a} and {b} share 5 images", "the splits must be disjoint")


# ---------------------------------------------------------------------------------------------- labels vs lists


@pytest.mark.parametrize(
    ("split", "other"),
    [("trainval", "unseen_classes"), ("test_seen", "unseen_classes"), ("test_unseen", "seen_classes")],
)
def test_labels_disagree_with_class_lists(tiny_copy, edit_mat, read_mat, split, other):
    ds = load_dataset(tiny_copy)
    labels = read_mat(tiny_copy / RES)["labels"]
    labels[getattr(ds, split)[0], 0] = getattr(ds, other)[0] + 1  # 1-based on disk
    edit_mat(tiny_copy / RES, labels=labels)
    assert_names(
        load_error(tiny_copy),
        tiny_copy / RES,
        f"labels of {split}_loc include class id",
        "labels disagree with the class lists",
    )


def test_class_lists_move_a_class(tiny_copy):
    """The same mistake seen from the lists' side: a trainval class listed as a test class."""
    tv, te = _lines(tiny_copy / "trainvalclasses.txt"), _lines(tiny_copy / "testclasses.txt")
    (tiny_copy / "trainvalclasses.txt").write_text("\n".join(tv[1:]), encoding="utf-8")
    (tiny_copy / "testclasses.txt").write_text("\n".join([*te, tv[0]]), encoding="utf-8")
    assert_names(load_error(tiny_copy), tiny_copy / RES, "labels disagree with the class lists")


@pytest.mark.parametrize("fname", ["trainvalclasses.txt", "testclasses.txt", "trainclasses1.txt", "valclasses1.txt"])
def test_class_list_names_unknown_class(tiny_copy, fname):
    path = tiny_copy / fname
    path.write_text(path.read_text(encoding="utf-8") + "okapi_unicorn\n", encoding="utf-8")
    assert_names(
        load_error(tiny_copy), path, "class 'okapi_unicorn' is not among the dataset's class names", "1 unknown"
    )


def test_seen_and_unseen_lists_share_a_class(tiny_copy):
    tv = _lines(tiny_copy / "trainvalclasses.txt")
    with open(tiny_copy / "testclasses.txt", "a", encoding="utf-8") as f:
        f.write(tv[0] + "\n")
    assert_names(load_error(tiny_copy), tiny_copy, "trainvalclasses.txt and testclasses.txt share classes")


def test_val_list_outside_seen_classes(tiny_copy):
    test_class = _lines(tiny_copy / "testclasses.txt")[0]
    with open(tiny_copy / "valclasses1.txt", "a", encoding="utf-8") as f:
        f.write(test_class + "\n")
    assert_names(load_error(tiny_copy), tiny_copy / "valclasses1.txt", "outside trainvalclasses")


def test_train_and_val_lists_share_a_class(tiny_copy):
    val_class = _lines(tiny_copy / "valclasses1.txt")[0]
    with open(tiny_copy / "trainclasses1.txt", "a", encoding="utf-8") as f:
        f.write(val_class + "\n")
    msg = load_error(tiny_copy)
    assert_names(msg, tiny_copy / "trainclasses1.txt", "share classes")
    assert str(tiny_copy / "valclasses1.txt") in msg


# ---------------------------------------------------------------------------------------------- corrupt files


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_tail(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-16])


def _header_only(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:128])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size=4096, dtype=np.uint8).tobytes())


def _html(path: Path) -> None:  # what a failed download often leaves behind
    path.write_text("<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n", encoding="utf-8")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated-half": _truncate_half,
    "truncated-tail": _truncate_tail,
    "header-only": _header_only,
    "garbage": _garbage,
    "html": _html,
    "empty": _empty,
}


@pytest.mark.parametrize("fname", [RES, ATT])
@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupt_mat_file(tiny_copy, fname, how):
    CORRUPTIONS[how](tiny_copy / fname)
    msg = load_error(tiny_copy)
    assert_names(msg, tiny_copy / fname)
    assert ("truncated or corrupt" in msg) or ("not a readable MATLAB file" in msg), msg


def test_matlab_v73_file(tiny_copy):
    """v7.3 files are HDF5; scipy cannot read them. The header alone marks the version (0x0200)."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
    (tiny_copy / RES).write_bytes(header + bytes(512))
    assert_names(load_error(tiny_copy), tiny_copy / RES, "MATLAB v7.3 files are not supported", "save -v7")


# ---------------------------------------------------------------------------------------------- stage options


def test_bad_stage_options(tiny_dataset_dir):
    ds = load_dataset(tiny_dataset_dir)
    with pytest.raises(DataError, match="stage must be one of val, test, got 'train'"):
        build_stage(ds, "train")  # type: ignore[arg-type]
    for share in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(DataError, match="0 < val_share < 1"):
            build_stage(ds, "val", val_share=share)


def test_stage_without_unseen_images(tiny_copy, edit_mat):
    """A val split whose val classes have no trainval image cannot be evaluated."""
    ds = load_dataset(tiny_copy)
    keep = ds.trainval[~np.isin(ds.labels[ds.trainval], ds.val_classes)]
    edit_mat(tiny_copy / ATT, trainval_loc=(keep + 1)[:, None])
    with pytest.raises(DataError, match=r"the val stage has .* training and 0 unseen images") as info:
        build_stage(load_dataset(tiny_copy), "val")
    assert str(tiny_copy) in str(info.value)


# ---------------------------------------------------------------------------------------------- CLI


def _bad_dir(tiny_copy: Path) -> tuple[Path, Path]:
    _truncate_half(tiny_copy / ATT)
    return tiny_copy, tiny_copy / ATT


def test_cli_check_bad_dir_exits_2_with_one_line(tiny_copy, capsys):
    directory, bad_file = _bad_dir(tiny_copy)
    assert main(["data", "check", str(directory)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zsltune: error: ") and str(bad_file) in lines[0]
    assert "Traceback" not in err


def test_cli_check_missing_dir(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zsltune: error: ") and "dataset directory not found" in err


def test_cli_debug_raises(tiny_copy):
    directory, _ = _bad_dir(tiny_copy)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        main(["--debug", "data", "check", str(directory)])
    assert issubclass(DataError, ZsltuneError)


def _console_script() -> list[str]:
    """The installed ``zsltune`` entry point, preferring the one next to this interpreter."""
    here = Path(sys.executable).parent / ("zsltune.exe" if os.name == "nt" else "zsltune")
    found = str(here) if here.is_file() else shutil.which("zsltune")
    if found is None:
        pytest.skip("the zsltune console script is not installed (pip install -e .)")
    return [found]


def test_console_script_missing_dir(tmp_path):
    missing = tmp_path / "no-such-dataset"
    proc = subprocess.run(
        [*_console_script(), "data", "check", str(missing)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.startswith("zsltune: error: ") and str(missing) in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
