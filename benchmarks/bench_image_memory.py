"""Copies of the decoded images held by N image trials on one node: the node's shared cache (every trial memory-maps
the same ``.npy``, as shipped) vs a private copy per trial (what a trial that decodes or loads the images itself
holds). N processes each open the split's cache (:func:`zsltune.data.images.image_cache`) and read every pixel;
while all N hold it, the sum of their PSS (shared pages counted once across processes) is taken from
``/proc/PID/smaps`` (shared libraries left out), minus the same for N processes that hold no pixels. Copies = that /
the cache's bytes.

    PYTHONPATH=. python benchmarks/bench_image_memory.py            # demo-images, N = 1 2 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._bench_util import data_pss


def _hold(files: list[str], resolution: int, mode: str, ready: Any, done: Any) -> None:
    from zsltune.data.images import image_cache

    if mode != "none":
        px = image_cache([Path(f) for f in files], resolution=resolution).pixels
        if mode == "copy":
            px = np.array(px)  # a private copy, as a trial loading the split itself would hold
        int(px.sum(dtype=np.uint64))  # every page read
    ready.put(os.getpid())
    done.wait()


def held(files: list[str], resolution: int, mode: str, n: int) -> float:
    """Sum of PSS (bytes) of ``n`` processes holding the split in ``mode`` (cache, copy, none)."""
    ctx = mp.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_hold, args=(files, resolution, mode, ready, done)) for _ in range(n)]
    for p in procs:
        p.start()
    pids = [ready.get(timeout=300) for _ in procs]
    total = float(sum(data_pss(pid) for pid in pids))
    done.set()
    for p in procs:
        p.join()
    return total


def measure(dataset: str = "demo-images", ns: tuple[int, ...] = (1, 2, 4)) -> list[dict[str, Any]]:
    from zsltune.data.images import image_cache
    from zsltune.data.sources import StageRequest, get_source

    st = get_source("images").load(StageRequest(dataset=dataset, stage="val"))
    files = st.train_files
    size = float(image_cache([Path(f) for f in files], resolution=st.resolution).pixels.nbytes)
    rows = []
    for n in ns:
        base = held(files, st.resolution, "none", n)
        for mode in ("cache", "copy"):
            rows.append({"n": n, "mode": mode, "copies": (held(files, st.resolution, mode, n) - base) / size,
                         "cache_mib": size / 2**20})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo-images")
    p.add_argument("--n", nargs="+", type=int, default=[1, 2, 4])
    a = p.parse_args(argv)
    rows = measure(a.dataset, tuple(a.n))
    print(f"decoded training split of {a.dataset}: {rows[0]['cache_mib']:.1f} MiB")
    for r in rows:
        print(f"  N={r['n']} {r['mode']:5s} copies of the images held: {r['copies']:.2f}")


if __name__ == "__main__":
    main()
