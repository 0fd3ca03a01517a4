"""Engine overhead (reporting, checkpointing, Parquet) as a share of epoch time, on AWA2-sized CRnet.

Target: the engine adds under 5% to each epoch. One zsltune sweep runs in this process (``run_sweep``: FIFO, 2
concurrent trials x 1 CPU, ``--max-epochs`` epochs each, K=3 / hidden 2048 / batch 32, synthetic AWA2 val stage,
a checkpoint every epoch as shipped), with the sweep module's ``ParquetCallback`` swapped for a subclass that
records when each result reaches the driver and how long the callback took. Per trial-epoch (the first epoch of
each trial is left out: it includes the trial's set-up):

- ``train_s + eval_s``: the work, timed inside the trainable (``run_trial``);
- ``epoch_s`` (Tune's ``time_this_iter_s``, in epochs.parquet): the trainable's time between two reports: the work
  plus ``state_dict`` + ``torch.save`` of the checkpoint + ``tune.report`` (which persists the checkpoint to the
  sweep's storage);
- the driver's interval: wall time between two consecutive results of the trial arriving at the driver's callback.

Overhead = interval - (train_s + eval_s), as % of the interval; likewise for ``epoch_s``. Also, timed directly in
this process: ``torch.save`` of a CRnet trainer's checkpoint (and its size, and copying it once more as Ray's
persistence does), ``ResultsSink.write_s`` (time the driver spent writing Parquet) as % of the sweep's wall time,
and one ``ResultsSink.flush`` as the epochs table grows (it rewrites both files in full each time).

    python benchmarks/bench_engine_overhead.py             # 2 trials x 4 epochs: about 4 minutes
    python benchmarks/bench_engine_overhead.py --quick     # smoke check (batch 512, 2 x 3 short epochs), about 2 min
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench_util import default_data_root, fixed_size_space, loadavg, machine, mib  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-epochs", type=int, default=4, help="epochs per trial (the first is not counted)")
    p.add_argument("--trials", type=int, default=2, help="trials, all concurrent, 1 CPU each")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-root", default=default_data_root(), help="xlsa17 root holding AWA2/ ($ZSLTUNE_DATA)")
    p.add_argument("--quick", action="store_true", help="smoke check: batch 512, 3 epochs (overhead % inflated)")
    p.add_argument("--keep", default=None, help="keep the sweep folder in this directory")
    a = p.parse_args(argv)
    if a.quick:
        a.batch_size, a.max_epochs = 512, 3
    return a


def checkpoint_cost(data_root: str, batch_size: int, work: Path, reps: int = 3) -> dict:
    """torch.save of a CRnet trainer's checkpoint as run_trial writes it, the file size, and one more copy."""
    import torch

    from zsltune.data import load_stage
    from zsltune.methods import get_method
    from zsltune.space import load_space

    torch.set_num_threads(1)
    data = load_stage("AWA2", "val", data_root=data_root)
    n = 2 * batch_size  # a short epoch on a slice: the checkpoint does not depend on the data, Adam's state does
    data = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
    # the sweep's trial: the space's first trial with the sweep's fixed sizes (the paper's K and hidden)
    config = {**load_space("crnet").defaults(data.dataset), "K": 3, "hidden": 2048, "batch_size": batch_size}
    trainer = get_method("crnet")(config, data, max_epochs=1)
    trainer.fit_epoch()
    save, copy = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(dir=work) as d, tempfile.TemporaryDirectory(dir=work) as d2:
            t0 = time.perf_counter()
            torch.save({"trainer": trainer.state_dict(), "device_s": 0.0, "restores": 0}, Path(d) / "trainer.pt")
            t1 = time.perf_counter()
            shutil.copytree(d, Path(d2) / "ckpt")
            t2 = time.perf_counter()
            size = (Path(d) / "trainer.pt").stat().st_size
        save.append(t1 - t0)
        copy.append(t2 - t1)
    return {"save_s": statistics.median(save), "copy_s": statistics.median(copy), "bytes": size}


