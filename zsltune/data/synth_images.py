"""Synthetic images that carry signal, written in the CUB-200-2011 layout so the real readers load them.

Two kinds (``zsltune data synth --images retrieval|parts``):

* ``retrieval`` (DeML): each class is a fixed object: one of :data:`SHAPES`, one of :data:`PALETTE`'s colours and
  one of :data:`TEXTURES`, planted on a cluttered background (a smooth gradient and rectangles in the same palette)
  at a random position, scale and rotation. Classes share colours (about ``classes / len(PALETTE)`` each) and the
  clutter uses the same colours, so a colour histogram alone retrieves poorly; shape and texture decide. The object's
  box goes to ``bounding_boxes.txt``.
* ``parts`` (SGMA): around a class side (attributes ``(C, P)``, e.g. a real xlsa17 ``att_splits.mat``), the
  attributes are cut into :data:`N_PARTS` groups; group g draws part g at its own place on the canvas (jittered per
  image): present when the group's mean attribute is above the median over classes, its colour from the group's
  strongest attribute, its shape from the group's second strongest. Unseen classes are recognisable from their
  attributes, and attention has parts to find: every part's box goes to ``part_boxes.txt`` (``image part x y w h``,
  absent parts omitted).

Layout (CUB-200-2011): ``images/<class folder>/<name>.jpg``, ``images.txt`` (``id path``), ``image_class_labels.txt``
(``id class``, 1-based), ``classes.txt`` (``class name``), ``bounding_boxes.txt`` (``id x y w h``). Seeded; about
4,000 64x64 images a second on one core (JPEG quality 95).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from zsltune.errors import DataError

SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "bar", "star", "crescent", "hourglass")
PALETTE = np.array([[220, 40, 40], [40, 170, 60], [40, 80, 220], [230, 200, 40]], dtype=np.float32)  # (4, 3) RGB
TEXTURES = ("solid", "stripes", "dots", "checker")
N_PARTS = 4
#: where part g sits on the unit canvas (centre x, centre y), jittered per image
PART_CENTRES = np.array([[0.3, 0.3], [0.7, 0.3], [0.3, 0.7], [0.7, 0.7]], dtype=np.float32)
KINDS = ("retrieval", "parts")


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in object coordinates (u, v): the unit square [-1, 1]² holds the object."""
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return r <= 1.0
    if shape == "square":
        return (au <= 0.8) & (av <= 0.8)
    if shape == "triangle":
        return (v >= -0.8) & (v <= 0.9 - 1.9 * au)
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "bar":
        return (au <= 1.0) & (av <= 0.35)
    if shape == "star":
        theta = np.arctan2(v, u)
        return r <= 0.55 + 0.45 * np.cos(5 * theta) ** 2
    if shape == "crescent":
        return (r <= 1.0) & (np.hypot(u - 0.45, v) >= 0.75)
    if shape == "hourglass":
        return (av <= 1.0) & (au <= 0.15 + 0.85 * av)
    raise ValueError(f"unknown shape {shape!r}")


