"""Declarative search spaces: ``search_spaces/NAME.yaml``, validated before Ray starts.

    method: crnet
    metric: H
    mode: max
    max_epochs: 30
    grace_period: 3
    parameters:
      lr: {type: float, low: 1.0e-6, high: 1.0e-3, log: true, default: 1.0e-5}
      K: {type: int, low: 1, high: 30, default: {CUB: 4, SUN: 12, "*": 3}}
      use_beta: {type: categorical, choices: [true, false], default: true}
      beta: {type: float, low: 1.0e-6, high: 1.0e-2, log: true, default: 1.0e-4, condition: {use_beta: true}}

``default`` is the first trial's value, a scalar or a mapping dataset -> value with ``"*"`` as the fallback: the
paper's (the trainer's declaration, ``zsltune.methods.hparams``) or another start, such as a CPU-sized one. A
parameter without ``default`` starts from the trainer's declared default. :func:`load_space` checks every range,
choice and default against the trainer's declarations. ``condition`` samples a parameter only when
another has one of the given values (define-by-run in Optuna). Every rule broken is a
:class:`~zsltune.errors.SpaceError` naming file, parameter and fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zsltune.errors import ConfigError, SpaceError, UnknownNameError


def _spaces_dir() -> Path:
    """The folder of ``*.yaml`` spaces: the checkout's top-level ``search_spaces/`` when zsltune runs from a source
    checkout (editable install, ``python zsltune/run.py`` in a clone), so edits there take effect at once; else the
    copy an installed wheel carries as ``zsltune/search_spaces`` (``setup.py`` maps that subpackage onto the same
    top-level folder, so there is one copy to edit)."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "search_spaces").is_dir():
        return checkout / "search_spaces"
    return Path(str(resources.files("zsltune").joinpath("search_spaces")))


SPACES_DIR = _spaces_dir()
TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}
_COMMON = {"type", "default", "condition", "help"}
_TOP_KEYS = {
    "method", "metric", "mode", "max_epochs", "grace_period", "iteration_steps", "profiles", "parameters",
    "image_size", "recall_at",
}  # fmt: skip


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None  # scalar or {dataset: value, "*": value}
    condition: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def default_for(self, dataset: str) -> Any:
        if isinstance(self.default, dict):
            return self.default.get(dataset, self.default.get(dataset.upper(), self.default["*"]))
        return self.default

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and value != int(value):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(k) in allowed for k, allowed in self.condition.items())

    def suggest(self, trial: Any) -> Any:
        """Sample with an Optuna trial (or Ray's suggest captor)."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(
                self.name,
                int(self.low),
                int(self.high),
                log=self.log,  # type: ignore[arg-type]
                step=int(self.step or 1),
            )
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Calling it with an Optuna trial samples one configuration (define-by-run)."""

    method: str
    metric: str
    mode: str
    max_epochs: int  # Tune iterations in a trial's budget
    grace_period: int  # iterations before ASHA may stop a trial
    params: tuple[Param, ...]
    path: Path | None = None
    #: optimisation steps per Tune iteration; None: an iteration is an epoch (one pass over the training images)
    iteration_steps: int | None = None
    #: named sets of first-trial values (``paper``: the published configuration), ``--profile NAME``
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: image methods: the decoded cache's side (``--image-size``); None: the data's own
    image_size: int | None = None
    #: retrieval methods: the Recall@K list (``--recall-at``: a preset or K,K,...); None: chosen by the dataset
    recall_at: str | None = None

    def with_profile(self, name: str) -> SearchSpace:
        """The space whose defaults (the first trial) are profile ``name``'s values where it gives them."""
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise SpaceError(f"{self.path or self.method}: no profile '{name}'; profiles: {known}")
        vals = self.profiles[name]
        return replace(
            self, params=tuple(replace(p, default=vals[p.name]) if p.name in vals else p for p in self.params)
        )

    def __call__(self, trial: Any) -> None:
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)

    def defaults(self, dataset: str, fallback: dict[str, Any] | None = None) -> dict[str, Any]:
        """The paper's configuration for ``dataset``, conditional parameters included only when active.

        A parameter without ``default:`` takes ``fallback``'s value (the trainer's declared default), or is left
        out when ``fallback`` has none.
        """
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                v = p.default_for(dataset)
                if v is None and fallback is not None:
                    v = fallback.get(p.name)
                if v is not None:
                    values[p.name] = v
        return values

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def fix(self, values: dict[str, Any]) -> SearchSpace:
        """The space with ``values`` held fixed: those parameters are no longer sampled, and a condition on one of
        them is decided now (kept parameter, condition dropped) or drops its parameter."""
        kept: list[Param] = []
        for p in self.params:
            if p.name in values:
                continue
            decided = {k: v for k, v in p.condition.items() if k in values}
            if any(values[k] not in allowed for k, allowed in decided.items()):
                continue
            rest = {k: v for k, v in p.condition.items() if k not in values}
            kept.append(replace(p, condition=rest))
        return replace(self, params=tuple(kept))


