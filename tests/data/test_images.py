"""Image data: synthetic images in the CUB layout read back by the real reader, split disjointness, the xlsa17
``image_files`` mapping, the per-node decoded cache (built once, also by two processes starting together), and
one line for a truncated JPEG."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from zsltune.data.image_source import CachedDataset, load_image_stage, make_loader
from zsltune.data.images import image_cache, map_image_files, read_cub, retrieval_classes
from zsltune.data.sources import StageRequest, get_source
from zsltune.data.synth_images import (
    CODE_DIMS,
    N_PARTS,
    OCCLUDED,
    part_code,
    part_code_fidelity,
    read_part_boxes,
    stage_classes,
    synth_images,
)
from zsltune.errors import DataError


@pytest.fixture(scope="module")
def retrieval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_images(tmp_path_factory.mktemp("img") / "RET", classes=20, per_class=6, size=32, seed=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZSLTUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_synthetic_retrieval_images_in_the_cub_layout(retrieval_dir: Path) -> None:
    s = read_cub(retrieval_dir)
    assert len(s.files) == 120 and s.num_classes == 20 and np.bincount(s.labels).tolist() == [6] * 20
    assert s.boxes is not None and s.boxes.shape == (120, 4) and (s.boxes[:, 2:] > 0).all()
    assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, :2] + s.boxes[:, 2:] <= 32).all()
    from PIL import Image

    with Image.open(retrieval_dir / "images" / s.files[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    again = synth_images(retrieval_dir.with_name("RET2"), classes=20, per_class=6, size=32, seed=1)
    assert (again / "bounding_boxes.txt").read_text() == (retrieval_dir / "bounding_boxes.txt").read_text()  # seeded


def low_rank_side(classes: int, attributes: int, rank: int, seed: int) -> np.ndarray:
    """A class side shaped like the real ones: non-negative, few latent factors, rows L2-normalised."""
    rng = np.random.default_rng(seed)
    raw = rng.random((classes, rank)) @ rng.random((rank, attributes)) ** 3 + 0.05 * rng.random((classes, attributes))
    return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def test_part_code_carries_a_low_rank_class_side() -> None:
    """The planted code is a near-linear function of the attributes, a linear map recovers them from it (LOCO R²)
    and a ridge between them tells unseen classes apart; a tiny class side leaves the dims past its rank at 0.5."""
    att = low_rank_side(40, 48, 6, seed=0)
    code = part_code(att)
    assert code.shape == (40, N_PARTS * CODE_DIMS) and code.min() > 0 and code.max() < 1
    x = np.c_[att, np.ones(40)]
    fit = x @ np.linalg.lstsq(x, code, rcond=None)[0]
    assert 1 - ((fit - code) ** 2).sum() / ((code - code.mean(0)) ** 2).sum() > 0.9  # near-linear in the attributes
    seen, unseen = np.arange(28), np.arange(28, 40)
    f = part_code_fidelity(att, seen, unseen)
    assert f["loco_r2"] >= 0.5 and f["zsl_a2c"] >= 0.5 and f["zsl_c2a"] >= 0.5, f
    tiny = part_code(np.random.default_rng(1).random((6, 16)))
    assert np.isfinite(tiny).all() and (tiny.std(0) > 1e-9).sum() <= N_PARTS * 4  # 4 attributes a group: rank 4
    assert np.array_equal(tiny, part_code(np.random.default_rng(1).random((6, 16))))  # deterministic


def test_parts_images_draw_the_part_code(tmp_path: Path) -> None:
    """Each planted box holds its part, whose core (the box centre) has the class's core colour up to lighting and
    JPEG; at most N_PARTS boxes an image, hidden parts omitted; seeded."""
    att = low_rank_side(8, 24, 4, seed=2)
    code = part_code(att).reshape(-1, N_PARTS, CODE_DIMS)
    out = synth_images(tmp_path / "P", kind="parts", per_class=6, size=32, attributes=att, seed=3)
    cub = read_cub(out)
    boxes = read_part_boxes(out)
    assert cub.num_classes == 8 and len(cub.files) == 48
    from PIL import Image

    seen, want = [], []
    for f, c in zip(cub.files, cub.labels, strict=True):
        b = boxes[f]
        assert len(b) <= N_PARTS and len(set(b[:, 0])) == len(b) and (b[:, 3:] >= 2).all()
        pixels = np.asarray(Image.open(out / "images" / f), np.float64)
        for g, x, y, w, h in b:
            seen.append(pixels[int(y + h / 2), int(x + w / 2)])
            want.append(25 + 200 * code[c, int(g), 4:7])
    seen_, want_ = np.asarray(seen), np.asarray(want)
    assert np.corrcoef(seen_.ravel(), want_.ravel())[0, 1] > 0.9
    assert np.median(np.abs(seen_ - want_)) < 20
    shown = sum(len(b) for b in boxes.values()) / (48 * N_PARTS)
    assert 1 - 2.5 * OCCLUDED < shown < 1  # some parts hidden, most drawn
    again = synth_images(tmp_path / "Q", kind="parts", per_class=6, size=32, attributes=att, seed=3)
    assert (again / "part_boxes.txt").read_text() == (out / "part_boxes.txt").read_text()


@pytest.mark.parametrize("name", ["AWA2", "CUB"])
def test_part_code_carries_the_real_class_side(real_root: Path, name: str) -> None:
    """On the real class side: LOCO R² >= 0.5 of the attributes from the planted code, and a ridge between them
    reaches ZSL top-1 >= 0.5 on the val stage's unseen classes (class-level)."""
    from zsltune.data.xlsa17 import read_class_side

    att, _ = read_class_side(real_root / name)
    seen, unseen = stage_classes(real_root / name, "val")
    f = part_code_fidelity(att, seen, unseen)
    assert f["loco_r2"] >= 0.5 and f["zsl_a2c"] >= 0.5 and f["zsl_c2a"] >= 0.5, f


