"""Packing trials on one GPU, emulated at the trainer level (the lent GPU machine has PyTorch but no Ray): N processes,
each capped to 1/N of the GPU's memory (``torch.cuda.set_per_process_memory_fraction``, as a sweep's fractional
trials are), each training its own trainer for ``--seconds``; reported: trial-iterations per hour summed over the N,
the ratio to N = 1, GPU utilisation (``nvidia-smi``, sampled), and trials that ran out of memory (classified as
:class:`zsltune.methods.TrialOutOfMemory`, the sweep's retryable failure). Without CUDA it runs on CPU (one thread a
process), which only checks that it works.

    PYTHONPATH=. python benchmarks/gpu_packing.py --method crnet --n 1 2 4 8 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import queue
import subprocess
import time
from typing import Any


def _trial(method: str, dataset: str, n: int, seconds: float, steps: int, out: Any) -> None:
    import torch

    from zsltune.data.sources import StageRequest
    from zsltune.methods import TrialOutOfMemory, get_method
    from zsltune.space import load_space

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        torch.cuda.set_per_process_memory_fraction(1.0 / n)
    else:
        torch.set_num_threads(1)
    cls = get_method(method)
    data = cls.source({}).load(StageRequest(dataset=dataset, stage="val"))
    iters, oom = 0, ""
    try:
        # the space's first trial (CPU-sized), not the trainer's paper defaults
        t = cls(load_space(method).defaults(data.dataset), data, device=dev, seed=0, iteration_steps=steps)
        t0 = time.time()
        while time.time() - t0 < seconds:
            t.fit_epoch()
            iters += 1
        elapsed = time.time() - t0
    except torch.cuda.OutOfMemoryError as e:
        oom, elapsed = str(TrialOutOfMemory(f"CUDA out of memory at 1/{n} of the GPU: {str(e).splitlines()[0]}")), 0.0
    out.put({"iterations": iters, "seconds": elapsed, "oom": oom})


def gpu_util() -> float | None:
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=5)  # fmt: skip
        return float(p.stdout.split()[0]) if p.returncode == 0 and p.stdout.strip() else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def pack(method: str, dataset: str, n: int, seconds: float, steps: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_trial, args=(method, dataset, n, seconds, steps, out)) for _ in range(n)]
    for p in procs:
        p.start()
    util: list[float] = []
    results: list[dict[str, Any]] = []
    while len(results) < n:
        u = gpu_util()
        if u is not None:
            util.append(u)
        with contextlib.suppress(queue.Empty):  # keep sampling
            results.append(out.get(timeout=1.0))
    for p in procs:
        p.join()
    per_hour = sum(3600 * r["iterations"] / r["seconds"] for r in results if r["seconds"] > 0)
    errors = [r["oom"] for r in results if r["oom"]]
    mean_util = sum(util) / len(util) if util else None
    return {"n": n, "iterations_per_hour": per_hour, "oom": len(errors), "gpu_util": mean_util, "errors": errors}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="crnet")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--n", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=50, help="optimisation steps per iteration")
    a = p.parse_args(argv)
    base = None
    for n in a.n:
        r = pack(a.method, a.dataset, n, a.seconds, a.steps)
        base = base or r["iterations_per_hour"]
        util = f"{r['gpu_util']:.0f}%" if r["gpu_util"] is not None else "n/a"
        rate = r["iterations_per_hour"]
        print(f"N={n}: {rate:9.0f} trial-iterations/h ({rate / base:4.2f}x N=1), GPU util {util}, "
              f"out of memory {r['oom']}/{n}")  # fmt: skip
        for e in r["errors"][:1]:
            print(f"   {e}")


if __name__ == "__main__":
    main()
