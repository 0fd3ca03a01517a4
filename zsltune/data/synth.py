"""Synthetic image features in the xlsa17 format, learnable from class attributes.

Real ResNet-101 features cannot be downloaded here, so zsltune writes ``res101.mat`` itself, either around a real
``att_splits.mat`` (same N, locs, classes and seen/unseen split) or for a fully synthetic class side. Each image's
feature is a fixed random two-layer map of a hidden code: its class's attributes, a class part the attributes do not
explain, a share of a similar class's code, and per-image variation::

    x = relu(tanh((1-m)·c_y + m·c_y' + j·ε W1 + k·η) W2 + n·ε')     c_y = z_y W1 + u_y,  m ~ U(0, mix)

``z_y``: class y's attributes, standardised per attribute. ``u_y``: what a class has beyond its attributes; for an
unfamiliar class (the test classes, which GZSL benchmarks keep outside the backbone's training classes) it is taken
from its nearest familiar classes by attributes, so a linear map fitted on seen classes scores its images as those
(the seen bias) while a model of ``u`` as a function of the attributes can still recover it. ``y'``: a familiar
class drawn by attribute similarity (look-alikes, context), which makes seen classes confusable as real ones are.
``j`` (attribute jitter), ``k`` (hidden variation), ``n`` (feature noise) and the scale of ``u`` grow with
``difficulty``. The knobs per dataset are :data:`TWINS`, fitted on AWA1 and CUB so that ESZSL and a seen-class
softmax land near their published numbers (``python -m benchmarks --only calibration``; benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsltune.data.cache import cache_dir  # re-exported by zsltune.data
from zsltune.data.xlsa17 import SYNTHETIC_KEY, _loadmat, _read_list, _strings, derive_val_classes
from zsltune.errors import DataError

CLASS_LISTS = (
    "trainvalclasses.txt",
    "testclasses.txt",
    "allclasses.txt",
    *(f"{k}classes{i}.txt" for k in ("train", "val") for i in (1, 2, 3)),
)


@dataclass(frozen=True)
class TwinParams:
    """The generator's knobs for one dataset (one row of :data:`TWINS`); ``difficulty`` scales the first four."""

    jitter: float = 1.0  # per-image attribute jitter, in units of each attribute's between-class sd
    spread: float = 4.0  # per-image variation of the hidden layer (pose, background: not in the attributes)
    noise: float = 1.0  # per-feature noise after the second layer
    own: float = 1.0  # class part the attributes do not explain (u_y)
    familiar: float = 1.0  # share of an unfamiliar class's own hidden code; the rest is its nearest familiar class's
    familiar_val: float | None = None  # the same for the val classes of split 1 (None: as ``familiar``)
    tau: float = 0.005  # temperature of "nearest" (mean squared attribute distance; small: the single nearest)
    mix: float = 0.0  # per image, up to this share of its hidden code comes from a similar class (confusable images)
    mix_tau: float = 0.5  # temperature of "similar" for ``mix`` (mean squared attribute distance)


#: per-dataset generator parameters, fitted on AWA1 and CUB against ESZSL and the seen-class softmax (measurements in
#: benchmarks/README.md, "Calibrated twins"); the other datasets take the row of their kind untouched
TWINS: dict[str, TwinParams] = {
    "legacy": TwinParams(),  # generator v5: no seen bias
    "AWA1": TwinParams(jitter=0.5, spread=2.0, own=4.0, familiar=0.0, familiar_val=1.0, tau=0.05, mix=0.58),
    "CUB": TwinParams(jitter=0.1, spread=0.25, own=0.85, familiar=0.0, familiar_val=1.0, tau=0.05, mix=0.7),
    # the demo's val stage is what its sweeps see, so its val classes are as unfamiliar as its test classes
    "demo": TwinParams(jitter=1.0, spread=2.0, own=1.0, familiar=0.0, familiar_val=0.0, tau=0.05, mix=0.5),
}
#: which fitted row a dataset without its own takes: coarse-grained (animals, objects) or fine-grained (birds, scenes)
TWIN_KIND: dict[str, str] = {"AWA2": "AWA1", "APY": "AWA1", "SUN": "CUB", "FLO": "CUB"}
GENERATOR_VERSION = 7


