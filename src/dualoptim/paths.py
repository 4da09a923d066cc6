"""Where data and caches live by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "default_data_root"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """The folder that holds local copies of the data sets (`fashion-mnist/`, `tofu/`, ...).

    Order: the environment variable ``DUALOPTIM_DATA_ROOT``; else ``../shared/data`` beside the
    project checkout (this workplace's layout); else ``./data``.
    """
    if env := os.environ.get("DUALOPTIM_DATA_ROOT"):
        return Path(env)
    shared = _PROJECT_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path("data")


def default_cache_dir() -> Path:
    """Cache for trained originals, retrains and tokenizers: ``DUALOPTIM_CACHE`` or ``~/.cache/dualoptim``."""
    if env := os.environ.get("DUALOPTIM_CACHE"):
        return Path(env)
    return Path.home() / ".cache" / "dualoptim"
