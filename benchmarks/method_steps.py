"""One training step of every registered method, at its search space's defaults on its demo data, timed side by side
in one run (steps interleaved, median): CPU, and where CUDA exists GPU fp32 and bf16 autocast (``amp``), as ratios.

The registry decides what is measured: a method added to zsltune appears here with no edit. Data: each method's
source with ``--dataset demo`` (features: the 40-class demo; captions: the same with synthetic captions; images: 100
retrieval classes of 64x64; xlsa17 images: part images around AWA2's class side), the val stage.

    PYTHONPATH=. python benchmarks/method_steps.py --quick
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from benchmarks._bench_util import default_data_root, interleaved_step_times
from zsltune.data.sources import StageRequest
from zsltune.methods import get_method, list_methods

#: steady-state steps: a method whose first steps differ from the rest starts past them
STEADY: dict[str, dict[str, Any]] = {"sgma": {"warmup_steps": 0}}  # the parts from the first step


def batch_of(config: dict[str, Any]) -> int:
    """Items in one step: images (or features) of a batch."""
    if "batch_classes" in config:
        return int(config["batch_classes"]) * int(config["per_class"])
    return int(config.get("batch_size", 0))


def devices() -> list[tuple[str, str, bool]]:
    """(label, device, amp) arms on this machine."""
    out = [("cpu fp32", "cpu", False)]
    if torch.cuda.is_available():
        out += [("cuda fp32", "cuda", False), ("cuda bf16", "cuda", True)]
    return out


def measure(
    methods: list[str] | None = None, *, steps: int = 5, warmup: int = 2, dataset: str = "demo",
    data_root: str | None = None, overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows: method, arm, ms_per_step, items_per_s, ratio_vs_cpu (median of ``steps`` after ``warmup``)."""
    names = methods or [n for n in list_methods() if get_method(n).__module__.startswith("zsltune.")]
    trainers: dict[tuple[str, str], Any] = {}
    for name in names:
        cls = get_method(name)
        data = cls.source({}).load(StageRequest(dataset=dataset, stage="val", data_root=data_root))
        for label, dev, amp in devices():
            cfg = {**STEADY.get(name, {}), **(overrides or {}).get(name, {}), "amp": amp}
            trainers[(name, label)] = cls(cfg, data, device=dev, seed=0, iteration_steps=1)
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
            }
        )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="3 timed steps")
    a = p.parse_args(argv)
    rows = measure(a.methods, steps=3 if a.quick else a.steps, data_root=default_data_root())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"training step per method at the space defaults; CPU threads={torch.get_num_threads()}, {gpu}")
    for r in rows:
        print(
            f"  {r['method']:8s} {r['arm']:10s} {r['ms_per_step']:9.1f} ms/step  {r['items_per_s']:9.1f} items/s  "
            f"{r['speedup_vs_cpu']:5.2f}x vs CPU"
        )


if __name__ == "__main__":
    main()
