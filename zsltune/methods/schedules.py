"""Learning-rate schedules over a trial's budget: a factor of the base lr at ``progress`` in [0, 1] of the budget
(``max_epochs`` iterations), applied per step by :meth:`zsltune.methods.base.Trainer.schedule_lr`."""

from __future__ import annotations

import math

#: the schedules a method may offer as its ``lr_schedule`` hyperparameter
LR_SCHEDULES = ("constant", "cosine")


def cosine(progress: float) -> float:
    """Half a cosine from 1 to 0, so the last iterations settle instead of jitter (Loshchilov & Hutter, 2017)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def step_decay(progress: float) -> float:
    """÷10 at 1/3 and 2/3 of the budget: CLAREL's 50k-of-150k-batch steps (Oreshkin et al., 2020) scaled to it."""
    return 0.1 ** min(2, int(3 * progress + 1e-9))


def lr_factor(schedule: str, progress: float) -> float:
    """The factor of ``schedule`` (``constant``, ``cosine`` or ``step``) at ``progress``."""
    if schedule == "cosine":
        return cosine(progress)
    if schedule == "step":
        return step_decay(progress)
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown learning-rate schedule '{schedule}'; known: {', '.join((*LR_SCHEDULES, 'step'))}")
