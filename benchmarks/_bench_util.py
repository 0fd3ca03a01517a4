"""Helpers shared by the sweep benchmarks (not a benchmark itself)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def default_data_root() -> str:
    """``$ZSLTUNE_DATA``, else ``../shared/data/xlsa17`` beside the checkout (where CI keeps the real class side)."""
    return os.environ.get("ZSLTUNE_DATA", str(REPO.parent / "shared" / "data" / "xlsa17"))


def machine() -> str:
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {cores} cores, {mem:.0f} GiB, {gpu}, torch {torch.__version__}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_logged(
    cmd: list[str], log: Path, *, env: dict | None = None, timeout: float | None = None, retries: int = 1
) -> tuple[float, float, int]:
    """Run ``cmd`` with output to ``log``; returns (start, end) epoch seconds and the exit code.

    A failed run is retried (``retries`` times): on a shared machine someone's ``ray stop --force`` kills every
    local Ray cluster, ours included; the failure is reported and its log kept as ``<log>.failed``.
    """
    for attempt in range(retries + 1):
        with open(log, "w") as f:
            t0 = time.time()
            rc = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO, timeout=timeout
            ).returncode
            t1 = time.time()
        if rc == 0:
            return t0, t1, rc
        text = log.read_text()
        killed = "Raylet is terminated" in text or "marked dead" in text
        sys.stderr.write(
            f"command failed (exit {rc}{', Ray killed from outside?' if killed else ''}): "
            f"{' '.join(cmd)}\n--- last lines of {log} ---\n"
        )
        sys.stderr.write("".join(text.splitlines(keepends=True)[-15:]))
        log.rename(log.with_suffix(log.suffix + ".failed"))
        if attempt < retries:
            sys.stderr.write("retrying once\n")
    return t0, t1, rc


# ---- memory of processes, from /proc (psutil is not a dependency) ------------------------------------------------
def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss, Pss, USS (Private_Clean + Private_Dirty) and Shared in bytes, or {} if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    kb: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":"):
            kb[parts[0][:-1]] = int(parts[1])
    return {
        "rss": kb.get("Rss", 0) * 1024,
        "pss": kb.get("Pss", 0) * 1024,
        "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024,
        "shared": (kb.get("Shared_Clean", 0) + kb.get("Shared_Dirty", 0)) * 1024,
    }


_CODE = re.compile(r"\.so(\.[\d.]+)?$|/python[\d.]*$")


def data_pss(pid: int) -> int:
    """PSS (bytes) of ``pid``'s mappings other than shared libraries and the interpreter: a library's PSS moves with
    how many other processes on the machine map it (another test's workers), a process's data pages do not."""
    total, counted = 0, True
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in lines:
        head = line.split()
        if head and not head[0].endswith(":"):  # a mapping's header: address range, perms, offset, dev, inode, path
            counted = not (len(head) >= 6 and _CODE.search(head[-1]))
        elif head and head[0] == "Pss:" and counted:
            total += int(head[1]) * 1024
    return total


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def pids_matching(*needles: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            c = cmdline(int(p.name))
            if any(n in c for n in needles):
                out.append(int(p.name))
    return out


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def fixed_size_space(
    out_dir: Path, method: str = "crnet", fixed: tuple[str, ...] = ("K", "hidden", "batch_size")
) -> Path:
    """``search_spaces/<method>.yaml`` without the size parameters, written to ``out_dir``.

    Every trial then has the sweep's ``overrides`` for them, else the trainer's declared defaults (the paper's: K=3
    on AWA2, hidden 2048, batch 32; not the space's CPU-sized first trial, hidden 1024), so all trials cost the same;
    the benchmarks here pass K, hidden and batch_size in ``overrides`` explicitly. (``SweepOptions.overrides`` alone
    does not fix a parameter that is in the space: the sampled value wins in the trial; see benchmarks/README.md.)
    """
    import yaml

    spec = yaml.safe_load((REPO / "search_spaces" / f"{method}.yaml").read_text())
    for name in fixed:
        spec["parameters"].pop(name, None)
        for profile in spec.get("profiles", {}).values():  # a profile may only name the space's parameters
            profile.pop(name, None)
    out = Path(out_dir) / f"{method}-fixed-size.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


class LoadMonitor:
    """Mean 1-minute load average while a block runs (our own 2 trials + Ray account for about 2.5 of it)."""

    def __init__(self, period: float = 5.0) -> None:
        import threading

        self.period, self.values = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.values.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")


def time_step(trainer: object) -> float:
    """Seconds of one ``train_steps(1)``, CUDA synchronised around it."""
    import time

    import torch

    cuda = trainer.device.type == "cuda"  # type: ignore[attr-defined]
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.train_steps(1)  # type: ignore[attr-defined]
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved_step_times(trainers: dict, *, steps: int, warmup: int) -> dict:
    """Seconds of :func:`time_step` per trainer, the trainers' steps interleaved (one of each, then again) so load
    from other processes falls on all of them alike; the first ``warmup`` rounds are dropped. Returns
    {key: [seconds] x steps}."""
    times: dict = {k: [] for k in trainers}
    for s in range(warmup + steps):
        for key, t in trainers.items():
            dt = time_step(t)
            if s >= warmup:
                times[key].append(dt)
    return times


def print_step_table(times: dict, batch: int, *, width: int = 28, unit: str = "images") -> None:
    """One line per arm: median ms/step, ``unit``/s at ``batch`` a step, and the ratio to the first arm."""
    import statistics

    base = None
    for name, ts in times.items():
        med = statistics.median(ts)
        base = base or med
        print(f"  {name:{width}s} {med * 1e3:8.1f} ms/step  {batch / med:8.1f} {unit}/s  {base / med:5.2f}x vs first")
