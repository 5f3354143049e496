"""Any data set laid out as ``train/<class>/<images>`` and ``test/<class>/<images>``.

Classes are the sorted folder names under ``train/`` (label = position in that list);
``test/`` may lack some of them but must not add new ones. Images are files ending in
jpg, jpeg, png, bmp or webp (any case), found recursively inside each class folder and
taken in sorted path order; hidden files and folders (names starting with ``.``) are
ignored. Keys are paths relative to the data folder, with ``/`` separators.

Images may differ in size, so ``native_size`` is None: set ``size`` before loading items.
Images are not opened here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relabscope.data.base import DataSplits, FERDataset, FileSource
from relabscope.errors import DataError, missing

NAME = "imagefolder"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def class_folders(split_dir: Path) -> list[str]:
    """The sorted names of the visible sub-folders of ``split_dir``."""
    return sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def image_files(folder: Path, root: Path) -> list[str]:
    """Images under ``folder`` (recursively), as sorted paths relative to ``root``."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in EXTENSIONS and path.is_file():
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


def load(root: Path) -> DataSplits:
    """The train and test splits of an image-folder data set."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "data folder")
    for name in ("train", "test"):
        if not (root / name).is_dir():
            layout = f"({NAME} layout: {name}/<class>/<images>)"
            raise DataError(f"{missing(root / name, 'folder')} {layout}")
    class_names = tuple(class_folders(root / "train"))
    if not class_names:
        layout = f"({NAME} layout: train/<class>/<images>)"
        raise DataError(f"{root / 'train'}: no class folders {layout}")
    extra = [c for c in class_folders(root / "test") if c not in class_names]
    if extra:
        raise DataError(
            f"{root / 'test' / extra[0]}: class {extra[0]!r} is not among the training classes "
            f"({', '.join(class_names)})"
        )

    def split(name: str) -> FERDataset:
        keys: list[str] = []
        labels: list[int] = []
        for label, cls in enumerate(class_names):
            folder = root / name / cls
            if not folder.is_dir():
                continue
            files = image_files(folder, root)
            keys.extend(files)
            labels.extend([label] * len(files))
        return FERDataset(
            name=NAME,
            class_names=class_names,
            split=name,
            keys=keys,
            labels=np.asarray(labels, dtype=np.int64),
            source=FileSource(root, keys),
            channels=3,
            native_size=None,
        )

    return DataSplits(train=split("train"), test=split("test"))