def test_retrieval_splits_are_class_disjoint(retrieval_dir: Path) -> None:
    tr_v, ev_v = retrieval_classes(200, "val")
    tr_t, ev_t = retrieval_classes(200, "test")
    assert (tr_v.min(), tr_v.max(), ev_v.min(), ev_v.max()) == (0, 79, 80, 99)  # CUB classes 1-80 / 81-100
    assert (tr_t.max(), ev_t.min(), ev_t.max()) == (99, 100, 199)  # 1-100 / 101-200
    assert not set(tr_v) & set(ev_t) and not set(ev_v) & set(ev_t)  # the search never sees a test class
    val = load_image_stage(StageRequest(dataset=str(retrieval_dir), stage="val"))
    test = load_image_stage(StageRequest(dataset=str(retrieval_dir), stage="test"))
    assert not set(val.train_files + val.eval_files) & set(test.eval_files)  # nor a test image
    assert not set(val.train_classes) & set(val.eval_classes)
    assert (len(val.train_classes), len(val.eval_classes), len(test.eval_classes)) == (8, 2, 10)
    c, _ = val.cached("eval")  # the val stage's caches hold val images only
    files = [Path(f) for f in test.eval_files]
    assert c.pixels.shape[0] == len(val.eval_files)
    assert image_cache(files, resolution=val.resolution).path != c.path


def test_image_files_map_by_prefix_or_by_last_parts(tmp_path: Path) -> None:
    root = tmp_path / "CUB" / "images"
    for rel in ("001.Albatross/a_1.jpg", "002.Auklet/b_2.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    authors = [
        "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/001.Albatross/a_1.jpg",
        "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/002.Auklet/b_2.jpg",
    ]
    prefix = "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/"
    assert map_image_files(authors, root, strip_prefix=prefix) == [
        root / "001.Albatross/a_1.jpg",
        root / "002.Auklet/b_2.jpg",
    ]
    assert map_image_files(authors, root) == [root / "001.Albatross/a_1.jpg", root / "002.Auklet/b_2.jpg"]
    with pytest.raises(DataError) as e:
        map_image_files([*authors, "/x/images/003.Crow/c_3.jpg"], root)
    msg = str(e.value)
    assert "\n" not in msg and "/x/images/003.Crow/c_3.jpg" in msg and "1 of 3 unmatched" in msg


def test_cache_is_built_once_and_read_by_another_process(retrieval_dir: Path, _cache: Path) -> None:
    st = load_image_stage(StageRequest(dataset=str(retrieval_dir), stage="val"))
    first, y = st.cached("train")
    assert first.built and first.pixels.dtype == np.uint8 and first.pixels.shape == (len(y), 32, 32, 3)
    from PIL import Image

    with Image.open(st.train_files[3]) as im:
        assert np.array_equal(first.pixels[3], np.asarray(im.convert("RGB")))
    out = json.loads(_spawn(retrieval_dir, _cache).communicate(timeout=120)[0])
    assert out == {"built": False, "path": str(first.path), "n": len(y)}


