"""Reference baselines: what GZSL papers compare with, run on the same stage as a tuned method.

- ``ridge``: closed-form ridge from features to attributes, cosine to class prototypes (a sanity floor).
- ``eszsl``: ESZSL (Romera-Paredes & Torr, 2015), closed form.
- ``softmax``: a linear softmax over the seen classes (the seen side: compare with CONSE's S).
- ``clswgan``: f-CLSWGAN (Xian et al., 2018), a conditional WGAN-GP feature generator; variants ``cpu`` and ``paper``.

Every knob a baseline has (ESZSL's γ and λ, the softmax's weight decay, calibrated stacking's offset) is chosen on the
val stage and frozen for the test stage, as analysis reruns do: :func:`baseline_report` takes both stages and never
looks at the test stage's labels before the knobs are fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zsltune.baseline.eszsl import eszsl_scores, eszsl_select
from zsltune.baseline.ridge import colour_histograms, ridge_fit, ridge_report, ridge_scores
from zsltune.baseline.softmax import softmax_seen_accuracy, softmax_select
from zsltune.data.protocol import StageData
from zsltune.errors import UnknownNameError
from zsltune.metrics import gzsl_report

__all__ = [
    "BASELINES",
    "baseline_report",
    "colour_histograms",
    "eszsl_scores",
    "ridge_fit",
    "ridge_report",
    "ridge_scores",
    "run_baseline",
]

Knobs = dict[str, Any]


@dataclass(frozen=True)
class Baseline:
    """``select(val, seed, variant)`` chooses the knobs on the val stage; ``report(data, knobs, seed, gamma)`` fits on
    ``data``'s training images and scores its evaluation images (``gamma``: calibrated stacking's frozen offset)."""

    name: str
    select: Callable[[StageData, int, str], Knobs]
    report: Callable[[StageData, Knobs, int, float | None], dict[str, float]]
    variants: tuple[str, ...] = ("default",)


def _gzsl(data: StageData, scores: tuple[np.ndarray, np.ndarray], gamma: float | None) -> dict[str, float]:
    return gzsl_report(scores[0], data.y_seen, scores[1], data.y_unseen, n_seen=data.n_seen, gamma=gamma)


def _eszsl_report(data: StageData, knobs: Knobs, seed: int, gamma: float | None) -> dict[str, float]:
    return _gzsl(data, eszsl_scores(data, gamma=knobs["gamma_eszsl"], lam=knobs["lambda_eszsl"]), gamma)


def _ridge_report(data: StageData, knobs: Knobs, seed: int, gamma: float | None) -> dict[str, float]:
    return _gzsl(data, ridge_scores(data), gamma)


def _softmax_report(data: StageData, knobs: Knobs, seed: int, gamma: float | None) -> dict[str, float]:
    return {"S": softmax_seen_accuracy(data, weight_decay=knobs["weight_decay"])}


def _clswgan_select(val: StageData, seed: int, variant: str) -> Knobs:
    from zsltune.baseline.clswgan import VARIANTS

    return {"variant": variant, **VARIANTS[variant].knobs()}


def _clswgan_report(data: StageData, knobs: Knobs, seed: int, gamma: float | None) -> dict[str, float]:
    from zsltune.baseline.clswgan import VARIANTS, clswgan_scores

    return _gzsl(data, clswgan_scores(data, VARIANTS[knobs["variant"]], seed=seed), gamma)


BASELINES: dict[str, Baseline] = {
    "ridge": Baseline("ridge", lambda val, seed, variant: {}, _ridge_report),
    "eszsl": Baseline("eszsl", lambda val, seed, variant: eszsl_select(val), _eszsl_report),
    "softmax": Baseline("softmax", lambda val, seed, variant: softmax_select(val), _softmax_report),
    "clswgan": Baseline("clswgan", _clswgan_select, _clswgan_report, variants=("cpu", "paper")),
}


def get_baseline(name: str) -> Baseline:
    if name not in BASELINES:
        raise UnknownNameError(f"baseline '{name}': unknown; choose one of {', '.join(BASELINES)}")
    return BASELINES[name]


def baseline_report(
    name: str,
    val: StageData,
    test: StageData | Callable[[], StageData] | None = None,
    *,
    seed: int = 0,
    variant: str | None = None,
) -> dict[str, Any]:
    """``name``'s metrics on ``val``, or on ``test`` with every knob frozen from ``val`` (knobs included in the
    result). A baseline's calibrated-stacking offset ``gamma`` is the val stage's H-best one, applied as it is.
    ``test`` may be a loader, called only once the knobs are fixed."""
    b = get_baseline(name)
    variant = variant or b.variants[0]
    if variant not in b.variants:
        raise UnknownNameError(f"--variant {variant}: {name} has variants {', '.join(b.variants)}")
    knobs = b.select(val, seed, variant)
    out = b.report(val, knobs, seed, None)
    if test is not None:
        out = b.report(test if isinstance(test, StageData) else test(), knobs, seed, out.get("gamma"))
    extra = {"variant": variant} if variant != "default" else {}
    return {**out, **{k: v for k, v in knobs.items() if k != "variant"}, **extra}


def run_baseline(
    name: str,
    dataset: str,
    *,
    stage: str = "val",
    data_root: str | None = None,
    seed: int = 0,
    data_seed: int = 0,
    variant: str | None = None,
) -> dict[str, Any]:
    """``zsltune baseline NAME --dataset D``: load the val stage (and the test stage only once the knobs are fixed)."""
    from zsltune.data import load_stage

    get_baseline(name)
    val = load_stage(dataset, "val", data_root=data_root, seed=data_seed)

    def test() -> StageData:
        return load_stage(dataset, "test", data_root=data_root, seed=data_seed)

    return baseline_report(name, val, test if stage == "test" else None, seed=seed, variant=variant)
