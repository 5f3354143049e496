"""Data sets relabscope reads, each from its published layout.

``load_dataset(name, root, **options)`` returns the train and test splits as
:class:`~relabscope.data.base.DataSplits`. Every loader module exposes one function,
``load(root, **options)``; the table below maps the names the CLI accepts to a module and
fixed options, and the module is imported when its data set is loaded (the table itself is
read without loading torch). Loaders raise :class:`~relabscope.errors.DataError` with one line naming the
missing or malformed file.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relabscope.errors import DataError
from relabscope.lazy import lazy_exports

if TYPE_CHECKING:
    from relabscope.data.base import DataSplits, FERDataset

DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "synthetic": ("relabscope.data.synthetic", {}),
    "rafdb": ("relabscope.data.rafdb", {}),
    "fer2013": ("relabscope.data.fer2013", {}),
    "ferplus": ("relabscope.data.ferplus", {}),
    "affectnet": ("relabscope.data.affectnet", {"num_classes": 7}),
    "affectnet8": ("relabscope.data.affectnet", {"num_classes": 8}),
    "imagefolder": ("relabscope.data.imagefolder", {}),
}


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> DataSplits:
    """Load data set ``name`` from ``root`` (its published layout) as train/test splits."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    module_name, fixed = DATASETS[name]
    if root is None and name != "synthetic":
        raise DataError(f"data set {name!r} needs --data pointing at its folder")
    if root is not None and name != "synthetic" and not Path(root).exists():
        raise DataError(f"{root}: data folder not found")
    module = import_module(module_name)
    accepted = [p for p in inspect.signature(module.load).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted) | set(options) & set(fixed))
    if unknown:
        raise DataError(
            f"data set {name!r} has no option {unknown[0]!r}; its options: {', '.join(a for a in accepted if a not in fixed) or 'none'}"
        )
    return module.load(None if root is None else Path(root), **{**fixed, **options})


#: ``DataSplits`` and ``FERDataset``, loaded on first use: the registry above is read by the
#: config and the CLI without loading torch, which the data classes need
__getattr__, __dir__ = lazy_exports(__name__, {"DataSplits": "relabscope.data.base", "FERDataset": "relabscope.data.base"})


__all__ = ["DATASETS", "DataSplits", "FERDataset", "load_dataset"]
