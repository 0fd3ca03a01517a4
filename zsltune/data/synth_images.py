"""Synthetic images that carry signal, written in the CUB-200-2011 layout so the real readers load them.

Two kinds (``zsltune data synth --images retrieval|parts``):

* ``retrieval`` (DeML): each class is a fixed object: one of :data:`SHAPES`, one of :data:`PALETTE`'s colours and
  one of :data:`TEXTURES`, planted on a cluttered background (a smooth gradient and rectangles in the same palette)
  at a random position, scale and rotation. Classes share colours (about ``classes / len(PALETTE)`` each) and the
  clutter uses the same colours, so a colour histogram alone retrieves poorly; shape and texture decide. The object's
  box goes to ``bounding_boxes.txt``.
* ``parts`` (SGMA): around a class side (attributes ``(C, P)``, e.g. a real xlsa17 ``att_splits.mat``), the
  attributes are cut into :data:`N_PARTS` groups and group g draws part g at its own place on the canvas (jittered
  per image). Each part is a two-tone ellipse whose :data:`PART_PROPERTIES` (body colour, size, core colour,
  elongation) are the group's principal components over classes, squashed to [0, 1] (:func:`part_code`): the
  planted code is a near-linear function of the attributes, so a linear map recovers them on the subspace it spans
  (:func:`part_code_fidelity` measures it: leave-one-class-out R², ridge ZSL top-1). Per image: position, tilt, size
  and lighting jitter, and each part hidden with probability :data:`OCCLUDED`. Every drawn part's box goes to
  ``part_boxes.txt`` (``image part x y w h``, hidden parts omitted).

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
#: where part g sits on the unit canvas (centre x, centre y), jittered per image; far enough apart that no cell of a
#: small CNN's last feature map sees all four (else SGMA's attention settles between them)
PART_CENTRES = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]], dtype=np.float32)
PART_RADIUS = 0.12  # a part's base radius / the image side
#: what a part's code dims draw, in the order of its group's principal components: the most visible carry the most
PART_PROPERTIES = ("body_r", "body_g", "body_b", "size", "core_r", "core_g", "core_b", "elongation")
CODE_DIMS = len(PART_PROPERTIES)
SLOPE = 1.2  # sigmoid slope of the squash of a unit-variance component: near-linear, yet it uses the range
OCCLUDED = 0.15  # chance a part is hidden in one image (intra-class variation; the class code is unchanged)
#: bump when part images change: it keys the generated part images in the cache (image_source._synth_parts)
PARTS_VERSION = 2
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


def draw_part(
    img: np.ndarray, v: np.ndarray, cx: float, cy: float, radius: float, angle: float, light: float
) -> tuple[int, int, int, int] | None:
    """Draw one part from its code ``v`` (:data:`PART_PROPERTIES`) in place: an ellipse in the body colour around a
    concentric core in the core colour; returns its box (x, y, w, h) in pixels, or None if it fell outside."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = radius * (0.8 + 0.4 * v[3])  # size: 0.8x-1.2x the base radius
    stretch = np.sqrt(1.0 + 0.9 * v[7])  # elongation: axes ratio 1-1.9 at the same area, so size stays size
    c, s = np.cos(angle), np.sin(angle)
    u = (c * (xx - cx) + s * (yy - cy)) / (r * stretch)
    w = (-s * (xx - cx) + c * (yy - cy)) * stretch / r
    rho = np.hypot(u, w)
    body = rho <= 1.0
    if not body.any():
        return None
    img[body] = light * (25 + 200 * v[0:3])  # channels in [25, 225], x lighting: within [0, 255]
    img[rho <= 0.55] = light * (25 + 200 * v[4:7])
    ys, xs = np.nonzero(body)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def class_designs(classes: int, seed: int) -> list[tuple[str, str, int]]:
    """(shape, texture, colour index) of each class: distinct combinations, colours shared across classes."""
    combos = [(s, t, c) for s in SHAPES for t in TEXTURES for c in range(len(PALETTE))]
    if classes > len(combos):
        raise DataError(f"--classes {classes}: at most {len(combos)} distinct synthetic objects; use fewer classes")
    order = np.random.default_rng(seed).permutation(len(combos))[:classes]
    return [combos[i] for i in order]


