"""Images read from a path: the CUB-200-2011 layout, zero-shot splits over its classes, xlsa17 ``image_files``
mapped onto a local folder, and the per-node decoded cache every image trial reads.

**Layout** (CUB-200-2011; Cars196 and Stanford Online Products once converted to it, see :func:`read_cub`):
``images.txt`` (``id relative/path.jpg``), ``image_class_labels.txt`` (``id class``), ``classes.txt`` (``class
name``, optional), ``bounding_boxes.txt`` (``id x y w h``, optional), images under ``images/``.

**Retrieval split** (DeML's zero-shot protocol): the first half of the classes by id train (CUB: 1-100), the second
half test (101-200); a search's ``val`` stage trains on the first ``1 - val_share`` of the training classes and
evaluates on the rest (CUB: 1-80 / 81-100). A ``val`` bundle holds no test class and no test image.

**Cache**: each stage split (its training or evaluation images) is decoded once per node into
``$ZSLTUNE_CACHE/images/<key>.npy``, uint8 ``(N, R, R, 3)``, resized to R x R (:data:`CACHE_RESOLUTION` for real
images: the resize-256 / crop-224 convention; synthetic images keep their size). The key hashes the file list,
sizes and mtimes and R. The build runs under an ``fcntl`` lock on ``<key>.lock``, so trials that start together on a
node build it once; every trial then memory-maps the same pages (one copy in RAM per node). Nothing decoded goes
through Ray's object store: the bundle holds paths and indices.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from zsltune.data.cache import cache_dir
from zsltune.errors import DataError

CACHE_RESOLUTION = 256
_VERSION = "images-v1"
LAYOUT_FILES = ("images.txt", "image_class_labels.txt")


@dataclass(frozen=True)
class ImageSet:
    """The images of a CUB-layout folder: paths relative to ``root/images``, 0-based labels, optional boxes."""

    root: Path
    files: list[str]
    labels: np.ndarray  # (N,) int64, 0-based class index (class ids sorted)
    class_names: list[str]
    boxes: np.ndarray | None  # (N, 4) float32 x, y, w, h in the image's pixels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _table(path: Path, cols: int) -> list[list[str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=cols - 1)
        if len(parts) < cols:
            raise DataError(f"{path}:{n}: expected {cols} fields, got {line!r}")
        rows.append(parts)
    return rows


def read_cub(root: str | Path) -> ImageSet:
    """A CUB-200-2011 layout folder; a missing or malformed file is one line naming it."""
    root = Path(root).expanduser()
    for f in LAYOUT_FILES:
        if not (root / f).is_file():
            raise DataError(
                f"{root / f}: not found; an image dataset needs the CUB-200-2011 layout ({', '.join(LAYOUT_FILES)}, "
                f"images/), or generate one with `zsltune data synth --images retrieval --out DIR`"
            )
    paths = {int(i): p.strip() for i, p in _table(root / "images.txt", 2)}
    cls = {int(i): int(c) for i, c in _table(root / "image_class_labels.txt", 2)}
    missing = sorted(set(paths) - set(cls))
    if missing:
        raise DataError(f"{root / 'image_class_labels.txt'}: no class for image id {missing[0]} ({paths[missing[0]]})")
    ids = sorted(paths)
    class_ids = sorted(set(cls.values()))
    index = {c: k for k, c in enumerate(class_ids)}
    names = {int(i): n.strip() for i, n in _table(root / "classes.txt", 2)} if (root / "classes.txt").is_file() else {}
    boxes = None
    if (root / "bounding_boxes.txt").is_file():
        b = {int(r[0]): [float(v) for v in r[1].split()] for r in _table(root / "bounding_boxes.txt", 2)}
        boxes = np.array([b.get(i, [np.nan] * 4) for i in ids], np.float32)
    return ImageSet(
        root=root,
        files=[paths[i] for i in ids],
        labels=np.array([index[cls[i]] for i in ids], np.int64),
        class_names=[names.get(c, str(c)) for c in class_ids],
        boxes=boxes,
    )


def retrieval_classes(num_classes: int, stage: str, val_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(training classes, evaluation classes) of the zero-shot retrieval protocol, 0-based class indices."""
    half = num_classes // 2
    train = np.arange(half)
    if stage == "test":
        return train, np.arange(half, num_classes)
    if stage != "val":
        raise DataError(f"stage must be val or test, got {stage!r}")
    n_val = max(1, round(val_share * half))
    if half - n_val < 1:
        raise DataError(f"{num_classes} classes: too few for a validation split inside the training half")
    return train[: half - n_val], train[half - n_val :]


