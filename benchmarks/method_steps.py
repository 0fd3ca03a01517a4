"""One training step of every registered method, at its search space's defaults on its demo data, timed side by side
in one run (steps interleaved, median): CPU, and where CUDA exists GPU fp32 and bf16 autocast (``amp``), as ratios;
with ``--compiled`` also each method's step under ``torch.compile`` (CPU, and GPU fp32), its compile time apart.

The registry decides what is measured: a method added to zsltune appears here with no edit. Data: each method's
source with ``--dataset demo`` (features: the 40-class demo; captions: the same with synthetic captions; images: 100
retrieval classes of 64x64; xlsa17 images: part images around AWA2's class side), the val stage.

    PYTHONPATH=. python benchmarks/method_steps.py --quick
    PYTHONPATH=. python benchmarks/method_steps.py --compiled        # + torch.compile (minutes of compiling on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks._bench_util import default_data_root, interleaved_step_times
from zsltune.data.sources import StageRequest
from zsltune.methods import get_method, list_methods
from zsltune.space import available_spaces, load_space

#: steady-state steps: a method whose first steps differ from the rest starts past them
STEADY: dict[str, dict[str, Any]] = {"sgma": {"warmup_steps": 0}}  # the parts from the first step


#: what ``torch.compile`` wraps for a method's compiled arm: the step's forward and loss (not the optimiser, not the
#: data). TL-VSC's critics are left eager: their gradient penalty needs a double backward, which compile does not take.
COMPILE: dict[str, Callable[[Any], None]] = {
    "linear": lambda tr: tr.model.compile(),
    "crnet": lambda tr: setattr(tr, "loss", torch.compile(tr.loss)),
    "clarel": lambda tr: setattr(tr, "losses", torch.compile(tr.losses)),
    "tlvsc": lambda tr: [setattr(tr.model, k, torch.compile(getattr(tr.model, k))) for k in ("G", "I_hidden")],
    "deml": lambda tr: [scale.compile() for scale in tr.model],
    "sgma": lambda tr: tr.model.compile(),
}
#: steps a compiled trainer runs before it is timed: compiling, and recompiling once shapes or guards change
COMPILE_WARMUP = 6


def batch_of(config: dict[str, Any]) -> int:
    """Items in one step: images (or features) of a batch."""
    if "batch_classes" in config:
        return int(config["batch_classes"]) * int(config["per_class"])
    return int(config.get("batch_size", 0))


def devices(*, compiled: bool = False) -> list[tuple[str, str, bool, bool]]:
    """(label, device, amp, compiled) arms on this machine."""
    out = [("cpu fp32", "cpu", False, False)] + [("cpu compiled", "cpu", False, True)] * compiled
    if torch.cuda.is_available():
        out += [("cuda fp32", "cuda", False, False), ("cuda bf16", "cuda", True, False)]
        out += [("cuda compiled", "cuda", False, True)] * compiled
    return out


def measure(
    methods: list[str] | None = None, *, steps: int = 5, warmup: int = 2, dataset: str = "demo",
    data_root: str | None = None, overrides: dict[str, dict[str, Any]] | None = None, compiled: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows: method, arm, ms_per_step, items_per_s, speedup_vs_cpu (CPU fp32 eager's time / this arm's: median of
    ``steps`` after ``warmup``), and for a compiled arm compile_s (its first :data:`COMPILE_WARMUP` steps)."""
    names = methods or [n for n in list_methods() if get_method(n).__module__.startswith("zsltune.")]
    trainers: dict[tuple[str, str], Any] = {}
    compile_s: dict[tuple[str, str], float] = {}
    for name in names:
        cls = get_method(name)
        data = cls.source({}).load(StageRequest(dataset=dataset, stage="val", data_root=data_root))
        # the space's (CPU-sized) first trial, not the trainer's paper defaults
        space = load_space(name).defaults(data.dataset) if name in available_spaces() else {}
        for label, dev, amp, comp in devices(compiled=compiled):
            if comp and name not in COMPILE:
                continue
            cfg = {**space, **STEADY.get(name, {}), **(overrides or {}).get(name, {}), "amp": amp}
            tr = cls(cfg, data, device=dev, seed=0, iteration_steps=1)
            if comp:
                COMPILE[name](tr)
                t0 = time.perf_counter()
                tr.train_steps(COMPILE_WARMUP)
                compile_s[(name, label)] = time.perf_counter() - t0
            trainers[(name, label)] = tr
    times = interleaved_step_times(trainers, steps=steps, warmup=warmup)
    rows = []
    for (name, label), ts in times.items():
        med = statistics.median(ts)
        cpu = statistics.median(times[(name, "cpu fp32")])
        n = batch_of(trainers[(name, label)].config)
        rows.append(
            {
                "method": name, "arm": label, "ms_per_step": 1e3 * med, "items_per_step": n,
                "items_per_s": n / med if n else float("nan"), "speedup_vs_cpu": cpu / med,
                **({"compile_s": compile_s[(name, label)]} if (name, label) in compile_s else {}),
            }
        )  # fmt: skip
    return rows


def row_line(r: dict[str, Any]) -> str:
    """One row of :func:`measure` as a table line."""
    line = (
        f"{r['method']:8s} {r['arm']:13s} {r['ms_per_step']:9.1f} ms/step {r['items_per_s']:9.1f} items/s "
        f"{r['speedup_vs_cpu']:5.2f}x vs CPU fp32"
    )
    return line + (f" (compiling: {r['compile_s']:.0f} s)" if "compile_s" in r else "")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="3 timed steps")
    p.add_argument("--compiled", action="store_true", help="also each step under torch.compile")
    a = p.parse_args(argv)
    rows = measure(a.methods, steps=3 if a.quick else a.steps, data_root=default_data_root(), compiled=a.compiled)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"training step per method at the space defaults; CPU threads={torch.get_num_threads()}, {gpu}")
    for r in rows:
        print("  " + row_line(r))


if __name__ == "__main__":
    main()
