"""Time one CRnet training step: factorised relation (B + C_b rows of FC1) vs naive concatenation (B·C_b rows).

Both paths run the same code (``zsltune.methods.crnet.crnet_loss``) on models with identical initial weights, on the
same batches, interleaved step by step so that load from other processes hits both alike. Defaults are AwA2-like:
D=2048, P=85, 40 seen classes, hidden 2048, batch 32, K=3, 23,527 trainval images for the per-epoch projection.

    PYTHONPATH=. python benchmarks/bench_crnet_step.py --steps 20
    PYTHONPATH=. python benchmarks/bench_crnet_step.py --pairs all --device cuda
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F

from zsltune.methods.crnet import CRnetNet, crnet_loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=23527, help="training images per epoch (AwA2 trainval: 23,527)")
    p.add_argument("--classes", type=int, default=40, help="seen classes")
    p.add_argument("--attributes", type=int, default=85, help="attribute dimension P")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension D")
    p.add_argument("--hidden", type=int, default=2048, help="relation hidden units H")
    p.add_argument("--batch", type=int, default=32, help="images per step B")
    p.add_argument("--K", type=int, default=3, help="field centres / experts")
    p.add_argument("--steps", type=int, default=50, help="timed steps per path (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per path first")
    p.add_argument(
        "--pairs",
        choices=("batch", "all"),
        default="batch",
        help="batch: anchors of the batch's distinct classes (RN code); all: every seen class (B·C pairs)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    return args


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(a.seed)
    att = F.normalize(torch.rand(a.classes, a.attributes), dim=1).to(dev)  # (C, P)
    k = min(a.K, a.classes)
    centres = att[torch.randperm(a.classes)[:k]]  # (K, P): stands in for k-means, irrelevant to timing
    fact = CRnetNet(centres, a.dim, a.hidden).to(dev)
    naive = copy.deepcopy(fact)  # same initial weights
    # the trainer's optimizer: Adam with the paper's α, β (AwA) as weight_decay on the weights
    opts = {False: fact.make_optimizer(1e-5, 1e-5, 1e-4), True: naive.make_optimizer(1e-5, 1e-5, 1e-4)}
    models = {False: fact, True: naive}
    n = a.warmup + a.steps
    xs = torch.relu(torch.randn(n, a.batch, a.dim, device=dev))  # (steps, B, D) ResNet-like non-negative features
    ys = torch.randint(0, a.classes, (n, a.batch), device=dev)  # (steps, B)

    def step(is_naive: bool, i: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = crnet_loss(models[is_naive], att, xs[i], ys[i], n_seen=a.classes, pairs=a.pairs, naive=is_naive)
        opts[is_naive].zero_grad(set_to_none=True)
        loss.backward()
        opts[is_naive].step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(n):  # interleaved: factorised, naive, factorised, ...
        for is_naive in (False, True):
            dt = step(is_naive, i)
            if i >= a.warmup:
                times[is_naive].append(dt)
    med = {key: statistics.median(v) for key, v in times.items()}
    c_b = statistics.mean(len(torch.unique(y)) for y in ys) if a.pairs == "batch" else float(a.classes)
    steps_per_epoch = math.ceil(a.images / a.batch)
    print(
        f"device={dev} threads={torch.get_num_threads()} pairs={a.pairs} B={a.batch} C_b~{c_b:.1f} "
        f"D={a.dim} P={a.attributes} H={a.hidden} K={k} steps={a.steps} (median after {a.warmup} warm-up)"
    )
    for key, label in ((False, "factorised"), (True, "naive concat")):
        print(
            f"  {label:13s} {med[key] * 1e3:9.2f} ms/step   {med[key] * steps_per_epoch:8.1f} s/epoch "
            f"({steps_per_epoch} steps for {a.images} images)"
        )
    print(f"  speed-up naive/factorised: {med[True] / med[False]:.2f}x")


if __name__ == "__main__":
    main()
