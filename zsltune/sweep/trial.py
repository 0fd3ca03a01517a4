"""The Tune trainable: one method trainer per trial, one Tune iteration per epoch, a checkpoint per epoch."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from zsltune.data import StageData
from zsltune.methods import Trainer, get_method
from zsltune.sweep.options import TrialSpec

CHECKPOINT_FILE = "trainer.pt"


def _trial_device(spec: TrialSpec) -> torch.device:
    if spec.gpus_per_trial > 0 and torch.cuda.is_available():
        # Ray sets CUDA_VISIBLE_DEVICES for the trial; GPU fractions are bookkeeping only, so cap memory too
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec.gpus_per_trial))
        return torch.device("cuda")
    return torch.device("cpu")


def run_trial(config: dict[str, Any], data: StageData, spec: TrialSpec) -> None:
    """The Tune trainable: one trainer, one Tune iteration per epoch, a checkpoint every ``checkpoint_every``.

    Keys named ``__x__`` are reserved for the driver and never reach the trainer: ``__seed__`` and ``__max_epochs__``
    override the spec's seed and epoch count for this trial (analysis reruns: one trial per configuration and seed).
    """
    reserved = {k: v for k, v in config.items() if k.startswith("__") and k.endswith("__")}
    config = {k: v for k, v in config.items() if k not in reserved}
    spec = replace(
        spec,
        seed=int(reserved.get("__seed__", spec.seed)),
        max_epochs=int(reserved.get("__max_epochs__", spec.max_epochs)),
    )
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    device = _trial_device(spec)
    trainer: Trainer = get_method(spec.method)(
        {**config, **spec.overrides}, data, device=device, seed=spec.seed, max_epochs=spec.max_epochs
    )
    device_s, restores = 0.0, 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried, resumed or PBT-exploited trial continues from its checkpoint
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        trainer.load_state_dict(state["trainer"])
        device_s, restores = float(state["device_s"]), int(state["restores"]) + 1
    node = ray.get_runtime_context().get_node_id()
    # a PBT clone of a finished leader (or a retry after the last epoch) has nothing left to train: report the
    # restored model once, so the trial ends with a result of its own
    epochs = range(trainer.epoch, spec.max_epochs) if trainer.epoch < spec.max_epochs else [None]
    for _ in epochs:
        t0 = time.perf_counter()
        losses = trainer.fit_epoch() if trainer.epoch < spec.max_epochs else {}
        t1 = time.perf_counter()
        metrics = trainer.evaluate()
        t2 = time.perf_counter()
        device_s += t2 - t0
        result = {
            **metrics,
            **{f"loss/{k}": v for k, v in losses.items()},
            "epoch": trainer.epoch,
            "train_s": t1 - t0,
            "eval_s": t2 - t1,
            "device_s": device_s,
            "node": node,
            "device": device.type,
            "pid": os.getpid(),
            "restores": restores,
        }
        if trainer.epoch % spec.checkpoint_every == 0 or trainer.epoch == spec.max_epochs:
            with tempfile.TemporaryDirectory() as d:
                torch.save(
                    {"trainer": trainer.state_dict(), "device_s": device_s, "restores": restores},
                    Path(d) / CHECKPOINT_FILE,
                )
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(result)
