"""``zsltune data synth`` and ``zsltune data check`` through ``zsltune.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zsltune.cli import main
from zsltune.data import build_stage, load_dataset

SYNTH8 = "data synth --classes 8 --attributes 6 --images 200 --dim 16"
CLASS_LISTS = ("trainvalclasses.txt", "testclasses.txt", "trainclasses1.txt", "valclasses1.txt")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run_cli(capsys, "data", "check", *argv)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "S8"
    assert main([*SYNTH8.split(), "--seed", "3", "--out", str(out)]) == 0
    return out


def test_synth_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "S8"
    code, stdout, _ = run_cli(capsys, *SYNTH8.split(), "--out", str(out))
    assert code == 0 and stdout.strip() == f"wrote {out / 'res101.mat'}"
    for f in ("res101.mat", "att_splits.mat", "allclasses.txt", *CLASS_LISTS):
        assert (out / f).is_file(), f
    ds = load_dataset(out)
    assert ds.features.shape == (200, 16) and ds.attributes.shape == (8, 6) and ds.synthetic


def test_check_val_stage_json(synth_dir, capsys):
    ds = load_dataset(synth_dir)
    st = build_stage(ds, "val", seed=0)
    summary = check_json(capsys, str(synth_dir), "--stage", "val")
    # 8 classes: 2 unseen (test), 6 seen, of which 2 are val classes
    assert summary["classes"] == {"seen": 4, "unseen": 2}
    assert summary == {
        "dataset": "S8",
        "stage": "val",
        "synthetic": True,
        "attributes": "att",
        "images": {"train": st.y_train.size, "seen": st.y_seen.size, "unseen": st.y_unseen.size},
        "classes": {"seen": 4, "unseen": 2},
        "feature_dim": 16,
        "attribute_dim": 6,
        "images_total": 200,
        "splits": {"trainval": ds.trainval.size, "test_seen": ds.test_seen.size, "test_unseen": ds.test_unseen.size},
    }
    assert sum(summary["splits"].values()) == 200
    images = summary["images"]
    assert images["train"] + images["seen"] + images["unseen"] == summary["splits"]["trainval"]


def test_check_test_stage_json(synth_dir, capsys):
    summary = check_json(capsys, str(synth_dir), "--stage", "test")
    assert summary["stage"] == "test" and summary["classes"] == {"seen": 6, "unseen": 2}
    splits = summary["splits"]
    assert summary["images"] == {
        "train": splits["trainval"],
        "seen": splits["test_seen"],
        "unseen": splits["test_unseen"],
    }


def test_check_seed_changes_only_the_holdout(synth_dir, capsys):
    a = check_json(capsys, str(synth_dir), "--seed", "0")
    b = check_json(capsys, str(synth_dir), "--seed", "1")
    assert a["classes"] == b["classes"] and a["splits"] == b["splits"]
    assert a["images"]["unseen"] == b["images"]["unseen"]


def test_check_original_att(synth_dir, capsys):
    assert check_json(capsys, str(synth_dir), "--attributes", "original_att")["attributes"] == "original_att"


def test_synth_rejects_impossible_sizes(tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "synth", "--classes", "3", "--out", str(tmp_path / "x"))
    assert code == 2 and out == ""
    assert err.startswith("zsltune: error: synth needs classes >= 4") and len(err.splitlines()) == 1


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "check"])  # DIR missing
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_synth_like_real_awa2(real_root, tmp_path, capsys):
    out = tmp_path / "AWA2"
    code, _, err = run_cli(capsys, "data", "synth", "--like", str(real_root / "AWA2"), "--out", str(out), "--dim", "16")
    assert code == 0, err
    for f in ("att_splits.mat", *CLASS_LISTS):
        assert (out / f).read_bytes() == (real_root / "AWA2" / f).read_bytes(), f  # the real class side, copied
    summary = check_json(capsys, str(out), "--stage", "val")
    assert summary["images_total"] == 37_322 and summary["feature_dim"] == 16 and summary["attribute_dim"] == 85
    assert summary["splits"] == {"trainval": 23_527, "test_seen": 5_882, "test_unseen": 7_913}
    assert summary["classes"] == {"seen": 27, "unseen": 13}
    images = summary["images"]
    assert images["train"] + images["seen"] + images["unseen"] == 23_527
    test = check_json(capsys, str(out), "--stage", "test")
    assert test["classes"] == {"seen": 40, "unseen": 10}
    assert test["images"] == {"train": 23_527, "seen": 5_882, "unseen": 7_913}


def test_synth_images_both_kinds_and_check(synth_dir, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys, "data", "synth", "--images", "retrieval", "--classes", "10", "--per-class", "4", "--size", "32",
        "--out", str(tmp_path / "R"),
    )  # fmt: skip
    assert code == 0 and "wrote 40 retrieval images" in out
    s = check_json(capsys, str(tmp_path / "R"))
    assert s["train"] == {"images": 16, "classes": 4} and s["eval"] == {"images": 4, "classes": 1}
    code, out, _ = run_cli(
        capsys, "data", "synth", "--images", "parts", "--like", str(synth_dir), "--per-class", "3", "--size", "32",
        "--out", str(tmp_path / "P"),
    )  # fmt: skip
    assert code == 0 and "wrote 24 parts images" in out
    assert (tmp_path / "P" / "part_boxes.txt").is_file() and load_dataset(tmp_path / "P").image_files is not None
    code, _, err = run_cli(capsys, "data", "synth", "--images", "parts", "--out", str(tmp_path / "X"))
    assert code == 2 and "--images parts: pass --like" in err and not (tmp_path / "X").exists()
    with pytest.raises(SystemExit) as e:
        main(["data", "synth", "--images", "photos", "--out", str(tmp_path / "Y")])
    assert e.value.code == 2