# ---- xlsa17 image_files onto a local folder ------------------------------------------------------------------
def map_image_files(
    image_files: Sequence[str], image_root: str | Path, *, strip_prefix: str | None = None
) -> list[Path]:
    """Local paths of xlsa17 ``image_files`` (the authors' absolute paths).

    ``strip_prefix``: remove it and read the rest under ``image_root``. Without it, match by the last path parts
    (class folder and file name, else the file name alone where unique). One line names the first unmatched file.
    """
    root = Path(image_root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; pass the folder holding the dataset's images")
    out: list[Path | None] = []
    if strip_prefix is not None:
        for f in image_files:
            g = f.replace("\\", "/")
            rel = g[len(strip_prefix) :].lstrip("/") if g.startswith(strip_prefix) else None
            out.append(root / rel if rel is not None and (root / rel).is_file() else None)
    else:
        by_two: dict[tuple[str, str], Path] = {}
        by_one: dict[str, list[Path]] = {}
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = Path(dirpath) / n
                by_two[(p.parent.name, n)] = p
                by_one.setdefault(n, []).append(p)
        for f in image_files:
            pp = PurePosixPath(f.replace("\\", "/"))
            hit = by_two.get((pp.parent.name, pp.name))
            if hit is None and len(by_one.get(pp.name, ())) == 1:
                hit = by_one[pp.name][0]
            out.append(hit)
    bad = [i for i, p in enumerate(out) if p is None]
    if bad:
        how = f"--image-prefix {strip_prefix}" if strip_prefix is not None else "matching by folder and file name"
        raise DataError(
            f"{root}: no image for {image_files[bad[0]]} ({how}); {len(bad)} of {len(image_files)} unmatched. Pass "
            f"--image-prefix with the part of the authors' paths to strip, e.g. the folder before the class folders"
        )
    return out  # type: ignore[return-value]


# ---- the decoded cache --------------------------------------------------------------------------------------------
def _key(paths: Sequence[Path], resolution: int, skip_bad: bool) -> str:
    h = hashlib.sha1(f"{_VERSION}:{resolution}:{skip_bad}".encode())
    for p in paths:
        st = p.stat() if p.is_file() else None
        h.update(f"{p}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def decode(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 (R, R, 3), RGB, resized (bilinear); raises on a corrupt or unreadable file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes the whole file: a truncated JPEG fails here, not later in a trial
        im = im.convert("RGB")
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


@dataclass(frozen=True)
class CachedImages:
    """A memory-mapped decoded split: ``pixels`` (n, R, R, 3) uint8; ``kept`` the rows of the requested list it
    holds (all of them, unless bad images were skipped); ``built`` whether this call decoded it."""

    pixels: np.ndarray
    kept: np.ndarray
    path: Path
    built: bool
    skipped: list[str]


def image_cache(paths: Sequence[Path], *, resolution: int, skip_bad: bool = False) -> CachedImages:
    """Decode ``paths`` once per node (under a file lock) and memory-map the result.

    A corrupt or missing image is a :class:`DataError` naming it (nothing is written); ``skip_bad`` leaves it out
    and records it in ``<key>.bad.json`` beside the cache.
    """
    paths = [Path(p) for p in paths]
    key = _key(paths, resolution, skip_bad)
    base = cache_dir() / "images"
    npy, meta = base / f"{key}.npy", base / f"{key}.json"
    built = False
    with _locked(base / f"{key}.lock"):
        if not (npy.is_file() and meta.is_file()):
            built = True
            kept, skipped, rows = [], [], []
            for i, p in enumerate(paths):
                try:
                    rows.append(decode(p, resolution))
                    kept.append(i)
                except (OSError, ValueError, SyntaxError) as e:
                    if not skip_bad:
                        raise DataError(
                            f"{p}: cannot decode this image ({type(e).__name__}: {str(e).splitlines()[0][:100]}); "
                            f"replace or remove it, or pass --skip-bad-images to leave it out"
                        ) from None
                    skipped.append(str(p))
            tmp = npy.with_name(f"{npy.name}.tmp-{os.getpid()}")
            arr = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(rows), resolution, resolution, 3)
            )
            for j, r in enumerate(rows):
                arr[j] = r
            arr.flush()
            del arr
            os.replace(tmp, npy)
            meta.write_text(json.dumps({"kept": kept, "skipped": skipped, "resolution": resolution}))
            if skipped:
                (base / f"{key}.bad.json").write_text(json.dumps(skipped, indent=1))
    info = json.loads(meta.read_text())
    return CachedImages(
        pixels=np.load(npy, mmap_mode="r"),
        kept=np.asarray(info["kept"], np.int64),
        path=npy,
        built=built,
        skipped=list(info["skipped"]),
    )
