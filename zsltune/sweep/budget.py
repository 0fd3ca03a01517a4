"""A trial's budget: Tune iterations (``--budget iterations``, the default) or compute (``--budget compute``).

Compute is the samples a trial has pushed through its model (steps x :meth:`~zsltune.methods.base.Trainer.step_cost`),
in units of one iteration of the space's default configuration, so ``max_epochs`` and ``grace_period`` keep their
meaning ("the compute of N iterations of the defaults"): a configuration that costs more per iteration (TL-VSC at
batch 256) gets fewer iterations, a cheaper one more. Each result then carries :data:`COMPUTE` (the schedulers'
``time_attr``) and :data:`HORIZON` (the iterations the trial's budget allows, its lr schedule's horizon).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

BUDGETS = ("iterations", "compute")
#: result key: the trial's cumulative compute, in iterations of the space's defaults
COMPUTE = "compute"
#: result key: the iterations a compute budget allows this trial (absent under an iteration budget)
HORIZON = "horizon"
#: a trial runs at most this many times ``max_epochs`` iterations: each iteration also pays an evaluation that
#: compute does not count, so past a tenth of the defaults' cost per iteration the evaluations would dominate
MAX_ITERATIONS_FACTOR = 10


def time_attr(budget: str) -> str:
    """The result key the schedulers count a trial's progress in."""
    return COMPUTE if budget == "compute" else "training_iteration"


def horizon(max_epochs: int, *, own: float, unit: float) -> int:
    """Iterations until a trial whose iteration costs ``own`` samples has spent ``max_epochs`` iterations of the
    defaults (``unit`` samples each), at least 1 and at most :data:`MAX_ITERATIONS_FACTOR` x ``max_epochs``."""
    need = math.ceil(max_epochs * unit / own - 1e-9)  # the tolerance: a float ratio a hair above a whole number
    return max(1, min(need, MAX_ITERATIONS_FACTOR * max_epochs))


def reached(result: Mapping[str, Any], max_epochs: int) -> bool:
    """Whether the trial whose last result is ``result`` ran its whole budget (not stopped early by a scheduler)."""
    return int(result.get("epoch", 0)) >= int(result.get(HORIZON) or max_epochs)
