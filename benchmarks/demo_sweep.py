"""Does a short default sweep earn its compute on the demo? The space's defaults at 3 trial seeds (a grid, their
seed spread), then an 8-trial default sweep (TPE + ASHA, the defaults enqueued first, as a user gets it) at each
``--seed``; a sweep beats the defaults where its best validation H exceeds the defaults' mean by more than their
spread (max - min over the 3 seeds). The selection reads val-stage rows only (:func:`zsltune.analysis.best.best`).

    PYTHONPATH=. python -m benchmarks.demo_sweep --space crnet --seeds 0 1 2     # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np


def run(*, space: str = "crnet", seeds: list[int], num_samples: int = 8, repeats: int = 3) -> dict[str, Any]:
    from zsltune.analysis.best import best
    from zsltune.sweep import SweepOptions, run_sweep

    out: dict[str, Any] = {"space": space, "sweeps": []}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        res = run_sweep(
            SweepOptions(space=space, dataset="demo", repeats=repeats, storage=tmp, name="defaults", quiet=True)
        )
        table = best(res.sweep_dir, top=repeats)
        by = table.attrs["by"]
        d = table[f"val/{by}"].to_numpy(np.float64)
        out |= {"metric": by, "defaults": d.tolist(), "defaults_mean": float(d.mean()),
                "defaults_spread": float(d.max() - d.min()), "defaults_s": time.time() - t0}  # fmt: skip
        for seed in seeds:
            t0 = time.time()
            res = run_sweep(
                SweepOptions(space=space, dataset="demo", num_samples=num_samples, seed=seed, storage=tmp,
                             name=f"sweep-{seed}", quiet=True)
            )  # fmt: skip
            top = best(res.sweep_dir, top=1)
            v = float(top[f"val/{by}"].iloc[0])
            margin = v - out["defaults_mean"]
            out["sweeps"].append({"seed": seed, "best": v, "margin": margin, "beats": margin > out["defaults_spread"],
                                  "config": str(top["config"].iloc[0]), "wall_s": time.time() - t0})  # fmt: skip
    lines = [
        f"{space} defaults at {repeats} trial seeds: val {out['metric']} "
        + ", ".join(f"{x:.3f}" for x in out["defaults"])
        + f" (mean {out['defaults_mean']:.3f}, spread {out['defaults_spread']:.3f}; {out['defaults_s']:.0f} s)"
    ]
    for s in out["sweeps"]:
        lines.append(
            f"--seed {s['seed']}: {num_samples}-trial sweep best {s['best']:.3f} (mean + {s['margin']:+.3f}: "
            + ("beats" if s["beats"] else "does not beat")
            + f" the spread; {s['wall_s']:.0f} s) {s['config']}"
        )
    wins = sum(s["beats"] for s in out["sweeps"])
    lines.append(f"{wins} of {len(out['sweeps'])} sweeps beat the defaults by more than their seed spread")
    out["text"] = "\n".join(lines)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="crnet")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=8)
    a = p.parse_args(argv)
    print(run(space=a.space, seeds=a.seeds, num_samples=a.num_samples)["text"])


if __name__ == "__main__":
    main()