def _spawn(root: Path, cache: Path) -> subprocess.Popen:
    """A fresh interpreter that opens the val stage's training cache, printing whether it built it."""
    code = textwrap.dedent(
        f"""
        import json, os
        os.environ["ZSLTUNE_CACHE"] = {str(cache)!r}
        from zsltune.data.image_source import load_image_stage
        from zsltune.data.sources import StageRequest
        c, y = load_image_stage(StageRequest(dataset={str(root)!r}, stage="val")).cached("train")
        print(json.dumps({{"built": c.built, "path": str(c.path), "n": len(y)}}))
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_cache_is_built_once_by_processes_starting_together(retrieval_dir: Path, _cache: Path) -> None:
    procs = [_spawn(retrieval_dir, _cache) for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(o["built"] for o in outs) == 1 and len({o["path"] for o in outs}) == 1


def test_truncated_jpeg_is_one_line_or_skipped_and_recorded(retrieval_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = shutil.copytree(retrieval_dir, tmp_path / "BAD")
    victim = d / "images" / read_cub(d).files[2]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    st = load_image_stage(StageRequest(dataset=str(d), stage="val"))
    with pytest.raises(DataError) as e:
        st.cached("train")
    assert "\n" not in str(e.value) and str(victim) in str(e.value) and "--skip-bad-images" in str(e.value)
    import dataclasses

    c, y = dataclasses.replace(st, skip_bad=True).cached("train")
    assert c.skipped == [str(victim)] and len(y) == len(st.train_files) - 1 and 2 not in set(c.kept)


def test_loader_crops_flips_and_normalises(retrieval_dir: Path) -> None:
    st = get_source("images").load(StageRequest(dataset=str(retrieval_dir), stage="val"))
    c, y = st.cached("train")
    ds = CachedDataset(c.pixels, y, crop=28, train=True, seed=0)
    xb, yb = next(iter(make_loader(ds, batch_size=8, workers=0, shuffle=True, pin=False)))
    assert xb.shape == (8, 3, 28, 28) and xb.min() >= -1 and xb.max() <= 1 and yb.shape == (8,)
    ev = CachedDataset(c.pixels, y, crop=28, train=False)
    x0, _ = ev[0]
    ref = c.pixels[0, 2:30, 2:30].transpose(2, 0, 1) / 127.5 - 1
    assert np.abs(x0.numpy() - ref).max() < 1e-6, (np.abs(x0.numpy() - ref).max(), c.pixels.shape)  # the centre crop


def test_data_check_summarises_an_image_folder(retrieval_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zsltune.cli", "data", "check", str(retrieval_dir)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["train"] == {"images": 48, "classes": 8} and s["eval"] == {"images": 12, "classes": 2}


def test_xlsa17_image_stages_never_show_a_test_image_to_the_search(tmp_path: Path) -> None:
    """Parts images around a class side become an xlsa17 folder over images; its val stage holds no test class and
    no test image (the same protocol code as the features)."""
    from zsltune.data import synth_fresh
    from zsltune.data.image_source import load_xlsa17_image_stage

    side = synth_fresh(tmp_path / "SIDE", classes=12, attributes=16, images=48, feature_dim=8, seed=2)
    out = synth_images(tmp_path / "PARTS", kind="parts", per_class=8, size=32, like=side, seed=2)
    val = load_xlsa17_image_stage(StageRequest(dataset=str(out), stage="val"))
    test = load_xlsa17_image_stage(StageRequest(dataset=str(out), stage="test"))
    test_only = set(test.seen_files) | set(test.unseen_files)
    assert not test_only & set(val.train_files + val.seen_files + val.unseen_files)
    unseen_names = set(test.class_names[test.n_seen :])
    assert not unseen_names & set(val.class_names)  # no test class in the val stage
    assert set(val.y_unseen) <= set(range(val.n_seen, val.num_classes)) and val.attributes.shape[0] == val.num_classes
    c, y = val.cached("unseen")
    assert c.pixels.shape[0] == len(val.unseen_files) == len(y)
    assert get_source("xlsa17-images").info(val).n_seen == val.n_seen


def test_a_class_side_alone_gets_synthetic_part_images_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--dataset X`` where X has only att_splits.mat (the GBU download without features): part images around its
    class side are generated into the cache once (said on stderr) and the stage keeps X's name; ``demo`` works
    without a data root; a name that is no xlsa17 folder is one line naming the fix."""
    from zsltune.data import synth_fresh
    from zsltune.data.image_source import DEMO_PARTS, resolve_parts_images

    side = synth_fresh(tmp_path / "root" / "ZOO", classes=10, attributes=12, images=20, feature_dim=4, seed=1)
    (side / "res101.mat").unlink()  # the class side only
    req = StageRequest(dataset="ZOO", stage="val", data_root=str(tmp_path / "root"))
    st = get_source("xlsa17-images").load(req)
    assert "synthetic part images around its real class side" in capsys.readouterr().err
    assert st.dataset == "ZOO" and st.synthetic and st.num_classes == st.attributes.shape[0]
    first = resolve_parts_images("ZOO", str(tmp_path / "root"), 0)
    assert resolve_parts_images("ZOO", str(tmp_path / "root"), 0) == first  # generated once
    assert (first / "part_boxes.txt").is_file()
    demo = get_source("xlsa17-images").load(StageRequest(dataset="demo", stage="val", data_root=str(tmp_path / "none")))
    assert demo.dataset == DEMO_PARTS and demo.n_seen > 0
    with pytest.raises(DataError, match=r"--dataset NOPE: no xlsa17 folder .*pass a dataset under --data-root"):
        resolve_parts_images("NOPE", str(tmp_path / "root"), 0)
