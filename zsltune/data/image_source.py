"""What the ``images`` data source (:class:`zsltune.data.sources.Images`) loads: a CUB-layout folder cut into a
retrieval stage, handed to trials as paths and indices (small: it goes through Ray's object store); each trial
opens the node's decoded cache of its split (:func:`zsltune.data.images.image_cache`) and reads batches through a
DataLoader with random crop and flip.

``--dataset`` names a CUB-layout folder (a path, or a folder under ``--data-root``), or ``demo-images``: synthetic
retrieval images (:mod:`zsltune.data.synth_images`, 100 classes x 40 images of 64x64) generated into the cache.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsltune.data.cache import cache_dir
from zsltune.data.images import CACHE_RESOLUTION, CachedImages, image_cache, read_cub, retrieval_classes
from zsltune.errors import ConfigError, DataError

DEMO_IMAGES = "demo-images"
DEMO_IMAGES_SIZE = {"classes": 100, "per_class": 40, "size": 64}
#: synthetic part images (SGMA's demo) around a class side: images a class, side in pixels
DEMO_PARTS = "demo-parts"
DEMO_PARTS_SIZE = {"per_class": 80, "size": 64}
#: the Recall@K lists of the zero-shot retrieval literature (Oh Song et al. 2016; Chen & Deng 2019, Table 3)
RECALL_PRESETS: dict[str, tuple[int, ...]] = {"cub": (1, 2, 4, 8), "cars": (1, 2, 4, 8), "sop": (1, 10, 100, 1000)}


def recall_ks(spec: str | None, dataset: str) -> tuple[int, ...]:
    """The Recall@K list ``--recall-at`` names (a preset or K,K,...); None: ``sop`` for a Stanford Online Products
    folder (its name holds "online_products" or is "sop"), ``cub`` (1, 2, 4, 8) for every other dataset."""
    if spec is None:
        name = Path(dataset).name.lower()
        return RECALL_PRESETS["sop" if "online_products" in name or name == "sop" else "cub"]
    key = str(spec).strip().lower()
    if key in RECALL_PRESETS:
        return RECALL_PRESETS[key]
    try:
        ks = tuple(int(k) for k in key.split(",") if k.strip())
    except ValueError:
        ks = ()
    if not ks or ks[0] != 1 or list(ks) != sorted(set(ks)):  # recall@1 is the search's metric
        raise ConfigError(
            f"--recall-at {spec}: use a preset ({', '.join(RECALL_PRESETS)}) or increasing K from 1 like 1,10,100"
        )
    return ks


@dataclass(frozen=True)
class ImageStage:
    """One retrieval stage: which images train and which are evaluated, by path; no pixels."""

    dataset: str
    stage: str
    synthetic: bool
    root: str
    resolution: int  # the cache's square side
    train_files: list[str]  # absolute paths
    y_train: np.ndarray  # (N_tr,) 0-based training class
    eval_files: list[str]
    y_eval: np.ndarray  # (N_ev,) 0-based evaluation class (its own numbering)
    train_classes: list[str]
    eval_classes: list[str]
    boxes_train: np.ndarray | None = None  # (N_tr, 4) x, y, w, h scaled to the cache's resolution
    skip_bad: bool = False
    recall_ks: tuple[int, ...] = RECALL_PRESETS["cub"]  # the Recall@K list the stage is evaluated with

    @property
    def n_seen(self) -> int:
        return len(self.train_classes)

    @property
    def num_classes(self) -> int:
        return len(self.train_classes) + len(self.eval_classes)

    def cached(self, split: str) -> tuple[CachedImages, np.ndarray]:
        """The node's decoded cache of ``split`` ("train" or "eval") and the labels of the rows it kept."""
        files, y = (self.train_files, self.y_train) if split == "train" else (self.eval_files, self.y_eval)
        return _cached(files, y, self.resolution, self.skip_bad)


def _cached(files: list[str], y: np.ndarray, resolution: int, skip_bad: bool) -> tuple[CachedImages, np.ndarray]:
    """The node's decoded cache of ``files`` and the labels of the rows it kept (both stage kinds)."""
    c = image_cache([Path(f) for f in files], resolution=resolution, skip_bad=skip_bad)
    return c, y[c.kept]


