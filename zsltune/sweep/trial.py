"""The Tune trainable: one method trainer per trial, one Tune iteration per epoch, a checkpoint per epoch."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from zsltune.data.protocol import Bundle
from zsltune.errors import DIVERGED, ConfigError, TrialDiverged, TrialOutOfMemory
from zsltune.methods import Trainer, get_method, import_method
from zsltune.sweep import budget
from zsltune.sweep.options import TrialSpec
from zsltune.sweep.overrides import split_config

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

CHECKPOINT_FILE = "trainer.pt"
GB = 1024**3


def _trial_device(spec: TrialSpec) -> torch.device:
    if spec.gpus_per_trial > 0 and torch.cuda.is_available():
        # Ray sets CUDA_VISIBLE_DEVICES for the trial; GPU fractions are bookkeeping only, so cap memory too
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec.gpus_per_trial))
        return torch.device("cuda")
    return torch.device("cpu")


def _vm_data() -> int | None:
    """This process's private writable memory in bytes (``VmData``): what ``RLIMIT_DATA`` limits."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def host_memory_cap(gb: float | None) -> Iterator[bool]:
    """Let the code inside allocate at most ``gb`` GB of host memory beyond what this process holds now.

    ``RLIMIT_DATA`` (Linux >= 4.7) limits private writable mappings: the heap, torch tensors, numpy arrays,
    thread stacks. Ray's object store is a shared mapping and CUDA's address-space reservations are not writable,
    so neither counts (``RLIMIT_AS`` would count both, and a Ray worker maps gigabytes before any trial starts).
    An allocation past the cap fails inside the trial with ENOMEM (``MemoryError``, or torch's "can't allocate
    memory"). The previous soft limit comes back on exit, as Tune reuses a worker process for the next trial.
    Yields whether a cap is in force.
    """
    now = _vm_data() if gb is not None and resource is not None else None
    if now is None or resource is None:
        if gb is not None:
            warnings.warn(
                "--memory-per-trial: no RLIMIT_DATA on this platform; only Ray's scheduling applies", stacklevel=2
            )
        yield False
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = now + int(gb * GB)  # type: ignore[operator]
    for limit in (soft, hard):
        if limit != resource.RLIM_INFINITY:
            cap = min(cap, limit)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


_HOST_OOM = ("can't allocate memory", "cannot allocate memory", "out of memory")


def _alloc_size(text: str) -> str:
    """ "366.2 MiB" from torch's "you tried to allocate 384000000 bytes", numpy's "Unable to allocate 300. MiB"..."""
    m = re.search(r"allocate\s+([\d.]+)\s*(bytes|[KMGT]i?B)", text, re.IGNORECASE)
    if not m:
        return "an allocation"
    size, unit = float(m.group(1)), m.group(2)
    if unit.lower() == "bytes":
        size, unit = size / 2**20, "MiB"
    return f"an allocation of {size:.1f} {unit}"


def out_of_memory(exc: BaseException, spec: TrialSpec) -> TrialOutOfMemory | None:
    """A :class:`TrialOutOfMemory` with a one-line reason (device, request, cap) if ``exc`` is out of memory."""
    text = str(exc)
    cuda_oom = getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(exc, cuda_oom) or (isinstance(exc, RuntimeError) and "cuda out of memory" in text.lower()):
        where, total = "cuda", ""
        with contextlib.suppress(Exception):  # the device as torch numbers it inside CUDA_VISIBLE_DEVICES
            idx = torch.cuda.current_device()
            where, total = f"cuda:{idx}", f" of {torch.cuda.get_device_properties(idx).total_memory / GB:.1f} GB"
        frac = min(1.0, spec.gpus_per_trial) if spec.gpus_per_trial > 0 else 1.0
        cap = f"the trial's CUDA-memory cap of {frac:.0%}{total} (--gpus-per-trial {spec.gpus_per_trial:g})"
    elif isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(n in text.lower() for n in _HOST_OOM)):
        where = "host (cpu)"
        cap = (
            f"the trial's host-memory cap of {spec.memory_per_trial:g} GB (--memory-per-trial)"
            if spec.memory_per_trial
            else "the machine's free memory (no --memory-per-trial cap)"
        )
    else:
        return None
    return TrialOutOfMemory(f"out of memory on {where}: {_alloc_size(text)} failed past {cap}")


def run_trial(config: dict[str, Any], data: Bundle, spec: TrialSpec) -> None:
    """The Tune trainable: one trainer, one Tune iteration per epoch, a checkpoint every ``checkpoint_every``.

    The driver's :class:`~zsltune.sweep.overrides.TrialOverrides` never reach the trainer as hyperparameters: their
    fixed and grid parts are merged into the config (a grid over configurations: ablations, analysis reruns); their
    seed and max_epochs replace the spec's (max_epochs is the learning-rate schedule's horizon); stop_epoch ends the
    trial after that many epochs (a rerun trains a configuration for the epochs the search selected, on the
    search's schedule); knobs freezes the trainer's knobs (values chosen on validation).

    Under a compute budget (``spec.budget``) the trial runs the iterations its configuration's compute allows
    (:func:`~zsltune.sweep.budget.horizon`), which are also its lr schedule's horizon, and every result carries its
    cumulative ``compute``.
    """
    sampled, over = split_config(config)
    config = over.hyperparameters(sampled)
    spec = replace(
        spec,
        seed=spec.seed if over.seed is None else over.seed,
        max_epochs=spec.max_epochs if over.max_epochs is None else over.max_epochs,
    )
    knobs = dict(over.knobs)
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    # denormal floats (Adam's second moments and saturated units decay into them) cost ~100x on x86 CPUs: a CRnet
    # iteration on the demo went from 1.1 s to 7.7 s as they built up; flushing them to zero changes no result
    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    device = _trial_device(spec)
    try:
        with host_memory_cap(spec.memory_per_trial):
            _train(config, data, spec, device, stop_epoch=over.stop_epoch, knobs=knobs)
    except (MemoryError, RuntimeError) as exc:  # classified outside the cap, so reporting has memory to work with
        oom = out_of_memory(exc, spec)
        if oom is None:
            raise
        raise oom from exc