def twin_params(name: str) -> TwinParams:
    """The :data:`TWINS` row for a dataset name (its own, else its kind's, else AWA1's)."""
    return TWINS.get(name) or TWINS[TWIN_KIND.get(name, "AWA1")]


def synth_features(
    attributes: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    feature_dim: int = 2048,
    hidden: int = 512,
    difficulty: float = 1.0,
    params: TwinParams | None = None,
    unfamiliar: np.ndarray | None = None,
    validation: np.ndarray | None = None,
    chunk: int = 8192,
    return_image_attributes: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Features (N, D) float32 for ``labels`` (N,) from class ``attributes`` (C, P).

    ``unfamiliar``: class ids the (imagined) backbone was not trained on; each keeps ``params.familiar`` of its own
    class part ``u`` and takes the rest from its nearest familiar classes (by attributes), so its images look partly
    like a familiar class's. ``validation``: the val classes, unfamiliar with ``params.familiar_val``.
    ``return_image_attributes=True`` also returns the per-image attribute vectors ``a_img`` (N, P) float32 the
    features were made from (synthetic captions are written from them); the random stream is the same either way.
    """
    if difficulty < 0:
        raise DataError(f"difficulty must be >= 0, got {difficulty}")
    tp = params or TWINS["legacy"]
    fv = tp.familiar if tp.familiar_val is None else tp.familiar_val
    if not all(0.0 <= v <= 1.0 for v in (tp.familiar, fv, tp.mix)) or tp.tau <= 0 or tp.mix_tau <= 0:
        raise DataError(f"twin parameters need 0 <= familiar, mix <= 1 and tau, mix_tau > 0, got {tp}")
    rng = np.random.default_rng(seed)
    a = np.asarray(attributes, dtype=np.float64)
    sd = a.std(0)
    z = ((a - a.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)  # (C, P)
    p = z.shape[1]
    w1 = (rng.standard_normal((p, hidden)) / np.sqrt(p)).astype(np.float32)  # (P, H)
    w2 = (rng.standard_normal((hidden, feature_dim)) * (1.5 / np.sqrt(hidden))).astype(np.float32)  # (H, D)
    jitter, spread, noise, own = (np.float32(f * difficulty) for f in (tp.jitter, tp.spread, tp.noise, tp.own))
    u = own * rng.standard_normal((z.shape[0], hidden)).astype(np.float32)  # (C, H) class part beyond attributes
    held = [c for c in (unfamiliar, validation) if c is not None]
    fam = np.setdiff1d(np.arange(z.shape[0]), np.concatenate(held)) if held else np.arange(z.shape[0])
    for classes, share in ((unfamiliar, tp.familiar), (validation, fv)):
        if classes is not None and classes.size and share < 1.0:
            u = _blend_unfamiliar(z, u, classes, fam, share=share, tau=tp.tau)
    code = z @ w1 + u  # (C, H) each class's hidden code
    similar = _similar_cdf(z, tp.mix_tau, exclude=unfamiliar) if tp.mix > 0 else None  # (C, C)
    out = np.empty((labels.shape[0], feature_dim), dtype=np.float32)
    img_att = np.empty((labels.shape[0], p), dtype=np.float32) if return_image_attributes else None
    for s in range(0, labels.shape[0], chunk):
        y = labels[s : s + chunk]
        eps = jitter * rng.standard_normal((y.shape[0], p), dtype=np.float32)  # (n, P)
        if similar is None:
            a_img, h = z[y] + eps, code[y] + eps @ w1
        else:  # an image shows m of a similar class y2 (pose, context, look-alikes): what keeps real classes apart
            y2 = (similar[y] < rng.random((y.shape[0], 1), dtype=np.float32)).sum(1)  # (n,)
            m = (np.float32(tp.mix) * rng.random(y.shape[0], dtype=np.float32))[:, None]  # (n, 1)
            a_img = (1 - m) * z[y] + m * z[y2] + eps
            h = (1 - m) * code[y] + m * code[y2] + eps @ w1
        if img_att is not None:
            img_att[s : s + chunk] = a_img
        h += spread * rng.standard_normal((y.shape[0], hidden), dtype=np.float32)  # (n, H)
        x = np.tanh(h) @ w2  # (n, D)
        x += np.float32(noise) * rng.standard_normal(x.shape, dtype=np.float32)
        np.maximum(x, 0.0, out=out[s : s + chunk])
    return (out, img_att) if img_att is not None else out


def _softmin(zq: np.ndarray, zc: np.ndarray, tau: float, *, ban: np.ndarray | None = None) -> np.ndarray:
    """(Q, K) weights of each query class over candidate classes, by attribute distance (softmax of -mean squared
    distance / tau); ``ban`` (Q, K) bool marks pairs that get no weight."""
    d2 = ((zq[:, None, :] - zc[None, :, :]) ** 2).mean(-1)  # (Q, K)
    if ban is not None:
        d2[ban] = np.inf
    w = np.exp(-(d2 - d2.min(1, keepdims=True)) / tau)
    return w / w.sum(1, keepdims=True)


def _similar_cdf(z: np.ndarray, tau: float, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """(C, C) cumulative probabilities of drawing another class, by attribute similarity, never itself nor an
    ``exclude`` class (look-alikes come from the classes the backbone was trained on)."""
    ban = np.eye(z.shape[0], dtype=bool)
    if exclude is not None and len(exclude):
        ban[:, exclude] = True
    cdf = np.cumsum(_softmin(z, z, tau, ban=ban), 1).astype(np.float32)
    cdf[:, -1] = 1.0
    return cdf


def _blend_unfamiliar(
    z: np.ndarray, u: np.ndarray, unfamiliar: np.ndarray, fam: np.ndarray, *, share: float, tau: float
) -> np.ndarray:
    """``u`` (C, H) with each unfamiliar class's part beyond its attributes, ``u_c``, moved to ``share`` of itself
    plus the rest from its nearest familiar classes' (softmax of -distance / tau); its attribute part ``z_c W1`` stays.
    A backbone trained on the familiar classes sees a new class through the features of the familiar ones it resembles,
    so a linear map fitted on seen classes scores its images as those (the seen bias of GZSL; Xian et al., 2018, GBU:
    the proposed splits keep the unseen classes out of ImageNet-1K), while the part is still a function of the
    attributes that a generator conditioned on them can learn."""
    if fam.size == 0:
        raise DataError("every class is unfamiliar; a twin needs familiar classes to blend toward")
    w = _softmin(z[unfamiliar], z[fam], tau)  # (U, F)
    out = u.copy()
    out[unfamiliar] = share * u[unfamiliar] + (1 - share) * (w @ u[fam])
    return out


def _assign(locs: np.ndarray, classes: np.ndarray, rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Labels for the images ``locs``: every class gets >= 1 image, counts proportional to ``weights``."""
    n, k = locs.size, classes.size
    if n < k:
        raise DataError(f"cannot give each of {k} classes an image with only {n} images")
    w = weights / weights.sum()
    counts = 1 + np.floor(w * (n - k)).astype(np.int64)
    rest = n - counts.sum()
    counts[np.argsort(-(w * (n - k)) % 1)[:rest]] += 1  # largest remainders
    return rng.permutation(np.repeat(classes, counts))


def _write(out: Path, features: np.ndarray, labels: np.ndarray, image_files: list[str]) -> None:
    import scipy.io

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "res101.mat.tmp"
    files = np.empty((len(image_files), 1), dtype=object)
    files[:, 0] = image_files
    with open(tmp, "wb") as f:
        scipy.io.savemat(
            f,
            {
                "features": features.T,
                "labels": (labels + 1).astype(np.float64)[:, None],
                "image_files": files,
                SYNTHETIC_KEY: np.array([[1]], dtype=np.uint8),
            },
            do_compression=False,
        )
    os.replace(tmp, out / "res101.mat")


def synth_like(
    like: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    difficulty: float = 1.0,
    feature_dim: int = 2048,
    captions: bool = False,
    params: TwinParams | None = None,
) -> Path:
    """Write a dataset directory ``out`` around the real class side in ``like`` (att_splits.mat, class lists).

    ``params``: the generator's knobs, by default the :data:`TWINS` row of ``like``'s folder name. The classes a
    search or a rerun evaluates as unseen (test classes, and the val classes of split 1) are the unfamiliar ones.
    ``captions``: also write synthetic per-image captions (``out/text_c10``, :mod:`zsltune.data.text`).
    """
    like, out = Path(like).expanduser(), Path(out).expanduser()
    rng = np.random.default_rng(seed)
    side = _class_side(like, rng)
    att, locs, n, names, seen, unseen = side.att, side.locs, side.n, side.names, side.seen, side.unseen
    n_cls = att.shape[0]

    weights = rng.uniform(0.6, 1.4, size=n_cls)  # uneven class sizes, as in the real data
    labels = np.full(n, -1, dtype=np.int64)
    labels[locs["trainval_loc"]] = _assign(locs["trainval_loc"], seen, rng, weights[seen])
    labels[locs["test_seen_loc"]] = _assign(locs["test_seen_loc"], seen, rng, weights[seen])
    labels[locs["test_unseen_loc"]] = _assign(locs["test_unseen_loc"], unseen, rng, weights[unseen])
    if (labels < 0).any():  # images in no split (none in the real files): give them any class
        labels[labels < 0] = rng.choice(n_cls, size=int((labels < 0).sum()))
    features, img_att = _side_features(
        like, side, labels, seed=seed, feature_dim=feature_dim, difficulty=difficulty, params=params,
        return_image_attributes=True,
    )  # fmt: skip
    image_files = [f"synthetic/{names[c]}/{i + 1:06d}.jpg" for i, c in enumerate(labels)]

    if out.resolve() != like.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for f in ("att_splits.mat", "sent_splits.mat", *CLASS_LISTS):
            if (like / f).is_file():
                shutil.copyfile(like / f, out / f)
    _write(out, features, labels, image_files)
    if captions:
        _captions(out, image_files, img_att, seed=seed + 2)
    return out


@dataclass(frozen=True)
class _ClassSide:
    att: np.ndarray  # (C, P)
    locs: dict[str, np.ndarray]  # the three splits' 0-based image rows
    n: int  # images
    names: list[str]
    seen: np.ndarray  # trainval class ids
    unseen: np.ndarray  # test class ids (the unfamiliar ones)
    validation: np.ndarray  # the val classes of split 1 that are not test classes


def _class_side(like: Path, rng: np.random.Generator) -> _ClassSide:
    """The real class side in ``like`` as :func:`synth_like` reads it (``rng`` draws FLO's unseen classes)."""
    att_path = like / "att_splits.mat"
    splits = _loadmat(att_path)
    for key in ("att", "trainval_loc", "test_seen_loc", "test_unseen_loc"):
        if key not in splits:
            raise DataError(f"{att_path}: missing key '{key}'; synth needs att and the three *_loc splits")
    att = np.asarray(splits["att"], dtype=np.float64).T  # (C, P)
    n_cls = att.shape[0]
    locs = {
        k: np.asarray(splits[k]).astype(np.int64).ravel() - 1
        for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")
    }
    names = (
        _strings(splits["allclasses_names"])
        if "allclasses_names" in splits
        else _read_list(like / "allclasses.txt") or [f"class_{i + 1:03d}" for i in range(n_cls)]
    )
    index = {c: i for i, c in enumerate(names)}
    tv, te = _read_list(like / "trainvalclasses.txt"), _read_list(like / "testclasses.txt")
    if tv and te:
        try:
            seen = np.array(sorted(index[c] for c in tv))
            unseen = np.array(sorted(index[c] for c in te))
        except KeyError as e:
            raise DataError(f"{like}: class {e} of the class lists is not in allclasses_names") from None
    else:  # FLO: no class lists; the usual split is 82 seen / 20 unseen of 102
        n_unseen = 20 if n_cls == 102 else max(1, round(0.2 * n_cls))
        unseen = np.sort(rng.choice(n_cls, size=n_unseen, replace=False))
        seen = np.setdiff1d(np.arange(n_cls), unseen)
    val_list = _read_list(like / "valclasses1.txt")
    val = np.array([index[c] for c in val_list if c in index]) if val_list else derive_val_classes(seen, seed=1)
    n = int(max(v.max() for v in locs.values())) + 1
    return _ClassSide(att, locs, n, names, seen, unseen, np.setdiff1d(val, unseen))


def oracle_features(
    like: str | Path,
    class_ids: np.ndarray,
    *,
    seed: int = 0,
    difficulty: float = 1.0,
    feature_dim: int = 2048,
    params: TwinParams | None = None,
) -> np.ndarray:
    """Fresh images (N, D) of ``class_ids`` (N,) (dataset class ids) from the very generator :func:`synth_like`
    used for the twin of ``like`` with these arguments: a feature generator that knows how the data was made, the
    ceiling any learned one (f-CLSWGAN, TL-VSC) can reach on the twin."""
    like = Path(like).expanduser()
    side = _class_side(like, np.random.default_rng(seed))
    return _side_features(  # type: ignore[return-value]
        like, side, np.asarray(class_ids, dtype=np.int64), seed=seed, feature_dim=feature_dim,
        difficulty=difficulty, params=params,
    )  # fmt: skip


def _side_features(
    like: Path, side: _ClassSide, labels: np.ndarray, *, seed: int, params: TwinParams | None, **kw: Any
) -> Any:
    """:func:`synth_features` for ``labels`` around ``side`` with the arguments every twin of ``like`` uses (one
    place, so the oracle draws from exactly the twin's generator)."""
    return synth_features(
        side.att, labels, seed=seed + 1, params=params or twin_params(like.name), unfamiliar=side.unseen,
        validation=side.validation, **kw,
    )  # fmt: skip


def _features(att: np.ndarray, labels: np.ndarray, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    features, img_att = synth_features(att, labels, return_image_attributes=True, **kw)  # type: ignore[misc,arg-type]
    return features, img_att


def _captions(out: Path, image_files: list[str], img_att: np.ndarray, *, seed: int) -> None:
    from zsltune.data.text import write_synth_captions

    write_synth_captions(out, image_files, img_att, seed=seed)


def synth_fresh(
    out: str | Path,
    *,
    classes: int = 50,
    attributes: int = 85,
    images: int = 5000,
    seed: int = 0,
    difficulty: float = 1.0,
    feature_dim: int = 2048,
    unseen_share: float = 0.2,
    captions: bool = False,
    params: TwinParams | None = None,
) -> Path:
    """Write a fully synthetic dataset directory (class side and features) with ``classes`` classes.

    ``params``: the generator's knobs (default: the legacy row, no seen bias); unseen and val classes are the
    unfamiliar ones, as in :func:`synth_like`.

    ``captions``: also write synthetic per-image captions (``out/text_c10``, :mod:`zsltune.data.text`).
    """
    import scipy.io

    if classes < 4 or attributes < 1 or images < 2 * classes:
        raise DataError(
            f"synth needs classes >= 4, attributes >= 1 and images >= 2*classes, got "
            f"classes={classes}, attributes={attributes}, images={images}"
        )
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # binary-ish attribute profiles, like AwA's 0..100 annotations
    raw = np.clip(rng.beta(0.5, 0.8, size=(classes, attributes)) * 100, 0, 100)  # (C, P)
    att = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    n_unseen = max(1, round(unseen_share * classes))
    perm = rng.permutation(classes)
    unseen, seen = np.sort(perm[:n_unseen]), np.sort(perm[n_unseen:])
    val = derive_val_classes(seen, seed=seed)
    labels = _assign(np.arange(images), np.arange(classes), rng, rng.uniform(0.6, 1.4, size=classes))
    is_seen = np.isin(labels, seen)
    test_seen = np.zeros(images, dtype=bool)
    test_seen[np.flatnonzero(is_seen)] = rng.random(int(is_seen.sum())) < 0.2
    loc = {
        "trainval_loc": np.flatnonzero(is_seen & ~test_seen),
        "test_seen_loc": np.flatnonzero(test_seen),
        "test_unseen_loc": np.flatnonzero(~is_seen),
    }
    names = [f"class_{i + 1:03d}" for i in range(classes)]
    cell = np.empty((classes, 1), dtype=object)
    cell[:, 0] = names
    scipy.io.savemat(
        out / "att_splits.mat",
        {
            "att": att.T,
            "original_att": raw.T,
            "allclasses_names": cell,
            **{k: (v + 1).astype(np.uint16 if images < 65536 else np.uint32)[:, None] for k, v in loc.items()},
        },
    )
    lists = {
        "trainvalclasses.txt": seen,
        "testclasses.txt": unseen,
        "trainclasses1.txt": np.setdiff1d(seen, val),
        "valclasses1.txt": val,
        "allclasses.txt": np.arange(classes),
    }
    for fname, ids in lists.items():
        (out / fname).write_text("".join(f"{names[i]}\n" for i in ids), encoding="utf-8")
    features, img_att = _features(
        att, labels, seed=seed + 1, feature_dim=feature_dim, difficulty=difficulty, params=params,
        unfamiliar=unseen, validation=np.setdiff1d(val, unseen),
    )  # fmt: skip
    image_files = [f"synthetic/{names[c]}/{i + 1:06d}.jpg" for i, c in enumerate(labels)]
    _write(out, features, labels, image_files)
    if captions:
        _captions(out, image_files, img_att, seed=seed + 2)
    return out


def params_key(params: TwinParams) -> str:
    """8 hex digits naming a generator row, so a cache entry made with other knobs is never reused."""
    return hashlib.sha1(repr(params).encode()).hexdigest()[:8]


def class_side_key(like: Path, salt: str) -> str:
    """12 hex digits of a cache entry made from the class side in ``like`` and the generator's arguments (``salt``):
    att_splits.mat and the files an entry copies (sent_splits.mat, the class lists), so a changed split is a new
    entry."""
    h = hashlib.sha1((like / "att_splits.mat").read_bytes())
    for f in ("sent_splits.mat", *CLASS_LISTS):
        if (like / f).is_file():
            h.update(f.encode() + (like / f).read_bytes())
    h.update(salt.encode())
    return h.hexdigest()[:12]


def cached_synth_like(like: str | Path, *, seed: int = 0, difficulty: float = 1.0, captions: bool = False) -> Path:
    """``synth_like`` into the cache, keyed by the class side's bytes and the generator's arguments.

    ``captions``: make sure the entry has synthetic captions too (an entry made without them is regenerated,
    bit-identically, with them).
    """
    like = Path(like).expanduser()
    salt = f"{seed}:{difficulty}:v{GENERATOR_VERSION}:{params_key(twin_params(like.name))}"  # a refit: a new entry
    out = cache_dir() / "synth" / f"{like.name}-{class_side_key(like, salt)}"
    if not (out / "res101.mat").is_file() or (captions and not (out / "text_c10").is_dir()):
        synth_like(like, out, seed=seed, difficulty=difficulty, captions=captions)
    return out