def resolve_images(name: str, data_root: str | None, seed: int) -> tuple[Path, bool]:
    """(folder, synthetic) of ``--dataset`` for an image method."""
    if name in (DEMO_IMAGES, "demo"):  # "demo", the sweep's default dataset, means the image demo here
        from zsltune.data.synth_images import synth_images

        out = cache_dir() / "synth" / f"{DEMO_IMAGES}-{seed}-v1"
        if not (out / "images.txt").is_file():
            synth_images(out, kind="retrieval", seed=seed, **DEMO_IMAGES_SIZE)
        return out, True
    p = Path(name).expanduser()
    if not p.is_dir() and data_root:
        p = Path(data_root).expanduser() / name
    if not p.is_dir():
        raise DataError(
            f"--dataset {name}: no such image folder; pass a CUB-layout folder (images.txt, image_class_labels.txt, "
            f"images/), a name under --data-root, or '{DEMO_IMAGES}'"
        )
    return p, (p / "synthetic.txt").is_file()


def load_image_stage(req: Any, *, skip_bad: bool = False) -> ImageStage:
    """The stage ``req`` (a :class:`~zsltune.data.sources.StageRequest`) asks for, as paths and indices."""
    root, synthetic = resolve_images(req.dataset, req.data_root, req.seed)
    s = read_cub(root)
    train_c, eval_c = retrieval_classes(s.num_classes, req.stage)
    tr = np.flatnonzero(np.isin(s.labels, train_c))
    ev = np.flatnonzero(np.isin(s.labels, eval_c))
    native = _native_size(root / "images" / s.files[0]) if synthetic else None
    res = req.image_size or native or CACHE_RESOLUTION
    boxes = None
    if s.boxes is not None and native:  # synthetic images are square at their native size: boxes scale with R
        boxes = s.boxes[tr] * (res / native)
    return ImageStage(
        dataset=DEMO_IMAGES if req.dataset in (DEMO_IMAGES, "demo") else root.name,
        stage=req.stage,
        synthetic=synthetic,
        root=str(root),
        resolution=int(res),
        train_files=[str(root / "images" / s.files[i]) for i in tr],
        y_train=np.searchsorted(train_c, s.labels[tr]),
        eval_files=[str(root / "images" / s.files[i]) for i in ev],
        y_eval=np.searchsorted(eval_c, s.labels[ev]),
        train_classes=[s.class_names[c] for c in train_c],
        eval_classes=[s.class_names[c] for c in eval_c],
        boxes_train=boxes,
        skip_bad=skip_bad,
        recall_ks=recall_ks(req.recall_at, str(root)),
    )


