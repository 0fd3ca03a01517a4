"""Which hyperparameters mattered: Optuna's fANOVA importance over a sweep's study, and the parameters a slice plot
shows (the varied ones, the most important first). Computation only; the report's section formats the result."""

from __future__ import annotations

import math

import pandas as pd

from zsltune.analysis.sweepdir import Sweep

#: the most parameters a slice plot shows: more panels are too small to read
SLICE_PARAMETERS = 4


def fanova_importance(sweep: Sweep, by: str) -> tuple[dict[str, float] | None, str]:
    """Optuna fANOVA importances of the study's objective, or None and a one-line reason."""
    journal = sweep.path / "optuna.journal"
    if not journal.is_file():
        return None, "No Optuna study in this sweep (no `optuna.journal`: a PBT sweep has none); importance skipped."
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        names = optuna.get_all_study_names(storage)
        name = sweep.name if sweep.name in names else (names[0] if len(names) == 1 else None)
        if name is None:
            return None, f"`optuna.journal` holds {len(names)} studies and none is named {sweep.name}; skipped."
        study = optuna.load_study(study_name=name, storage=storage)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(done) < 2:
            return None, (
                f"Only {len(done)} completed trial(s) in the Optuna study: importance needs at least 2; skipped."
            )
        objectives = [m.strip() for m in str(sweep.options.get("metric") or sweep.metric).split(",") if m.strip()]
        idx = objectives.index(by) if by in objectives and len(objectives) == len(study.directions) else 0
        target = (lambda t: t.values[idx]) if len(study.directions) > 1 else None
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=target
        )
    except Exception as e:  # a study being written, constant objectives, ...: the report goes on without it
        return None, f"Importance could not be computed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); skipped."
    imp = {k: float(v) for k, v in imp.items() if math.isfinite(float(v))}
    if not imp:
        return None, "Importance returned no parameter (every completed trial shares the same values); skipped."
    objective = objectives[idx] if idx < len(objectives) else sweep.metric
    note = (
        f"fANOVA importance (Optuna `FanovaImportanceEvaluator`, seed 0) of the search objective `{objective}` over "
        f"{len(done)} completed trials, for the parameters sampled in every one of them."
    )
    if objective != by:
        note += f" The tables rank by `{by}`; importance is for the objective the sampler optimised."
    return imp, note


def slice_parameters(scored: pd.DataFrame, imp: dict[str, float]) -> list[str]:
    """Up to :data:`SLICE_PARAMETERS` parameters that vary among the scored trials, the most important first, then
    the rest in name order (a parameter fANOVA did not rate still varied, so it may matter)."""
    varied = [
        c.split("/", 1)[1]
        for c in sorted(scored.columns)
        if c.startswith("config/") and scored[c].dropna().astype(str).nunique() > 1
    ]
    return ([p for p in imp if p in varied] + [p for p in varied if p not in imp])[:SLICE_PARAMETERS]