def flush_scaling(work: Path, rows: tuple[int, ...] = (100, 1000, 10000)) -> dict[int, float]:
    """Seconds of one ResultsSink.flush with ``n`` epoch rows (30 metrics each) already in the sink."""
    from zsltune.results import ResultsSink

    out = {}
    for n in rows:
        sink = ResultsSink(work / f"sink-{n}", metric="H", min_interval_s=0.0)
        trials = max(1, n // 30)
        for t in range(trials):
            sink.start_trial(f"t{t}", config={"lr": 1e-5, "K": 3, "hidden": 2048})
            for e in range(1, n // trials + 1):
                sink.add_epoch(f"t{t}", e, {f"m{i}": 0.1 * i + e for i in range(30)})
        sink.flush(force=True)
        sink.add_epoch("t0", 1, {"H": 0.5})
        t0 = time.perf_counter()
        sink.flush(force=True)
        out[n] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    import pandas as pd

    import zsltune.sweep as zs
    from zsltune.data import resolve_dataset

    resolve_dataset("AWA2", data_root=a.data_root, quiet=True)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench_engine_overhead  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(
        f"{'[--quick: rough numbers] ' if a.quick else ''}CRnet K=3 hidden 2048 batch {a.batch_size}, "
        f"{a.trials} concurrent trials x 1 CPU x {a.max_epochs} epochs, checkpoint every epoch; load {loadavg()}",
        flush=True,
    )

    runner = sys.modules[zs.run_sweep.__module__]
    base_cb = runner.ParquetCallback
    arrivals: list[dict] = []
    sinks: list = []

    class TimedParquetCallback(base_cb):  # records arrivals; the Parquet work itself is unchanged
        def setup(self, **info):
            super().setup(**info)
            sinks.append(self.sink)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            t = time.time()
            c0 = time.perf_counter()
            super().on_trial_result(iteration, trials, trial, result, **info)
            arrivals.append(
                {
                    "trial_id": trial.trial_id,
                    "epoch": int(result["epoch"]),
                    "arrived": t,
                    "callback_s": time.perf_counter() - c0,
                }
            )

    runner.ParquetCallback = TimedParquetCallback
    t0 = time.time()
    res = zs.run_sweep(
        zs.SweepOptions(
            space=str(fixed_size_space(work)),
            dataset="AWA2",
            data_root=a.data_root,
            scheduler="fifo",
            num_samples=a.trials,
            max_epochs=a.max_epochs,
            max_concurrent=a.trials,
            cpus_per_trial=1.0,
            quiet=True,
            storage=str(work / "sweeps"),
            name="overhead",
            overrides={"K": 3, "hidden": 2048, "batch_size": a.batch_size},  # the paper's sizes, as documented
        )
    )
    wall = time.time() - t0
    runner.ParquetCallback = base_cb

    ep = pd.read_parquet(res.epochs_path)
    arr = pd.DataFrame(arrivals).sort_values(["trial_id", "epoch"])
    arr["interval_s"] = arr.groupby("trial_id")["arrived"].diff()
    df = ep.merge(arr, on=["trial_id", "epoch"])
    df = df[df["epoch"] >= 2].copy()
    if df.empty:
        raise SystemExit("no epoch after the first: raise --max-epochs")
    df["work_s"] = df["train_s"] + df["eval_s"]
    df["in_trial_over_s"] = df["epoch_s"] - df["work_s"]
    df["driver_over_s"] = df["interval_s"] - df["work_s"]
    write_s = sum(s.write_s for s in sinks)

    ck = checkpoint_cost(a.data_root, a.batch_size, work)
    scaling = flush_scaling(work)

    med = df[
        ["train_s", "eval_s", "work_s", "epoch_s", "interval_s", "in_trial_over_s", "driver_over_s", "callback_s"]
    ].median()
    print(f"\nper trial-epoch (median of {len(df)} epochs >= 2; all {len(ep)} epochs in epochs.parquet):")
    print(f"  train {med.train_s:.2f} s + eval {med.eval_s:.2f} s = work {med.work_s:.2f} s")
    print(
        f"  trainable's epoch_s (work + checkpoint + report) {med.epoch_s:.2f} s -> overhead "
        f"{med.in_trial_over_s:.2f} s = {100 * med.in_trial_over_s / med.epoch_s:.2f}% of epoch_s"
    )
    print(
        f"  interval between results at the driver {med.interval_s:.2f} s -> overhead {med.driver_over_s:.2f} s = "
        f"{100 * med.driver_over_s / med.interval_s:.2f}% of the epoch   (target < 5%)"
    )
    worst = df["driver_over_s"] / df["interval_s"]
    print(
        f"  worst epoch: {100 * worst.max():.2f}%; per-epoch driver overhead %: "
        f"{', '.join(f'{100 * v:.2f}' for v in worst)}"
    )
    print(
        f"checkpoint (timed here, 1 thread): torch.save {ck['save_s']:.2f} s for {mib(ck['bytes'])}, "
        f"one more copy of it (Ray persisting to storage) {ck['copy_s']:.2f} s; together "
        f"{100 * (ck['save_s'] + ck['copy_s']) / med.interval_s:.2f}% of the epoch"
    )
    print(
        f"Parquet: ResultsSink.write_s {write_s:.2f} s over the {wall:.0f} s sweep ({100 * write_s / wall:.2f}%); "
        f"driver callback {1e3 * med.callback_s:.0f} ms per result (median)"
    )
    print(
        "  one flush with N epoch rows in the sink: "
        + ", ".join(f"{n:,} rows {1e3 * s:.0f} ms" for n, s in scaling.items())
    )
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"sweep: {res.sweep_dir}")


if __name__ == "__main__":
    main()
