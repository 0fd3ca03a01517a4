"""What users run after a sweep: ``zsltune analyze best | rerun | report``.

Installed as ``zsltune.analysis``: ``setup.py`` maps that subpackage onto this top-level ``analysis/`` folder.

* :mod:`zsltune.analysis.best`: rank a sweep's trials by a validation metric (pandas over ``trials.parquet``).
* :mod:`zsltune.analysis.rerun`: rerun the top configurations on the ``test`` stage with several seeds (one Ray
  Tune job).
* :mod:`zsltune.analysis.stats`: Student-t and bootstrap intervals, paired comparisons.
* :mod:`zsltune.analysis.report`: one Markdown or HTML report with tables and PNG plots.

Selection only ever reads ``stage == "val"`` rows; only :func:`zsltune.analysis.rerun.rerun` evaluates on test images.
Nothing is imported here, so ``zsltune --help`` stays fast; Ray is imported only when a rerun starts.
"""