def _native_size(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return int(max(im.size))


class CachedDataset:
    """A torch-style dataset over a cached split: uint8 (R, R, 3) -> float (3, crop, crop), normalised to [-1, 1];
    training: a random crop and a horizontal flip from a per-worker seeded stream; evaluation: the centre crop."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, *, crop: int, train: bool, seed: int = 0) -> None:
        if crop > pixels.shape[1]:
            raise DataError(f"crop {crop} is larger than the cached images ({pixels.shape[1]} pixels)")
        self.pixels, self.labels, self.crop, self.train, self.seed = pixels, labels, crop, train, seed
        self.epoch = 0
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import torch

        img = self.pixels[i]  # (R, R, 3) uint8, a view of the memory map
        r, c = img.shape[0], self.crop
        if self.train:
            if self._rng is None:  # one stream per worker process, fixed by seed, epoch and worker id
                import torch.utils.data as tud

                wi = tud.get_worker_info()
                self._rng = np.random.default_rng([self.seed, self.epoch, wi.id if wi else 0])
            y0, x0 = self._rng.integers(0, r - c + 1, 2)
            img = img[y0 : y0 + c, x0 : x0 + c]
            if self._rng.random() < 0.5:
                img = img[:, ::-1]
        else:
            o = (r - c) // 2
            img = img[o : o + c, o : o + c]
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # (3, c, c)
        return x, int(self.labels[i])


def loader_workers(cpus_per_trial: float) -> int:
    """DataLoader workers within a trial's CPU share: one core stays with the training loop (0 on one core)."""
    return max(0, int(cpus_per_trial) - 1)


def make_loader(
    dataset: CachedDataset, *, batch_size: int, workers: int, shuffle: bool, pin: bool, seed: int = 0
) -> Any:
    """A DataLoader over a cached split; ``workers`` within the trial's CPU share (0: in the trial's process)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        drop_last=shuffle,
        generator=g,
    )


@dataclass(frozen=True)
class AttributeImageStage:
    """One xlsa17 stage over images (attribute-based ZSL on pixels): the protocol's splits of
    :func:`zsltune.data.protocol.build_stage`, as local image paths; no pixels."""

    dataset: str
    stage: str
    synthetic: bool
    resolution: int
    attributes: np.ndarray  # (C, P) float32, seen classes first
    n_seen: int
    class_names: list[str]
    train_files: list[str]
    y_train: np.ndarray  # (N_tr,) in [0, n_seen)
    seen_files: list[str]
    y_seen: np.ndarray
    unseen_files: list[str]
    y_unseen: np.ndarray  # in [n_seen, C)
    skip_bad: bool = False

    @property
    def num_classes(self) -> int:
        return int(self.attributes.shape[0])

    def cached(self, split: str) -> tuple[CachedImages, np.ndarray]:
        """The node's decoded cache of ``split`` ("train", "seen" or "unseen") and the labels of its rows."""
        files, y = {"train": (self.train_files, self.y_train), "seen": (self.seen_files, self.y_seen)}.get(
            split, (self.unseen_files, self.y_unseen)
        )
        return _cached(files, y, self.resolution, self.skip_bad)


def resolve_parts_images(name: str, data_root: str | None, seed: int) -> Path:
    """The xlsa17 folder over images that ``--dataset`` names for an attribute-based image method.

    ``demo`` (or ``demo-parts``): synthetic part images (:func:`~zsltune.data.synth_images.synth_images`, kind
    ``parts``) around the real AWA2 class side under the data root, or around the synthetic demo class side where
    there is none. A folder with images (``res101.mat`` naming them) is used as it is; a folder with only the class
    side (``att_splits.mat``, as the GBU download without features) gets synthetic part images around it, generated
    once into the cache.
    """
    from zsltune.data import default_data_root, resolve_dataset

    root = Path(data_root).expanduser() if data_root else default_data_root()
    if name in ("demo", DEMO_PARTS):
        awa2 = root / "AWA2"
        like = awa2 if (awa2 / "att_splits.mat").is_file() else resolve_dataset("demo", seed=seed)
        return _synth_parts(like, seed, f"{DEMO_PARTS}-{like.name}")
    p = Path(name).expanduser()
    if not p.is_dir():
        p = root / name
    if not (p / "att_splits.mat").is_file():
        raise DataError(
            f"--dataset {name}: no xlsa17 folder (att_splits.mat) at {p}; pass a dataset under --data-root, a folder, "
            f"or '{DEMO_PARTS}'"
        )
    if (p / "images").is_dir() and (p / "res101.mat").is_file():
        return p
    out = _synth_parts(p, seed, p.name)
    note = f"zsltune: {p} has no images; using synthetic part images around its real class side ({out})"
    print(note, file=sys.stderr)
    return out


def _synth_parts(like: Path, seed: int, tag: str) -> Path:
    from zsltune.data.synth import class_side_key
    from zsltune.data.synth_images import PARTS_VERSION, synth_images

    key = class_side_key(like, f"{seed}:{DEMO_PARTS_SIZE}:v{PARTS_VERSION}")  # a new design is a new entry
    out = cache_dir() / "synth" / f"parts-{tag}-{key}"
    if not (out / "res101.mat").is_file():
        synth_images(out, kind="parts", like=like, seed=seed, **DEMO_PARTS_SIZE)
    return out


def load_xlsa17_image_stage(
    req: Any, *, image_root: str | Path | None = None, strip_prefix: str | None = None, skip_bad: bool = False
) -> AttributeImageStage:
    """An xlsa17 folder's ``val``/``test`` stage over its images: ``res101.mat``'s ``image_files`` mapped onto
    ``image_root`` (default ``DATASET/images``) by :func:`~zsltune.data.images.map_image_files`."""
    from zsltune.data.images import map_image_files
    from zsltune.data.protocol import build_stage
    from zsltune.data.xlsa17 import load_dataset

    root = resolve_parts_images(req.dataset, req.data_root, req.seed)
    ds = load_dataset(root, name=DEMO_PARTS if req.dataset in ("demo", DEMO_PARTS) else Path(req.dataset).name)
    if ds.image_files is None:
        raise DataError(f"{root / 'res101.mat'}: no image_files; an image stage needs the images' paths")
    st = build_stage(ds, req.stage, seed=req.seed)
    where = Path(image_root).expanduser() if image_root else root / "images"

    def files(idx: np.ndarray) -> list[str]:
        return [str(p) for p in map_image_files([ds.image_files[i] for i in idx], where, strip_prefix=strip_prefix)]

    train = files(st.index_train)
    res = req.image_size or (_native_size(Path(train[0])) if ds.synthetic else CACHE_RESOLUTION)
    return AttributeImageStage(
        dataset=ds.name, stage=req.stage, synthetic=ds.synthetic, resolution=res, attributes=st.attributes,
        n_seen=st.n_seen, class_names=st.class_names, train_files=train, y_train=st.y_train,
        seen_files=files(st.index_seen), y_seen=st.y_seen, unseen_files=files(st.index_unseen), y_unseen=st.y_unseen,
        skip_bad=skip_bad,
    )  # fmt: skip
