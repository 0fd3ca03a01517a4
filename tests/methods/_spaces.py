"""The search spaces' first-trial values, for tests that build a trainer directly from a partial config."""

from __future__ import annotations

from typing import Any

from zsltune.space import load_space


def space_defaults(space: str, dataset: str = "demo") -> dict[str, Any]:
    """``space``'s defaults for ``dataset`` (the CPU-sized ones of ``crnet.yaml`` etc.): a trainer's declared defaults
    are the paper's, which a test on CPU often cannot afford (SGMA's 224 px parts, CLAREL's 1024-wide networks)."""
    return load_space(space).defaults(dataset)
