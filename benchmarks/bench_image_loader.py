"""Images per second delivered to a trial: the node's decoded cache (memory-mapped uint8) vs decoding every JPEG
every epoch, each with 0, 1 and 2 DataLoader workers, measured side by side in one run (rounds interleaved).

Data: the synthetic retrieval demo (``demo-images``: 100 classes x 40 JPEGs of 64x64; its val stage trains on 40
classes, 1,600 images), random 56x56 crops and flips, batches of 64. The decoding side is what a hand-written
``ImageFolder``-style dataset does: PIL open + convert + resize + crop per item per epoch.

    PYTHONPATH=. python benchmarks/bench_image_loader.py --quick
    PYTHONPATH=. python benchmarks/bench_image_loader.py --rounds 5 --size 128
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from zsltune.data.image_source import CachedDataset, load_image_stage, make_loader
from zsltune.data.images import decode
from zsltune.data.sources import StageRequest


class DecodingDataset:
    """Decodes the JPEG of each item on every access (no cache), then crops and flips like :class:`CachedDataset`."""

    def __init__(self, files: list[str], labels: np.ndarray, *, resolution: int, crop: int, seed: int = 0) -> None:
        self.files, self.labels, self.resolution, self.crop = files, labels, resolution, crop
        self.inner = CachedDataset(
            np.zeros((1, resolution, resolution, 3), np.uint8), labels[:1], crop=crop, train=True, seed=seed
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        self.inner.pixels = decode(Path(self.files[i]), self.resolution)[None]
        self.inner.labels = self.labels[i : i + 1]
        return self.inner[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo-images", help="a CUB-layout folder or demo-images")
    p.add_argument("--rounds", type=int, default=3, help="epochs per configuration, interleaved (median reported)")
    p.add_argument("--crop", type=int, default=56)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="one round")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds = 1
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    st = load_image_stage(StageRequest(dataset=a.dataset, stage="val"))
    t0 = time.perf_counter()
    cache, y = st.cached("train")
    build_s = time.perf_counter() - t0
    crop = min(a.crop, st.resolution)
    makers = {}
    for w in a.workers:
        makers[f"cache, {w} workers"] = (CachedDataset(cache.pixels, y, crop=crop, train=True), w)
        makers[f"decode, {w} workers"] = (
            DecodingDataset(st.train_files, st.y_train, resolution=st.resolution, crop=crop),
            w,
        )
    loaders = {
        k: make_loader(ds, batch_size=a.batch, workers=w, shuffle=True, pin=False) for k, (ds, w) in makers.items()
    }
    rates: dict[str, list[float]] = {k: [] for k in loaders}
    for _ in range(a.rounds):
        for name, loader in loaders.items():
            n, t0 = 0, time.perf_counter()
            for xb, _ in loader:
                n += xb.shape[0]
            rates[name].append(n / (time.perf_counter() - t0))
    print(
        f"images/s delivered (batches of {a.batch}, {crop}x{crop} crops, {len(y)} training images of {st.dataset} "
        f"at {st.resolution}px; cache {'built' if cache.built else 'read'} in {build_s:.2f} s; median of {a.rounds})"
    )
    med = {k: statistics.median(v) for k, v in rates.items()}
    for w in a.workers:
        c, d = med[f"cache, {w} workers"], med[f"decode, {w} workers"]
        print(f"  {w} workers: cache {c:9.0f} img/s   decode {d:9.0f} img/s   cache/decode {c / d:5.2f}x")


if __name__ == "__main__":
    main()
