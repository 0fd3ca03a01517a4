"""Time one CLAREL training step (forward, backward, per-tensor clipping, SGD) on CPU, and on CUDA with and without
bf16 autocast where a GPU is available; ratios to the CPU step are measured in the same run.

Every configuration is a :class:`zsltune.methods.clarel.CLAREL` trainer with identical initial weights (same seed) on
the same random CUB-like data: 2048-d features, 100 seen classes, 10 sentences of 30 tokens per image, a 5,000-word
vocabulary with a trainable 300-d embedding, and the paper's sizes (embedding 1024, BiLSTM 512, filters 128/256,
batch 32). Steps are interleaved across configurations so that load from other processes hits all alike; the
median is reported.

    PYTHONPATH=. python benchmarks/bench_clarel_step.py --steps 10
    PYTHONPATH=. python benchmarks/bench_clarel_step.py --filters 256 --steps 20     # the code's 256/512 filters
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from zsltune.data.protocol import StageData
from zsltune.methods.clarel import CLAREL
from zsltune.space import load_space


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=4700, help="training images per epoch (CUB val stage: 4,700)")
    p.add_argument("--classes", type=int, default=100, help="seen classes")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension D")
    p.add_argument("--vocab", type=int, default=5000)
    p.add_argument("--length", type=int, default=30, help="tokens per sentence")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--embed-dim", type=int, default=1024)
    p.add_argument("--lstm-units", type=int, default=512)
    p.add_argument("--filters", type=int, default=128)
    p.add_argument("--sentences", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU configuration (GPU ratios only)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def fake_stage(a: argparse.Namespace) -> StageData:
    rng = np.random.default_rng(a.seed)
    n, c = max(a.images, a.batch), a.classes + 1
    lengths = rng.integers(8, a.length + 1, size=(n, 10))  # (N, 10) words per sentence, padded to --length
    tokens = rng.integers(2, a.vocab, size=(n, 10, a.length)).astype(np.int32)
    tokens[np.arange(a.length)[None, None] >= lengths[..., None]] = 0
    x = np.maximum(rng.standard_normal((n, a.dim)), 0).astype(np.float32)  # ResNet-like non-negative features
    one = np.zeros((1, a.dim), np.float32)
    return StageData(
        dataset="bench",
        stage="val",
        attribute_kind="att",
        synthetic=True,
        attributes=rng.random((c, 8)).astype(np.float32),
        n_seen=a.classes,
        class_ids=np.arange(c),
        class_names=[str(i) for i in range(c)],
        x_train=x,
        y_train=rng.integers(0, a.classes, n),
        x_seen=one,
        y_seen=np.zeros(1, np.int64),
        x_unseen=one,
        y_unseen=np.full(1, a.classes),
        index_train=np.arange(n),
        index_seen=np.zeros(1, np.int64),
        index_unseen=np.zeros(1, np.int64),
        tokens_train=tokens,
        tokens_seen=tokens[:1],
        tokens_unseen=tokens[:1],
        vocab_size=a.vocab,
    )


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    data = fake_stage(a)
    cfg = {
        **load_space("clarel").defaults(data.dataset),  # the rest: the space's first trial, not the paper's
        "batch_size": a.batch,
        "embed_dim": a.embed_dim,
        "lstm_units": a.lstm_units,
        "filters": a.filters,
        "sentences": a.sentences,
    }
    configs: dict[str, tuple[str, bool]] = {} if a.no_cpu else {"cpu fp32": ("cpu", False)}
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        configs.update({"cuda fp32/tf32": ("cuda", False), "cuda bf16 autocast": ("cuda", True)})
    if not configs:
        raise SystemExit("nothing to time: --no-cpu and no CUDA device")
    trainers = {
        name: CLAREL({**cfg, "amp": amp}, data, device=dev, seed=a.seed, max_epochs=100)
        for name, (dev, amp) in configs.items()
    }
    n = a.warmup + a.steps
    idx = np.random.default_rng(a.seed + 1).integers(0, len(data.y_train), size=(n, a.batch))

    def step(tr: CLAREL, i: int) -> float:
        cuda = tr.device.type == "cuda"
        b = torch.as_tensor(idx[i], device=tr.device)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        terms = tr.losses(tr.x_train[b], tr.sample_sentences(tr.tok_train[b]), tr.y_train[b])
        tr.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        tr.clip_()
        tr.optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in trainers}
    for i in range(n):  # interleaved: each configuration once per round
        for name, tr in trainers.items():
            tr.model.train()
            dt = step(tr, i)
            if i >= a.warmup:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    steps_per_epoch = -(-a.images // a.batch)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(
        f"CLAREL train step: B={a.batch} x {a.sentences} sentences x {a.length} tokens, D={a.dim}, "
        f"E={a.embed_dim}, LSTM {a.lstm_units}/dir, filters {a.filters}/{2 * a.filters}, vocab {a.vocab}; "
        f"{a.steps} steps (median after {a.warmup} warm-up); CPU threads={torch.get_num_threads()}, {gpu}"
    )
    base = next(iter(med))
    for name, t in med.items():
        print(
            f"  {name:20s} {t * 1e3:9.2f} ms/step  {t * steps_per_epoch:8.1f} s/epoch "
            f"({steps_per_epoch} steps)  {med[base] / t:6.2f}x vs {base}"
        )


if __name__ == "__main__":
    main()
