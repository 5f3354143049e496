"""Where relabscope keeps files it can rebuild: the synthetic data set, decoded images.

``$RELABSCOPE_CACHE`` overrides the default ``~/.cache/relabscope``. Everything here is
derived data: deleting the folder only costs time.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a sub-folder of it), created on demand."""
    root = os.environ.get("RELABSCOPE_CACHE") or Path.home() / ".cache" / "relabscope"
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