def part_code(att: np.ndarray) -> np.ndarray:
    """(C, N_PARTS * CODE_DIMS) in [0, 1]: what each class's parts draw (:data:`PART_PROPERTIES` per part).

    Part g's dims are the principal components of attribute group g over classes (centred, unit variance, sign fixed
    by the largest loading), squashed by a sigmoid; components past the group's rank stay at 0.5."""
    a = np.asarray(att, np.float64)
    a = a - a.mean(0)
    out = np.full((a.shape[0], N_PARTS, CODE_DIMS), 0.5)
    for g, idx in enumerate(np.array_split(np.arange(a.shape[1]), N_PARTS)):
        if len(idx) == 0:
            continue
        _, sv, vt = np.linalg.svd(a[:, idx], full_matrices=False)
        keep = sv[:CODE_DIMS] > 1e-6 * max(sv[0], 1e-12)  # numerical noise past the rank is no property
        vt = vt[: len(keep)][keep]
        vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]  # deterministic sign
        z = a[:, idx] @ vt.T
        out[:, g, : len(vt)] = 1 / (1 + np.exp(-SLOPE * z / z.std(0)))
    return out.reshape(a.shape[0], -1)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x mean, weights, y mean) of a ridge from ``x`` to ``y``; ``lam`` is relative to the mean diagonal of x's
    centred Gram matrix, so neither the codes' nor the attributes' scale matters."""
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    gram = xc.T @ xc
    penalty = lam * max(np.trace(gram) / len(gram), 1e-12)
    return xm, np.linalg.solve(gram + penalty * np.eye(len(gram)), xc.T @ (y - ym)), ym


def part_code_fidelity(att: np.ndarray, seen: np.ndarray, unseen: np.ndarray, lam: float = 0.1) -> dict[str, float]:
    """How well the planted code (:func:`part_code`) carries the class attributes ``att`` (C, P), class-level:

    ``loco_r2``: leave-one-class-out R² of the attributes from the code (a ridge fitted on the other classes, pooled
    over attributes, against the other classes' mean); ``zsl_a2c``: ridge attributes -> code fitted on the ``seen``
    classes, each ``unseen`` class's code classified to the nearest predicted code among the unseen (top-1);
    ``zsl_c2a``: ridge code -> attributes, each unseen code's prediction to the nearest unseen attribute vector."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    with threadpool_limits(1):  # small matrices: BLAS threads only contend on a shared machine (0.05 s vs 3 s)
        return _fidelity(np.asarray(att, np.float64), np.asarray(seen), np.asarray(unseen), lam)


def _fidelity(a: np.ndarray, seen: np.ndarray, unseen: np.ndarray, lam: float) -> dict[str, float]:
    code = part_code(a)
    n = len(a)
    x = np.c_[code, np.ones(n)]  # the bias unpenalised: the same fit as centring on the training classes
    xc = code - code.mean(0)
    penalty = np.diag([lam * max(float((xc**2).sum()) / code.shape[1], 1e-12)] * code.shape[1] + [0.0])
    inv = np.linalg.inv(x.T @ x + penalty)
    hat = np.einsum("ij,jk,ik->i", x, inv, x)  # leave-one-out residual = residual / (1 - leverage), exactly
    loo = (a - x @ (inv @ (x.T @ a))) / (1 - hat)[:, None]
    err, tot = float((loo**2).sum()), float((((a - a.mean(0)) * n / (n - 1)) ** 2).sum())

    def top1(query: np.ndarray, candidates: np.ndarray) -> float:
        d = ((query[:, None] - candidates[None]) ** 2).sum(-1)
        return float((d.argmin(1) == np.arange(len(query))).mean())

    xm, w, ym = _ridge(a[seen], code[seen], lam)
    a2c = top1(code[unseen], (a[unseen] - xm) @ w + ym)
    xm, w, ym = _ridge(code[seen], a[seen], lam)
    c2a = top1((code[unseen] - xm) @ w + ym, a[unseen])
    dims = int((code.std(0) > 1e-9).sum())
    return {"loco_r2": 1 - err / tot, "zsl_a2c": a2c, "zsl_c2a": c2a, "dims": dims, "classes": len(a)}


def stage_classes(like: str | Path, stage: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(seen, unseen) class indices of an xlsa17 class side's ``val`` stage (trainclasses1 / valclasses1) or
    ``test`` stage (trainvalclasses / testclasses), from its class lists."""
    from zsltune.data.xlsa17 import _class_ids, _loadmat, _read_list, _strings

    like = Path(like).expanduser()
    mat = _loadmat(like / "att_splits.mat")
    names = _strings(mat["allclasses_names"]) if "allclasses_names" in mat else _read_list(like / "allclasses.txt")
    if not names:
        raise DataError(f"{like}: no allclasses_names in att_splits.mat nor allclasses.txt; the lists need the names")
    index = {n: i for i, n in enumerate(names)}
    ids = []
    for f in ("trainclasses1.txt", "valclasses1.txt") if stage == "val" else ("trainvalclasses.txt", "testclasses.txt"):
        listed = _read_list(like / f)
        if not listed:
            raise DataError(f"{like / f}: missing or empty; the {stage} stage needs it")
        ids.append(_class_ids(listed, index, like / f))
    return ids[0], ids[1]


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
        code = part_code(attributes).reshape(-1, N_PARTS, CODE_DIMS)
        classes = code.shape[0]
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
                light = rng.uniform(0.88, 1.12)  # lighting: the same colours, not the same pixel values
                for g in range(N_PARTS):
                    cx, cy = (PART_CENTRES[g] + rng.normal(0, 0.04, 2)) * size
                    radius = PART_RADIUS * size * rng.uniform(0.92, 1.08)
                    angle = rng.normal(0, 0.25)  # about upright: elongation reads as width vs height
                    if rng.random() < OCCLUDED:  # hidden in this image
                        continue
                    pbox = draw_part(img, code[c, g], cx, cy, radius, angle, light)
                    if pbox is not None:
                        parts.append((len(files) + 1, g + 1, *pbox))
                box = (0, 0, size, size)
            rel = f"{names[c]}/{names[c].split('.')[-1]}_{k + 1:05d}.jpg"
            # parts keep full-resolution chroma: a 2-pixel core's colour would smear under 4:2:0
            sub = {"subsampling": 0} if kind == "parts" else {}
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp / "images" / rel, quality=95, **sub)
            files.append(rel)
            labels.append(c)
            boxes.append(box if box is not None else (0, 0, size, size))
    _write_tables(tmp, files, np.asarray(labels), names, boxes)
    if kind == "parts":
        (tmp / "part_boxes.txt").write_text("".join(" ".join(str(v) for v in p) + "\n" for p in parts))
        if like is not None:
            write_xlsa17_side(tmp, Path(like).expanduser(), np.asarray(labels), files, seed=seed)
    version = f" parts_version={PARTS_VERSION}" if kind == "parts" else ""
    (tmp / "synthetic.txt").write_text(f"zsltune synthetic images: kind={kind} seed={seed} size={size}{version}\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