def _fail(path: Path | str, where: str, msg: str) -> SpaceError:
    return SpaceError(f"{path}: {where}: {msg}")


def _number(path: Path | str, name: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(
            path,
            f"parameter '{name}'",
            f"'{key}' must be a number, got {v!r} (write 1.0e-5, not 1e-5, for YAML to read a float)",
        )
    return float(v)


def _param(path: Path | str, name: str, spec: Any) -> Param:
    where = f"parameter '{name}'"
    if not isinstance(spec, dict):
        raise _fail(path, where, f"must be a mapping like {{type: float, low: 0.0, high: 1.0}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise _fail(path, where, f"unknown type {kind!r}; use one of {', '.join(TYPES)}")
    extra = set(spec) - _KEYS[kind] - _COMMON
    if extra:
        raise _fail(
            path,
            where,
            f"unknown key '{sorted(extra)[0]}' for type {kind}; allowed: {', '.join(sorted(_KEYS[kind] | _COMMON))}",
        )
    cond_raw = spec.get("condition") or {}
    if not isinstance(cond_raw, dict):
        raise _fail(path, where, f"'condition' must be a mapping {{other_param: value}}, got {cond_raw!r}")
    cond = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in cond_raw.items()}
    # no default: the trainer's declared (paper) one
    default = spec.get("default")
    if isinstance(default, dict) and "*" not in default:
        raise _fail(path, where, "a per-dataset default needs a '*' entry as the fallback")

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, where, "categorical needs a non-empty list 'choices'")
        p = Param(name, kind, choices=tuple(choices), default=default, condition=cond)
    else:
        if "low" not in spec or "high" not in spec:
            raise _fail(path, where, f"{kind} needs 'low' and 'high'")
        low, high = _number(path, name, "low", spec["low"]), _number(path, name, "high", spec["high"])
        if not low <= high:
            raise _fail(path, where, f"low <= high must hold, got low={spec['low']}, high={spec['high']}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise _fail(path, where, f"log scale needs low > 0, got low={spec['low']}")
        step = spec.get("step")
        if step is not None:
            step = _number(path, name, "step", step)
            if step <= 0 or log:
                raise _fail(path, where, f"'step' must be > 0 and cannot combine with log, got step={step}")
        if kind == "int" and (low != int(low) or high != int(high)):
            raise _fail(path, where, f"int bounds must be integers, got low={spec['low']}, high={spec['high']}")
        p = Param(name, kind, low=low, high=high, log=log, step=step, default=default, condition=cond)
    for ds, value in default.items() if isinstance(default, dict) else [("", default)]:
        if value is not None and not p.contains(value):
            rng = f"choices {list(p.choices)}" if kind == "categorical" else f"[{spec['low']}, {spec['high']}]"
            label = f"default for {ds}" if ds else "default"
            raise _fail(path, where, f"{label} {value!r} is outside {rng}; fix the default or widen the range")
    return p


def parse_space(doc: Any, *, path: Path | str = "<space>") -> SearchSpace:
    if not isinstance(doc, dict):
        raise SpaceError(f"{path}: top level must be a mapping with method, metric, mode, parameters")
    for key in ("method", "metric", "parameters"):
        if key not in doc:
            raise SpaceError(f"{path}: missing top-level key '{key}'")
    mode = doc.get("mode", "max")
    if mode not in ("max", "min"):
        raise SpaceError(f"{path}: mode must be 'max' or 'min', got {mode!r}")
    max_epochs, grace = doc.get("max_epochs", 20), doc.get("grace_period", 1)
    steps = doc.get("iteration_steps")
    size, recall = doc.get("image_size"), doc.get("recall_at")
    if recall is not None and not isinstance(recall, (str, int, list)):
        raise SpaceError(f"{path}: recall_at must be a preset name or a list of K, got {recall!r}")
    if isinstance(recall, list):
        recall = ",".join(str(k) for k in recall)
    if recall is not None:
        from zsltune.data.image_source import recall_ks

        try:
            recall_ks(str(recall), "")
        except ConfigError as e:
            raise SpaceError(f"{path}: recall_at {recall!r}: {str(e).split(': ', 1)[1]}") from None
    checked = (("max_epochs", max_epochs), ("grace_period", grace), ("iteration_steps", steps), ("image_size", size))
    for key, v in checked:
        if key in ("iteration_steps", "image_size") and v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < (16 if key == "image_size" else 1):
            need = ">= 16 pixels" if key == "image_size" else "a positive integer"
            raise SpaceError(f"{path}: {key} must be {need}, got {v!r}")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SpaceError(f"{path}: unknown top-level key '{unknown[0]}'; allowed: {', '.join(sorted(_TOP_KEYS))}")
    raw = doc["parameters"]
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{path}: 'parameters' must be a non-empty mapping of name -> spec")
    params = tuple(_param(path, str(name), spec) for name, spec in raw.items())
    seen: set[str] = set()
    for p in params:  # a condition may only refer to a parameter defined above it
        for other in p.condition:
            if other not in seen:
                known = ", ".join(q.name for q in params)
                raise _fail(
                    path,
                    f"parameter '{p.name}'",
                    f"condition on unknown parameter '{other}' "
                    f"(it must be defined above '{p.name}'; parameters: {known})",
                )
        seen.add(p.name)
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise SpaceError(f"{path}: 'profiles' must map a name to {{parameter: value}}, got {profiles!r}")
    by_name = {p.name: p for p in params}
    for prof, vals in profiles.items():
        for k, v in vals.items():
            if k not in by_name:
                raise _fail(path, f"profile '{prof}'", f"unknown parameter '{k}'; parameters: {', '.join(by_name)}")
            for ds, value in v.items() if isinstance(v, dict) else [("", v)]:
                if not by_name[k].contains(value):
                    raise _fail(
                        path, f"profile '{prof}'", f"{k}{'[' + ds + ']' if ds else ''} = {value!r} is outside its range"
                    )
    return SearchSpace(
        method=str(doc["method"]),
        metric=str(doc["metric"]),
        mode=mode,
        max_epochs=max_epochs,
        grace_period=grace,
        iteration_steps=steps,
        image_size=size,
        recall_at=None if recall is None else str(recall),
        profiles={str(k): dict(v) for k, v in profiles.items()},
        params=params,
        path=Path(path) if path != "<space>" else None,
    )


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """``crnet`` finds ``search_spaces/crnet.yaml``; a path to a YAML file is read as it is."""
    path = Path(name_or_path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UnknownNameError(
                f"--space {name_or_path}: unknown search space; valid spaces: "
                f"{', '.join(available_spaces())} (or a path to a YAML file)"
            )
    if not path.is_file():
        raise SpaceError(f"{path}: file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError(f"{path}: invalid YAML{at}: {getattr(e, 'problem', e)}") from None
    space = parse_space(doc, path=path)
    check_declared(space)
    return space


def check_declared(space: SearchSpace) -> None:
    """The space's names, ranges, choices and defaults against its method's declarations (the trainer's kinds and
    valid ranges), one :class:`SpaceError` line naming file, parameter, rule and value. A method that does not
    resolve here is left to the sweep, which names it among the valid ones."""
    # here, not at the top: importing the methods registers them all and brings torch, which parsing never needs
    from zsltune.methods import get_method
    from zsltune.methods.hparams import check_space

    try:
        cls = get_method(space.method)
    except UnknownNameError:
        return
    try:
        check_space(space.method, cls.all_hparams(), space)
    except ConfigError as e:
        raise SpaceError(str(e)) from None
