"""Time one TL-VSC generator iteration (n_critic updates of the three critics, each with its gradient penalty, then
one G/I update) on CPU, and on CUDA in fp32, bf16 autocast and with torch.compile'd generator and inference network
where a GPU is available; ratios to the first configuration are measured in the same run.

Every configuration is a :class:`zsltune.methods.tlvsc.TLVSC` trainer on the same random AWA2-like stage (2048-d
ResNet-like features, 85 attributes, 27 seen + 13 unseen classes, 12,990 training images: the val stage) with the
same seed. Iterations are interleaved across configurations so that load from other processes hits all alike; the
median is reported, with the recognition fit (the per-iteration evaluation) timed once per configuration.

    PYTHONPATH=. python benchmarks/bench_tlvsc_step.py --quick
    PYTHONPATH=. python benchmarks/bench_tlvsc_step.py --hidden 4096 --n-critic 5      # the reference sizes
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks._bench_util import time_step
from zsltune.data.protocol import StageData
from zsltune.methods.tlvsc import TLVSC
from zsltune.space import load_space


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=12990, help="training images (AWA2 val stage: 12,990)")
    p.add_argument("--seen", type=int, default=27)
    p.add_argument("--unseen", type=int, default=13)
    p.add_argument("--dim", type=int, default=2048, help="feature dimension D")
    p.add_argument("--attributes", type=int, default=85)
    p.add_argument("--hidden", type=int, default=512, help="hidden width (space default 512; reference 4096)")
    p.add_argument("--n-critic", type=int, default=1, help="critic updates per G/I update (space default 1)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-syn", type=int, default=300, help="generated features per unseen class (recognition fit)")
    p.add_argument("--steps", type=int, default=20, help="timed generator iterations per configuration")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="5 timed iterations, hidden 256")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.hidden = 5, 256
    return a


def fake_stage(a: argparse.Namespace) -> StageData:
    rng = np.random.default_rng(a.seed)
    c = a.seen + a.unseen
    y = rng.integers(0, a.seen, a.images)
    x = np.maximum(rng.standard_normal((a.images, a.dim)), 0).astype(np.float32)
    xs, xu = x[:200], x[200:400]
    return StageData(
        dataset="bench", stage="val", attribute_kind="att", synthetic=True,
        attributes=rng.random((c, a.attributes)).astype(np.float32), n_seen=a.seen, class_ids=np.arange(c),
        class_names=[str(i) for i in range(c)], x_train=x, y_train=y, x_seen=xs, y_seen=y[:200], x_unseen=xu,
        y_unseen=rng.integers(a.seen, c, 200), index_train=np.arange(a.images), index_seen=np.arange(200),
        index_unseen=np.arange(200, 400),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    data = fake_stage(a)
    # the space's first trial for the rest (lr, alpha2, ...), not the trainer's paper defaults
    cfg = {
        **load_space("tlvsc").defaults(data.dataset),
        "hidden": a.hidden,
        "n_critic": a.n_critic,
        "batch_size": a.batch,
        "n_syn": a.n_syn,
    }
    configs: dict[str, dict[str, Any]] = {
        "cpu fp32, full": {"device": "cpu", "config": {**cfg, "ablation": "full"}},
        "cpu fp32, gen only": {"device": "cpu", "config": {**cfg, "ablation": "gen"}},
    }
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        configs.update(
            {
                "cuda fp32/tf32, full": {"device": "cuda", "config": {**cfg, "ablation": "full"}},
                "cuda bf16 autocast, full": {"device": "cuda", "config": {**cfg, "ablation": "full", "amp": True}},
                "cuda + compile G/I, full": {"device": "cuda", "config": {**cfg, "ablation": "full"}, "compile": True},
            }
        )
    trainers: dict[str, TLVSC] = {}
    for name, c in configs.items():
        tr = TLVSC(c["config"], data, device=c["device"], seed=a.seed, max_epochs=100, iteration_steps=1)
        if c.get("compile"):  # the critics' gradient penalty needs double backward, which compile does not take
            tr.model.G = torch.compile(tr.model.G)
            tr.model.I_hidden = torch.compile(tr.model.I_hidden)
        trainers[name] = tr

    times: dict[str, list[float]] = {k: [] for k in trainers}
    failed: dict[str, str] = {}
    for i in range(a.warmup + a.steps):  # interleaved: each configuration once per round
        for name, tr in trainers.items():
            if name in failed:
                continue
            try:
                dt = time_step(tr)
            except Exception as exc:  # e.g. torch.compile unsupported here: report, keep the others
                failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                continue
            if i >= a.warmup:
                times[name].append(dt)
    evals = {}
    for name, tr in trainers.items():
        if name not in failed:
            t0 = time.perf_counter()
            tr.fit_classifier()
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
            evals[name] = time.perf_counter() - t0
    med = {k: statistics.median(v) for k, v in times.items() if v}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(
        f"TL-VSC generator iteration: n_critic {a.n_critic} x (D1, D2, D3 + gradient penalties) + one G/I update; "
        f"B={a.batch}, D={a.dim}, P={a.attributes}, hidden {a.hidden}; {a.steps} iterations (median after "
        f"{a.warmup} warm-up); CPU threads={torch.get_num_threads()}, {gpu}"
    )
    base = next(iter(med))
    for name, t in med.items():
        print(
            f"  {name:26s} {t * 1e3:9.2f} ms/iteration  {med[base] / t:6.2f}x vs {base}; "
            f"recognition fit (n_syn {a.n_syn}) {evals[name]:.2f} s"
        )
    for name, why in failed.items():
        print(f"  {name:26s} failed: {why}")


if __name__ == "__main__":
    main()