def trainer_class(spec: TrialSpec) -> type[Trainer]:
    """The spec's trainer, by import path where it has one (a method outside the package), else by name."""
    return import_method(spec.method_ref, spec.method_path) if spec.method_ref else get_method(spec.method)


def _train(
    config: dict[str, Any],
    data: Bundle,
    spec: TrialSpec,
    device: torch.device,
    *,
    stop_epoch: int | None,
    knobs: dict[str, float],
) -> None:
    trainer: Trainer = trainer_class(spec)(
        {**config, **spec.overrides},
        data,
        device=device,
        seed=spec.seed,
        max_epochs=spec.max_epochs,
        knobs=knobs,
        iteration_steps=spec.iteration_steps,
    )
    spent = _compute_meter(trainer, spec)
    stop = min(int(stop_epoch or trainer.max_epochs), trainer.max_epochs)
    device_s, restores = 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried, resumed or PBT-exploited trial continues from its checkpoint
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        trainer.load_state_dict(state["trainer"])
        if state["trainer"].get("weights_only") and trainer.epoch < stop:
            raise ConfigError(
                f"{spec.method}: the checkpoint at epoch {trainer.epoch} holds weights only (its trial had ended and "
                f"was slimmed); it cannot train on to epoch {stop}: rerun the configuration from scratch"
            )
        device_s, restores = float(state["device_s"]), int(state["restores"]) + 1
    node = ray.get_runtime_context().get_node_id()
    host, node_ip = socket.gethostname(), ray.util.get_node_ip_address()
    # a PBT clone of a finished leader (or a retry after the last epoch) has nothing left to train: report the
    # restored model once, so the trial ends with a result of its own
    epochs = range(trainer.epoch, stop) if trainer.epoch < stop else [None]
    for _ in epochs:
        t0 = time.perf_counter()
        try:
            losses = trainer.fit_epoch() if trainer.epoch < stop else {}
            t1 = time.perf_counter()
            metrics = trainer.evaluate()
        except TrialDiverged as exc:
            # the configuration, not the infrastructure, failed: it would fail the same way again, so the trial
            # ends here (Tune retries only what raises) with the reason, and the search is told it failed
            tune.report({**_diverged_result(trainer, spec, f"{type(exc).__name__}: {exc}"), **spent()})
            return
        t2 = time.perf_counter()
        device_s += t2 - t0
        result = {
            **metrics,
            **{f"loss/{k}": v for k, v in losses.items()},
            "epoch": trainer.epoch,
            "step": trainer.step,
            "train_s": t1 - t0,
            "eval_s": t2 - t1,
            "device_s": device_s,
            "node": node,
            "hostname": host,
            "node_ip": node_ip,
            "device": device.type,
            "pid": os.getpid(),
            "restores": restores,
            **spent(),
        }
        if trainer.epoch % spec.checkpoint_every == 0 or trainer.epoch == stop:
            with tempfile.TemporaryDirectory() as d:
                torch.save(
                    {"trainer": trainer.state_dict(), "device_s": device_s, "restores": restores},
                    Path(d) / CHECKPOINT_FILE,
                )
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(result)


def _compute_meter(trainer: Trainer, spec: TrialSpec) -> Callable[[], dict[str, float]]:
    """Under a compute budget: set the trainer's horizon to the iterations its compute allows, and return what each
    result adds (its cumulative compute and that horizon); under an iteration budget, nothing."""
    if spec.budget != "compute":
        return lambda: {}
    unit = trainer.iteration_cost(spec.reference)  # samples in one iteration of the space's defaults
    horizon = budget.horizon(spec.max_epochs, own=trainer.iteration_cost(), unit=unit)
    trainer.max_epochs = horizon  # the lr schedule spans the iterations this configuration trains
    cost = trainer.step_cost()
    return lambda: {budget.COMPUTE: trainer.step * cost / unit, budget.HORIZON: horizon}


def _diverged_result(trainer: Trainer, spec: TrialSpec, reason: str) -> dict[str, Any]:
    """The last result of a diverged trial: every metric NaN (schedulers and searchers skip it), the reason under
    :data:`DIVERGED` (the recorder ends the trial as failed with it, the searcher tells Optuna FAIL)."""
    keys = {*spec.metrics, *trainer.metric_keys(), *trainer.knobs}
    return {
        **{k: float("nan") for k in keys},
        DIVERGED: reason.splitlines()[0][:1000],
        "epoch": trainer.epoch,
        "step": trainer.step,
        "pid": os.getpid(),
    }
