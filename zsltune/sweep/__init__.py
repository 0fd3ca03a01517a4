"""Ray Tune + Optuna glue: the one place (with :mod:`zsltune.run`) that imports Ray.

One sweep = one ``tune.Tuner``: an Optuna sampler proposes configurations from the YAML space (define-by-run,
the paper's defaults first), a scheduler stops bad trials early, each trial is one method trainer whose epochs
are Tune iterations, each epoch reports metrics and a checkpoint. The dataset stage is loaded once on the driver
and shared with every trial through the object store as numpy arrays (zero-copy reads on a node).
"""

from zsltune.sweep.options import SweepOptions, SweepResult, TrialSpec, default_storage, prepare
from zsltune.sweep.runner import run_sweep
from zsltune.sweep.search import SAMPLERS, SCHEDULERS

__all__ = [
    "SAMPLERS",
    "SCHEDULERS",
    "SweepOptions",
    "SweepResult",
    "TrialSpec",
    "default_storage",
    "prepare",
    "run_sweep",
]
