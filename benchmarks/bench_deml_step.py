"""Training images per second of DeML (one optimisation step: sampling from the node's cache, crop/flip, I scales x
J branches forward and backward, Adam), for several (I, J) on CPU and, where CUDA exists, on GPU in fp32,
channels-last + bf16 autocast; measured side by side in one run (steps interleaved, median).

Data: ``demo-images`` (synthetic retrieval images, 64x64, 56 px crops), its val stage's 40 training classes; the
space's defaults otherwise (``small`` backbone, d 128, batches of 16 classes x 2 images).

    PYTHONPATH=. python benchmarks/bench_deml_step.py --quick
    PYTHONPATH=. python benchmarks/bench_deml_step.py --arms 1:1 2:2 3:3 --steps 20
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks._bench_util import interleaved_step_times, print_step_table
from zsltune.data.sources import StageRequest, get_source
from zsltune.methods import get_method
from zsltune.space import load_space


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo-images")
    p.add_argument("--arms", nargs="+", default=["1:1", "2:2", "3:3"], help="(I, J) pairs as I:J")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 timed steps, arms 1:1 and 2:2")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.arms = 3, ["1:1", "2:2"]
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    data = get_source("images").load(StageRequest(dataset=a.dataset, stage="val"))
    cls = get_method("deml")
    base = load_space("deml").defaults(data.dataset)  # the space's first trial, not the trainer's paper defaults
    configs: dict[str, tuple[dict[str, Any], str, bool]] = {}
    for arm in a.arms:
        i, j = (int(v) for v in arm.split(":"))
        configs[f"cpu ({i},{j})"] = ({**base, "I": i, "J": j}, "cpu", False)
        if torch.cuda.is_available():
            configs[f"cuda fp32 ({i},{j})"] = ({**base, "I": i, "J": j}, "cuda", False)
            configs[f"cuda bf16+channels-last ({i},{j})"] = ({**base, "I": i, "J": j, "amp": True}, "cuda", True)
    trainers = {}
    for name, (cfg, dev, cl) in configs.items():
        t = cls(cfg, data, device=dev, seed=0, max_epochs=100, iteration_steps=1)
        if cl:
            t.model.to(memory_format=torch.channels_last)
        trainers[name] = t
    times = interleaved_step_times(trainers, steps=a.steps, warmup=a.warmup)
    batch = int(next(iter(trainers.values())).config["batch_classes"]) * int(
        next(iter(trainers.values())).config["per_class"]
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(
        f"DeML training step on {data.dataset} ({data.resolution}px cache, batch {batch}); {a.steps} steps, median "
        f"after {a.warmup}; CPU threads={torch.get_num_threads()}, {gpu}"
    )
    print_step_table(times, batch, width=32)


if __name__ == "__main__":
    main()
