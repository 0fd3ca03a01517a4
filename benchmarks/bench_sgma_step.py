"""Training images per second of SGMA (one optimisation step: reading from the node's cache, the whole-image CNN,
K attention maps, K crop-and-zooms, the parts' CNN, the losses, Adam), for K = 0..3 and the shared CNN, on CPU and,
where CUDA exists, on GPU in fp32 and bf16 autocast; measured side by side in one run (steps interleaved, median).

Data: synthetic part images (64x64) around the AWA2 class side (``--dataset AWA2`` under ``$ZSLTUNE_DATA``), the val
stage's 27 training classes; the space's defaults otherwise (``small`` backbone, parts zoomed to 32 px, batch 32).

    PYTHONPATH=. python benchmarks/bench_sgma_step.py --quick
    PYTHONPATH=. python benchmarks/bench_sgma_step.py --arms K=0 K=2 K=2,share_cnn --steps 20
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks._bench_util import default_data_root, interleaved_step_times, print_step_table
from zsltune.data.sources import StageRequest, get_source
from zsltune.methods import get_method
from zsltune.space import load_space


def parse_arm(arm: str) -> dict[str, Any]:
    """``K=2,share_cnn`` -> {"K": 2, "share_cnn": True}."""
    out: dict[str, Any] = {}
    for part in arm.split(","):
        k, _, v = part.partition("=")
        out[k] = True if not v else (int(v) if v.isdigit() else v)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="AWA2")
    p.add_argument("--arms", nargs="+", default=["K=0", "K=1", "K=2", "K=3", "K=2,share_cnn"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 timed steps, arms K=0 and K=2")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.arms = 3, ["K=0", "K=2"]
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    data = get_source("xlsa17-images").load(StageRequest(dataset=a.dataset, stage="val", data_root=default_data_root()))
    cls = get_method("sgma")
    configs: dict[str, tuple[dict[str, Any], str]] = {}
    for arm in a.arms:
        # the space's first trial (part_size 32), not the trainer's paper defaults; the parts from the first step
        cfg = {**load_space("sgma").defaults(data.dataset), **parse_arm(arm), "warmup_steps": 0}
        configs[f"cpu {arm}"] = (cfg, "cpu")
        if torch.cuda.is_available():
            configs[f"cuda fp32 {arm}"] = (cfg, "cuda")
            configs[f"cuda bf16 {arm}"] = ({**cfg, "amp": True}, "cuda")
    trainers = {name: cls(cfg, data, device=dev, seed=0, iteration_steps=1) for name, (cfg, dev) in configs.items()}
    times = interleaved_step_times(trainers, steps=a.steps, warmup=a.warmup)
    batch = int(next(iter(trainers.values())).config["batch_size"])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(
        f"SGMA training step on {data.dataset} ({data.resolution}px, batch {batch}); {a.steps} steps, median after "
        f"{a.warmup}; CPU threads={torch.get_num_threads()}, {gpu}"
    )
    print_step_table(times, batch, width=28)


if __name__ == "__main__":
    main()
