"""N concurrent trials on one node hold about one copy of the dataset, not N: memory and wall time, side by side.

Each mode runs the same zsltune CRnet sweep (``run_sweep``, FIFO, ``--n`` trials, all concurrent, ``--max-epochs``
epochs each, K=3 / hidden 2048 / batch 32 for every trial) on synthetic AWA2 (37,322 x 2048 features; the val stage
the trials use is 184 MiB), in its own subprocess with its own local Ray:

- ``shared``: as shipped: the driver loads the stage once and ``tune.with_parameters`` puts it in the object store;
  trials read it zero-copy;
- ``per-trial``: the dataset loaded per trial: the driver shares only where the data is, and every trial calls
  ``zsltune.data.load_stage`` itself (``scipy.io.loadmat`` of the .mat files, then the val-stage cut) before running
  zsltune's own ``run_trial`` (zsltune's ``run_trial``/``load_stage`` are swapped, in zsltune.sweep.driver and
  zsltune.data, for this mode);
- ``base``: like ``shared`` but on 6,000 of the 12,990 training images and 64 + 64 eval images (same model,
  optimizer, batch, epochs and checkpoints, shorter epochs): the trial workers' USS here is what they hold without
  the dataset (the slice is in the store, not in USS); it is subtracted to count copies.

While a mode runs, a thread of its driver samples twice a second, from /proc/PID/smaps_rollup, the USS (private
pages), PSS and RSS of every trial worker (``ray::ImplicitFunc`` processes under this driver), the object store's
used bytes (``memory_summary``), and the driver's own USS. Reported per mode: the median over the
later half of the samples taken while all N trials were running and none had ended (set-up and imports done;
training dominates, so this is the training-time footprint), and the peak of the sum. (``--quick`` trains with
batch 512, whose per-step buffers make the samples noisy: smoke check only.) "Held" = sum of trial-worker USS +
object-store bytes: shared pages (the store) are counted once.
Copies of the dataset = (held - workers' USS in ``base``) / stage bytes. The sweep's wall time (``run_sweep`` call) is
compared between ``shared`` and ``per-trial`` in the same run.

    python benchmarks/bench_shared_data.py                 # N=2, 1 epoch per trial: about 7 minutes
    python benchmarks/bench_shared_data.py --n 2 4         # also N=4 trials at 0.5 CPU each
    python benchmarks/bench_shared_data.py --quick         # smoke check (batch 256), under 2 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_util import (  # noqa: E402
    cmdline,
    default_data_root,
    fixed_size_space,
    loadavg,
    machine,
    mib,
    run_logged,
    smaps_rollup,
)

MODES = ("base", "shared", "per-trial")
TRIAL_PROC = "ray::ImplicitFunc"  # Tune's actor for function trainables, as its process title


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[2], help="concurrent trials (N=4 runs at 0.5 CPU each)")
    p.add_argument("--max-epochs", type=int, default=1, help="epochs per trial")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-root", default=default_data_root(), help="xlsa17 root holding AWA2/ ($ZSLTUNE_DATA)")
    p.add_argument("--quick", action="store_true", help="smoke check: N=2, batch 512 (short epochs)")
    p.add_argument("--keep", default=None, help="keep logs and sweep folders in this directory")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # internal: run one mode
    p.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.batch_size = [2], 512
    return a


# ---- one mode, in its own process ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StageRef:
    """What the driver shares in ``per-trial`` mode instead of the data: how each trial loads it."""

    dataset: str
    stage: str
    synthetic: bool
    kwargs: dict  # load_stage's keyword arguments (data_root, attributes, seed, ...)
    # what the driver's checks read (zsltune.data.sources.DataSource.info): AWA2's val stage
    n_seen: int = 27
    num_classes: int = 40
    y_train: tuple = ()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _store_bytes() -> float | None:
    import ray

    if not ray.is_initialized():
        return None
    from ray._private.internal_api import memory_summary

    # our own cluster's address: other local Ray clusters (tests of colleagues) make the default lookup ambiguous
    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    for line in text.splitlines():
        if line.startswith("Plasma memory usage"):
            return float(line.split()[3]) * 2**20  # "Plasma memory usage 184 MiB, 1 objects, ..."
    return 0.0


def _sampler(samples: list[dict], stop: threading.Event, period: float = 0.5) -> None:
    me = os.getpid()
    while not stop.is_set():
        t = time.time()
        workers = {pid: smaps_rollup(pid) for pid in _descendants(me) if cmdline(pid).startswith(TRIAL_PROC)}
        err = None
        try:
            store = _store_bytes()
        except Exception as e:  # Ray starting or shutting down
            store, err = None, f"{type(e).__name__}: {e}"[:300]
        samples.append(
            {
                "t": t,
                "workers": {str(k): v for k, v in workers.items() if v},
                "store": store,
                "driver_uss": smaps_rollup(me).get("uss", 0),
                "error": err,
            }
        )
        stop.wait(period)


def run_mode(a: argparse.Namespace) -> None:
    import numpy as np

    import zsltune.data as runner_data  # the features source calls zsltune.data.load_stage at load time
    import zsltune.sweep as zs
    import zsltune.sweep.driver as runner_driver  # the Tune job's trainable: driver.run_trial
    from zsltune.data import load_stage, resolve_dataset

    real_run_trial, real_load_stage = runner_driver.run_trial, runner_data.load_stage
    info: dict = {"mode": a.mode, "trials": a.trials}

    if a.mode == "per-trial":

        def load_ref(name, stage, **kwargs):  # the driver loads nothing
            resolve_dataset(name, data_root=kwargs.get("data_root"), seed=kwargs.get("seed", 0), quiet=True)
            return StageRef(dataset=name, stage=stage, synthetic=True, kwargs=kwargs)

        def run_trial_loading(config, data, spec):  # each trial loads the dataset itself
            from zsltune.data import load_stage as load

            return real_run_trial(config, load(data.dataset, data.stage, **data.kwargs), spec)

        runner_data.load_stage, runner_driver.run_trial = load_ref, run_trial_loading
    elif a.mode == "base":

        def load_slice(*args, **kwargs):
            d = real_load_stage(*args, **kwargs)
            cut = {
                k: np.ascontiguousarray(getattr(d, k)[:n])
                for k, n in (
                    ("x_train", 6000),
                    ("y_train", 6000),
                    ("index_train", 6000),
                    ("x_seen", 64),
                    ("y_seen", 64),
                    ("index_seen", 64),
                    ("x_unseen", 64),
                    ("y_unseen", 64),
                    ("index_unseen", 64),
                )
            }
            return dataclasses.replace(d, **cut)

        runner_data.load_stage = load_slice

    load_fn = runner_data.load_stage
    driver_load: list[float] = []

    def timed_load(*args, **kwargs):  # how long the driver spends loading before Ray starts
        t = time.perf_counter()
        out = load_fn(*args, **kwargs)
        driver_load.append(time.perf_counter() - t)
        return out

    runner_data.load_stage = timed_load
    stage = load_stage("AWA2", "val", data_root=a.data_root)
    info["stage_bytes"] = stage.nbytes
    info["full_features_bytes"] = 37322 * 2048 * 4
    del stage
    cpus = 1.0 if a.trials <= 2 else 2.0 / a.trials
    space = fixed_size_space(Path(a.work))
    samples: list[dict] = []
    stop = threading.Event()
    th = threading.Thread(target=_sampler, args=(samples, stop), daemon=True)
    th.start()
    t0 = time.time()
    res = zs.run_sweep(
        zs.SweepOptions(
            space=str(space),
            dataset="AWA2",
            data_root=a.data_root,
            scheduler="fifo",
            num_samples=a.trials,
            max_epochs=a.max_epochs,
            cpus_per_trial=cpus,
            max_concurrent=a.trials,
            quiet=True,
            storage=str(Path(a.work) / "sweeps"),
            name=f"{a.mode}-{a.trials}",
            overrides={"K": 3, "hidden": 2048, "batch_size": a.batch_size},  # the paper's sizes, as documented
        )
    )
    t1 = time.time()
    stop.set()
    th.join()
    import pandas as pd

    ep = pd.read_parquet(res.epochs_path) if res.epochs_path.is_file() else pd.DataFrame()
    ended = pd.read_parquet(res.trials_path)["ended_at"].dropna()
    info["first_trial_end"] = float(ended.min()) if len(ended) else None
    first = ep[ep["epoch"] == 1] if len(ep) else ep
    setup = (first["epoch_s"] - first["train_s"] - first["eval_s"]).tolist() if len(ep) else []
    info.update(
        wall_s=t1 - t0,
        t0=t0,
        samples=samples,
        counts=res.counts,
        epochs=len(ep),
        driver_load_s=sum(driver_load),
        trial_setup_s=setup,
        train_s=ep["train_s"].tolist() if len(ep) else [],
        cpus_per_trial=cpus,
        pids=sorted({str(p) for s in samples for p in s["workers"]}),
    )
    Path(a.work, f"{a.mode}-{a.trials}.json").write_text(json.dumps(info))


# ---- the orchestrator ---------------------------------------------------------------------------------------------
def summarise(info: dict) -> dict:
    """Median over the later half of the samples with all N trials running (before any ended), and the peak."""
    n = info["trials"]
    end = info["first_trial_end"] or float("inf")  # after a trial ends its worker idles, data released
    full = [s for s in info["samples"] if len(s["workers"]) >= n and s["store"] is not None and s["t"] < end - 1]
    if not full:
        raise SystemExit(f"{info['mode']}: never saw {n} trial workers at once; see its log")
    full = full[len(full) // 2 :]  # the later half: workers set up (imports, data loading in per-trial mode)

    def tot(s: dict, key: str) -> float:
        return sum(w[key] for w in s["workers"].values())

    held = [tot(s, "uss") + s["store"] for s in full]
    return {
        "uss": statistics.median(tot(s, "uss") for s in full),
        "pss": statistics.median(tot(s, "pss") for s in full),
        "rss": statistics.median(tot(s, "rss") for s in full),
        "store": statistics.median(s["store"] for s in full),
        "held": statistics.median(held),
        "peak_held": max(tot(s, "uss") + (s["store"] or 0) for s in info["samples"] if s["workers"]),
        "driver_uss": statistics.median(s["driver_uss"] for s in full),
        "samples": len(full),
        "wall_s": info["wall_s"],
        "epochs": info["epochs"],
        "driver_load_s": info["driver_load_s"],
        "setup_s": statistics.median(info["trial_setup_s"] or [float("nan")]),
        "train_s": statistics.median(info["train_s"] or [float("nan")]),
    }


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.mode:
        run_mode(a)
        return
    from zsltune.data import resolve_dataset

    resolve_dataset("AWA2", data_root=a.data_root, quiet=True)  # generate the synthetic features outside timings
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_shared_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench_shared_data  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(
        f"{'[--quick: rough numbers] ' if a.quick else ''}CRnet K=3 hidden 2048 batch {a.batch_size}, "
        f"{a.max_epochs} epoch(s) per trial, FIFO, all trials concurrent"
    )
    for n in a.n:
        rows = {}
        for mode in MODES:
            print(f"N={n} {mode}: running (load {loadavg()})", flush=True)
            cmd = [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--trials",
                str(n),
                "--work",
                str(work),
                "--max-epochs",
                str(a.max_epochs),
                "--batch-size",
                str(a.batch_size),
                "--data-root",
                a.data_root,
            ]
            _, _, rc = run_logged(cmd, work / f"{mode}-{n}.log")
            if rc:
                raise SystemExit(rc)
            info = json.loads((work / f"{mode}-{n}.json").read_text())
            rows[mode] = summarise(info)
        size = info["stage_bytes"]
        base = rows["base"]["uss"]
        cpus = info["cpus_per_trial"]
        print(
            f"\nN={n} trials x {cpus:g} CPU; dataset = the val stage the trials use, {mib(size)} "
            f"(full AWA2 features {mib(info['full_features_bytes'])})"
        )
        print(
            f"  {'mode':10s} {'workers USS':>12s} {'+ store':>10s} {'= held':>10s} {'peak held':>10s} "
            f"{'copies':>7s} {'workers PSS':>12s} {'driver USS':>11s} {'wall':>7s}"
        )
        for mode, r in rows.items():
            copies = "" if mode == "base" else f"{(r['held'] - base) / size:.2f}"
            print(
                f"  {mode:10s} {mib(r['uss']):>12s} {mib(r['store']):>10s} {mib(r['held']):>10s} "
                f"{mib(r['peak_held']):>10s} {copies:>7s} {mib(r['pss']):>12s} {mib(r['driver_uss']):>11s} "
                f"{r['wall_s']:6.0f}s"
            )
        sh, pt = rows["shared"], rows["per-trial"]
        print(
            f"  copies of the dataset held by {n} trials: shared {(sh['held'] - base) / size:.2f}, "
            f"per-trial {(pt['held'] - base) / size:.2f} (ideal: 1 and {n}); per-trial / shared held memory "
            f"above base: {(pt['held'] - base) / max(sh['held'] - base, 1):.2f}x"
        )
        print(
            f"  the driver holds its own copy too while the sweep runs: driver USS shared - per-trial = "
            f"{mib(sh['driver_uss'] - pt['driver_uss'])}"
        )
        print(
            f"  sweep wall time ({n} trials x {a.max_epochs} epoch): shared {sh['wall_s']:.1f} s, per-trial "
            f"{pt['wall_s']:.1f} s, per-trial / shared = {pt['wall_s'] / sh['wall_s']:.3f}"
        )
        print(
            f"    of which: driver loading before Ray starts: shared {sh['driver_load_s']:.1f} s, per-trial "
            f"{pt['driver_load_s']:.1f} s; each trial's set-up before its first epoch (median; data + trainer, "
            f"plus the first report): shared {sh['setup_s']:.1f} s, per-trial {pt['setup_s']:.1f} s; "
            f"train_s per epoch (median): shared {sh['train_s']:.1f} s, per-trial {pt['train_s']:.1f} s "
            f"(a difference here is load from other processes, not the data path)"
        )
    print(f"logs: {work}" if a.keep else "")


if __name__ == "__main__":
    main()
