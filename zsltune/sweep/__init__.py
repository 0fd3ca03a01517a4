"""Ray Tune + Optuna glue: the one package that imports Ray.

Every Tune job (a search, an analysis rerun) is built and run by :func:`zsltune.sweep.driver.run_job`, the single
``tune.Tuner`` call site. One sweep = one job: an Optuna sampler proposes configurations from the YAML space
(define-by-run, the paper's defaults first), a scheduler stops bad trials early, each trial is one method trainer
whose epochs are Tune iterations, each epoch reports metrics and a checkpoint. The stage is loaded once on the
driver by the method's data source and shared with every trial through the object store (numpy arrays: zero-copy on
a node).
"""

from zsltune.sweep.driver import Job, run_grid, run_job
from zsltune.sweep.options import SweepOptions, SweepResult, TrialSpec, default_storage, prepare
from zsltune.sweep.runner import check_fixed, load_data, run_sweep, trial_spec, write_provenance
from zsltune.sweep.search import SAMPLERS, SCHEDULERS

__all__ = [
    "SAMPLERS",
    "SCHEDULERS",
    "Job",
    "SweepOptions",
    "SweepResult",
    "TrialSpec",
    "check_fixed",
    "default_storage",
    "load_data",
    "prepare",
    "run_grid",
    "run_job",
    "run_sweep",
    "trial_spec",
    "write_provenance",
]
