"""TL-VSC's generator against the f-CLSWGAN reference on one stage: does the GAN remove the seen bias?

    PYTHONPATH=. python benchmarks/tlvsc_generator.py [--dataset demo] [--steps 3000] [--every 500]
        [--row NAME:key=v,key=v ...] [--clswgan] [--seeds 0]

Each ``--row`` is a TL-VSC trainer (:class:`zsltune.methods.tlvsc.TLVSC`) on the stage with the space's defaults
(``search_spaces/tlvsc.yaml``) and the row's overrides, trained for ``--steps`` generator iterations and evaluated
every ``--every``: uncalibrated H (with U, S), calibrated H, and the generator's health (``gen_own_nearest``: share
of seen classes whose generated mean is nearest its own real mean; ``gen_spread``: generated / real within-class
sd). ``--clswgan`` adds the frozen f-CLSWGAN reference (CPU variant) on the same stage and seeds, with the same
health figures of its generator. One JSON line per evaluation; a Markdown table of the last evaluations at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from zsltune.data import load_stage
from zsltune.space import load_space


def parse_row(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    over: dict[str, Any] = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        try:
            over[k] = int(v)
        except ValueError:
            try:
                over[k] = float(v)
            except ValueError:
                over[k] = v
    return name, over


def defaults() -> dict[str, Any]:
    return load_space("tlvsc").defaults("demo")


def run_tlvsc(stage: Any, over: dict[str, Any], *, seed: int, steps: int, every: int) -> list[dict[str, Any]]:
    from zsltune.methods import get_method

    cfg = {**defaults(), **over}
    t = get_method("tlvsc")(cfg, stage, seed=seed, max_epochs=steps // every, iteration_steps=every)
    rows, t0 = [], time.perf_counter()
    for _ in range(steps // every):
        losses = t.fit_epoch()
        r = t.evaluate() | reference_classifier(t, stage, seed=seed)
        rows.append({"step": t.step, "s": round(time.perf_counter() - t0, 1), **r,
                     **{k: losses[k] for k in ("cls", "w1", "spread") if k in losses}})  # fmt: skip
    return rows


def reference_classifier(t: Any, stage: Any, *, seed: int) -> dict[str, float]:
    """H of f-CLSWGAN's own final softmax fed with this generator's unseen features (``H_ref``): tells a generator
    shortfall from one of TL-VSC's recognition step."""
    from zsltune.baseline.clswgan import VARIANTS, supplied_scores
    from zsltune.metrics import gzsl_report

    v = VARIANTS["cpu"]
    with torch.no_grad():
        y = torch.arange(stage.n_seen, stage.num_classes).repeat_interleave(v.n_syn)
        z = torch.randn(y.shape[0], t.model.d_z, generator=torch.Generator().manual_seed(seed))
        x = t.model.generate(t.att[y], z)
        _, shift, scale = t._feat
        x = (x * scale + shift).numpy()  # back to the raw feature scale
    r = gzsl_report(*_pairs(supplied_scores(stage, x, v, seed=seed), stage), n_seen=stage.n_seen)
    return {"H_ref": r["H"], "U_ref": r["U"]}


def _pairs(scores: tuple[Any, Any], stage: Any) -> tuple[Any, Any, Any, Any]:
    return scores[0], stage.y_seen, scores[1], stage.y_unseen


def run_clswgan(stage: Any, *, seed: int) -> dict[str, Any]:
    """The frozen reference (its own two stages, the same random stream as `zsltune baseline clswgan`), then the
    health of its generator on a stream of its own."""
    from zsltune.baseline.clswgan import VARIANTS, fit_clswgan, fitted_scores
    from zsltune.layers.gan import generator_health
    from zsltune.metrics import gzsl_report

    v = VARIANTS["cpu"]
    t0 = time.perf_counter()
    f = fit_clswgan(stage, v, seed=seed)
    r = gzsl_report(*_pairs(fitted_scores(stage, f, v), stage), n_seen=stage.n_seen)
    att = torch.from_numpy(stage.attributes)
    ys = torch.arange(stage.n_seen).repeat_interleave(100)  # (S·100,)
    z = torch.randn(ys.shape[0], att.shape[1], generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        health = generator_health(f.x, f.y, f.g(torch.cat([z, att[ys]], 1)), ys, stage.n_seen)
    return {"step": v.iters, "s": round(time.perf_counter() - t0, 1), **r, **health}


KEYS = ("H", "U", "S", "H_ref", "H_cal", "zsl_top1", "gen_own_nearest", "gen_spread")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--stage", default="val", choices=["val", "test"])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--row", action="append", default=[], help="NAME:key=value,key=value (TL-VSC overrides)")
    p.add_argument("--clswgan", action="store_true", help="also the f-CLSWGAN reference (CPU variant)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    stage = load_stage(a.dataset, a.stage)
    final: dict[str, list[dict[str, Any]]] = {}
    jobs = [("f-CLSWGAN cpu", None)] if a.clswgan else []
    jobs += [parse_row(r) for r in a.row]
    for name, over in jobs:
        for seed in a.seeds:
            rows = [run_clswgan(stage, seed=seed)] if over is None else run_tlvsc(
                stage, over, seed=seed, steps=a.steps, every=a.every)  # fmt: skip
            for r in rows:
                print(json.dumps({"row": name, "seed": seed, **{k: round(float(v), 4) for k, v in r.items()}}),
                      flush=True)  # fmt: skip
            final.setdefault(name, []).append(rows[-1])
    print("\n| row | " + " | ".join(KEYS) + " | s |\n|---|" + "---|" * (len(KEYS) + 1))
    for name, rs in final.items():
        cells = []
        for k in (*KEYS, "s"):
            vals = [float(r.get(k, float("nan"))) for r in rs]
            m = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{m:.3f}" + (f" ± {sd:.3f}" if len(vals) > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