def texture(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness factor in [0.45, 1] of texture ``name`` at (u, v)."""
    if name == "solid":
        return np.ones_like(u)
    if name == "stripes":
        return np.where(np.sin(u * 9.0) > 0, 1.0, 0.45)
    if name == "dots":
        return np.where(np.hypot((u * 3) % 1 - 0.5, (v * 3) % 1 - 0.5) < 0.28, 0.45, 1.0)
    if name == "checker":
        return np.where((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0, 1.0, 0.45)
    raise ValueError(f"unknown texture {name!r}")


def background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Clutter (size, size, 3) float: a grey gradient and 3-6 translucent rectangles in palette colours."""
    g0, g1 = rng.uniform(60, 190, 2)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size  # (S, S)
    img = np.repeat((g0 + (g1 - g0) * ramp)[..., None], 3, axis=2)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        colour = PALETTE[rng.integers(len(PALETTE))]
        sl = (slice(y0, min(size, y0 + h)), slice(x0, min(size, x0 + w)))
        img[sl] = 0.55 * img[sl] + 0.45 * colour
    return img


def draw(
    img: np.ndarray, shape: str, tex: str, colour: np.ndarray, cx: float, cy: float, radius: float, angle: float
) -> tuple[int, int, int, int] | None:
    """Draw one object in place; returns its box (x, y, w, h) in pixels, or None if it fell outside."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = (xx - cx) / radius, (yy - cy) / radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # object coordinates
    mask = shape_mask(shape, u, v)
    if not mask.any():
        return None
    shade = texture(tex, u, v)[..., None] * colour  # (S, S, 3)
    img[mask] = shade[mask]
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def class_designs(classes: int, seed: int) -> list[tuple[str, str, int]]:
    """(shape, texture, colour index) of each class: distinct combinations, colours shared across classes."""
    combos = [(s, t, c) for s in SHAPES for t in TEXTURES for c in range(len(PALETTE))]
    if classes > len(combos):
        raise DataError(f"--classes {classes}: at most {len(combos)} distinct synthetic objects; use fewer classes")
    order = np.random.default_rng(seed).permutation(len(combos))[:classes]
    return [combos[i] for i in order]


def part_designs(att: np.ndarray) -> np.ndarray:
    """(C, N_PARTS, 3) int: per class and part (present, colour index, shape index), from the attribute groups."""
    a = np.asarray(att, np.float64)
    groups = np.array_split(np.arange(a.shape[1]), N_PARTS)
    out = np.zeros((a.shape[0], N_PARTS, 3), np.int64)
    for g, idx in enumerate(groups):
        if len(idx) == 0:
            continue
        block = a[:, idx]  # (C, |g|)
        strength = block.mean(1)
        out[:, g, 0] = strength > np.median(strength)
        order = np.argsort(-block, axis=1)
        out[:, g, 1] = order[:, 0] % len(PALETTE)
        out[:, g, 2] = order[:, min(1, len(idx) - 1)] % len(SHAPES)
    return out


def _write_tables(out: Path, files: list[str], labels: np.ndarray, names: list[str], boxes: list) -> None:
    (out / "images.txt").write_text("".join(f"{i + 1} {f}\n" for i, f in enumerate(files)))
    (out / "image_class_labels.txt").write_text("".join(f"{i + 1} {int(c) + 1}\n" for i, c in enumerate(labels)))
    (out / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (out / "bounding_boxes.txt").write_text(
        "".join(f"{i + 1} {b[0]} {b[1]} {b[2]} {b[3]}\n" for i, b in enumerate(boxes))
    )


def write_xlsa17_side(out: Path, like: Path, labels: np.ndarray, files: list[str], *, seed: int) -> None:
    """Make ``out`` an xlsa17 folder over its images: ``like``'s class side and class lists, new locs (unseen
    classes -> test_unseen, 20% of each seen class -> test_seen, the rest trainval), and a ``res101.mat`` that
    holds ``image_files`` and ``labels`` (its ``features`` are one zero column: the pixels are the data)."""
    import scipy.io

    from zsltune.data.synth import CLASS_LISTS, _write
    from zsltune.data.xlsa17 import _loadmat, _read_list, _strings

    splits = _loadmat(like / "att_splits.mat")
    names = _strings(splits["allclasses_names"]) if "allclasses_names" in splits else None
    test = _read_list(like / "testclasses.txt")
    if names is None or not test:
        raise DataError(f"{like}: needs allclasses_names in att_splits.mat and testclasses.txt to split the classes")
    unseen = np.isin(np.arange(len(names)), [names.index(c) for c in test])
    rng = np.random.default_rng(seed + 2)
    is_unseen = unseen[labels]
    held = ~is_unseen & (rng.random(labels.shape[0]) < 0.2)
    locs = {
        "trainval_loc": np.flatnonzero(~is_unseen & ~held),
        "test_seen_loc": np.flatnonzero(held),
        "test_unseen_loc": np.flatnonzero(is_unseen),
    }
    keep = {k: splits[k] for k in ("att", "original_att", "allclasses_names") if k in splits}
    scipy.io.savemat(
        out / "att_splits.mat", {**keep, **{k: (v + 1)[:, None].astype(np.float64) for k, v in locs.items()}}
    )
    for f in CLASS_LISTS:
        if (like / f).is_file():
            shutil.copyfile(like / f, out / f)
    _write(out, np.zeros((labels.shape[0], 1), np.float32), labels, [f"images/{f}" for f in files])


def read_part_boxes(root: str | Path) -> dict[str, np.ndarray]:
    """The planted parts of a ``parts`` folder: image path (as in ``images.txt``) -> (n, 5) part index (0-based),
    x, y, w, h in pixels, one row per part present."""
    root = Path(root)
    files = dict(line.split(maxsplit=1) for line in (root / "images.txt").read_text().splitlines() if line.strip())
    rows: dict[str, list[list[float]]] = {f: [] for f in files.values()}
    for line in (root / "part_boxes.txt").read_text().splitlines():
        if line.strip():
            i, g, *box = line.split()
            rows[files[i]].append([int(g) - 1, *map(float, box)])
    return {f: np.asarray(r, np.float32).reshape(-1, 5) for f, r in rows.items()}


def synth_images(
    out: str | Path,
    *,
    kind: str = "retrieval",
    classes: int = 20,
    per_class: int = 50,
    size: int = 64,
    seed: int = 0,
    attributes: np.ndarray | None = None,
    class_names: list[str] | None = None,
    like: str | Path | None = None,
) -> Path:
    """Write ``classes x per_class`` synthetic images of ``kind`` to ``out`` (CUB layout); atomic.

    ``kind="parts"`` needs a class side: ``like`` (an xlsa17 folder: its attributes, and ``out`` becomes an xlsa17
    folder over the images, see :func:`write_xlsa17_side`) or ``attributes`` (C, P); ``classes`` is ignored.
    """
    from PIL import Image

    if kind not in KINDS:
        raise DataError(f"--images {kind}: unknown kind; valid: {', '.join(KINDS)}")
    if kind == "parts":
        if like is not None:
            from zsltune.data.xlsa17 import read_class_side

            attributes, class_names = read_class_side(like)
        if attributes is None:
            raise DataError("--images parts: needs a class side; pass --like DATASET_DIR (its att_splits.mat)")
        designs = part_designs(attributes)
        classes = designs.shape[0]
    else:
        objects = class_designs(classes, seed)
    if per_class < 1 or size < 16:
        raise DataError(f"synthetic images need per_class >= 1 and size >= 16, got {per_class} and {size}")
    names = class_names or [f"{i + 1:03d}.class_{i + 1:03d}" for i in range(classes)]
    out = Path(out).expanduser()
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    files, labels, boxes, parts = [], [], [], []
    for c in range(classes):
        (tmp / "images" / names[c]).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = background(rng, size, yy, xx)
            if kind == "retrieval":
                shape, tex, colour = objects[c]
                radius = rng.uniform(0.16, 0.3) * size
                cx, cy = rng.uniform(radius, size - radius, 2)
                tint = PALETTE[colour] * rng.uniform(0.6, 1.15)  # lighting: the same colour, not the same bins
                box = draw(img, shape, tex, tint, cx, cy, radius, rng.uniform(0, 2 * np.pi))
            else:
                for g in range(N_PARTS):
                    present, colour, shape = designs[c, g]
                    if not present:
                        continue
                    cx, cy = (PART_CENTRES[g] + rng.normal(0, 0.05, 2)) * size
                    pbox = draw(img, SHAPES[shape], "solid", PALETTE[colour], cx, cy, 0.13 * size, rng.uniform(0, 6.3))
                    if pbox is not None:
                        parts.append((len(files) + 1, g + 1, *pbox))
                box = (0, 0, size, size)
            rel = f"{names[c]}/{names[c].split('.')[-1]}_{k + 1:05d}.jpg"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp / "images" / rel, quality=95)
            files.append(rel)
            labels.append(c)
            boxes.append(box if box is not None else (0, 0, size, size))
    _write_tables(tmp, files, np.asarray(labels), names, boxes)
    if kind == "parts":
        (tmp / "part_boxes.txt").write_text("".join(" ".join(str(v) for v in p) + "\n" for p in parts))
        if like is not None:
            write_xlsa17_side(tmp, Path(like).expanduser(), np.asarray(labels), files, seed=seed)
    (tmp / "synthetic.txt").write_text(f"zsltune synthetic images: kind={kind} seed={seed} size={size}\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
