"""Where zsltune caches what it generates (synthetic datasets, tokenised text, word vectors): ``$ZSLTUNE_CACHE``,
default ``~/.cache/zsltune``. A module of its own so that :mod:`zsltune.data.synth` and :mod:`zsltune.data.text`
both import it without importing each other."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("ZSLTUNE_CACHE", Path.home() / ".cache" / "zsltune")).expanduser()
