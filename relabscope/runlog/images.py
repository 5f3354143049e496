"""Where a run's pixels live: image sources for logs written by any training loop.

A run log keeps sample keys, never pixels. relabscope's own trainer re-opens the data set
its config names; a log written by a Lightning or Hugging Face callback or a hand-written
loop records instead where its images are, so thumbnails, the sample inspector, the map's
hover images, reports and Grad-CAM work for it too. A source is one of:

- a **folder**: the sample keys are paths relative to it (``folder:DIR``, or a directory);
- an **array file**: ``.npy`` of shape (N, H, W) or (N, H, W, C) uint8, row = sample id,
  or ``.npz`` holding such an array as ``images`` (``array:FILE``, or the file);
- a **file list**: one image path per sample id, as a Python list or a text file with one
  path per line, relative paths taken from the file's folder (``files:FILE``);
- a **callable** ``fn(sample_ids, keys) -> (n, H, W[, C]) uint8`` (or a list of PIL
  images / arrays), given when the run is opened: it cannot be stored in a log.

Only the first three can be stored (``RunLogWriter.create(..., images=...)``), as a spec
string with an absolute path; ``rs.open_run(path, images=...)`` overrides what a log holds.
Every source returns ``(n, H, W, 3)`` uint8: grey images are repeated over three channels,
and when a size is asked for, each image is scaled so its longer side has that size and
centred on a black square (letterboxed rather than cropped or stretched, so a thumbnail
shows the whole face undistorted).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
from PIL import Image

from relabscope.errors import RelabscopeError

#: ``fn(sample_ids, keys)``: the pixels of those samples
ImageFunction = Callable[[np.ndarray, list[str]], Any]
#: what ``images=`` accepts: a spec string, a path, a list of paths, a source or a function
ImagesArg = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], "ImageSource", ImageFunction]

KINDS = ("folder", "array", "files")
ARRAY_SUFFIXES = (".npy", ".npz")
LIST_SUFFIXES = (".txt", ".lst", ".csv")


class ImageSourceError(RelabscopeError):
    """An image source that cannot be used, or an image it cannot give (one line)."""


class ImageSource(ABC):
    """The pixels of a run's samples, by sample id and key."""

    @abstractmethod
    def load(self, sample_ids: np.ndarray, keys: Sequence[str], size: int | None = None) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 images of ``sample_ids`` (whose keys are ``keys``),
        letterboxed to ``size`` x ``size`` when a size is given."""

    def spec(self) -> str | None:
        """The string a log stores to find this source again; None when it cannot be stored."""
        return None

    def describe(self) -> str:
        return self.spec() or type(self).__name__


class FolderImages(ImageSource):
    """Images under ``root``, found by the sample key as a relative path.

    A key that would leave ``root`` (``..``, an absolute path, a link out) is refused, so a
    log cannot make a dashboard read files elsewhere.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ImageSourceError(f"{self.root}: image folder not found")

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ImageSourceError(f"{key}: sample key leaves the image folder {self.root}")
        return path

    def load(self, sample_ids: np.ndarray, keys: Sequence[str], size: int | None = None) -> np.ndarray:
        return stack([read_image(self.path_of(key)) for key in keys], size)

    def spec(self) -> str:
        return f"folder:{self.root}"


class FileListImages(ImageSource):
    """One image path per sample id (``paths[i]`` is sample i's image).

    Args:
        paths: the paths, or a text file with one path per line (relative lines are taken
            from the file's folder).
    """

    def __init__(self, paths: Sequence[str | os.PathLike] | str | os.PathLike):
        self.list_file: Path | None = None
        if isinstance(paths, (str, os.PathLike)):
            self.list_file = Path(paths).expanduser().resolve()
            if not self.list_file.is_file():
                raise ImageSourceError(f"{self.list_file}: image list not found")
            base = self.list_file.parent
            lines = [line.strip() for line in self.list_file.read_text().splitlines()]
            self.paths = [base / line for line in lines if line]
        else:
            self.paths = [Path(p).expanduser().resolve() for p in paths]

    def load(self, sample_ids: np.ndarray, keys: Sequence[str], size: int | None = None) -> np.ndarray:
        n = len(self.paths)
        out = []
        for sid in np.asarray(sample_ids).reshape(-1):
            if not 0 <= int(sid) < n:
                where = self.list_file or "the image list"
                raise ImageSourceError(f"{where}: no image for sample {int(sid)} (it lists {n})")
            out.append(read_image(self.paths[int(sid)]))
        return stack(out, size)

    def spec(self) -> str | None:
        return f"files:{self.list_file}" if self.list_file else None

    def describe(self) -> str:
        return self.spec() or f"a list of {len(self.paths)} image paths"


class ArrayImages(ImageSource):
    """An (N, H, W[, C]) uint8 array in a ``.npy`` file (memory-mapped: only the rows asked
    for are read) or a ``.npz`` holding it as ``images``; row = sample id."""

    def __init__(self, file: str | os.PathLike):
        self.file = Path(file).expanduser().resolve()
        if not self.file.is_file():
            raise ImageSourceError(f"{self.file}: image array file not found")
        try:
            if self.file.suffix == ".npz":
                with np.load(self.file) as archive:
                    if "images" not in archive:
                        raise ImageSourceError(f"{self.file}: no 'images' array (it holds {', '.join(archive.files)})")
                    self.array = archive["images"]
            else:
                self.array = np.load(self.file, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ImageSourceError(f"{self.file}: not a numpy array file ({exc})") from None
        if self.array.ndim not in (3, 4) or self.array.dtype != np.uint8:
            raise ImageSourceError(f"{self.file}: images must be uint8 (N, H, W) or (N, H, W, C), "
                                   f"not {self.array.dtype} {self.array.shape}")

    def load(self, sample_ids: np.ndarray, keys: Sequence[str], size: int | None = None) -> np.ndarray:
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        n = len(self.array)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            bad = int(ids[(ids < 0) | (ids >= n)][0])
            raise ImageSourceError(f"{self.file}: no image for sample {bad} (it holds {n})")
        return stack(list(np.asarray(self.array[ids])), size)

    def spec(self) -> str:
        return f"array:{self.file}"


class FunctionImages(ImageSource):
    """Pixels from a function the user gives when opening the run (not storable)."""

    def __init__(self, function: ImageFunction):
        self.function = function

    def load(self, sample_ids: np.ndarray, keys: Sequence[str], size: int | None = None) -> np.ndarray:
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        got = self.function(ids, list(keys))
        images = [np.asarray(img) for img in got]
        if len(images) != len(ids):
            raise ImageSourceError(f"image function {_name(self.function)} returned {len(images)} images "
                                   f"for {len(ids)} samples")
        return stack(images, size)

    def describe(self) -> str:
        return f"function {_name(self.function)}"


def image_source(images: ImagesArg) -> ImageSource:
    """The source ``images`` names (see the module docstring for the kinds).

    Raises:
        ImageSourceError: the kind is unknown, or the folder / file does not exist.
    """
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (str, os.PathLike)):
        return _from_text(os.fspath(images))
    if callable(images):
        return FunctionImages(images)
    if isinstance(images, Sequence):
        return FileListImages(list(images))
    raise ImageSourceError(f"images must be a folder, an array file, an image list, a list of paths or a function, "
                           f"not {type(images).__name__}")


def storable_spec(images: ImagesArg) -> str:
    """The spec string a log stores for ``images`` (an absolute path, kind prefixed)."""
    spec = image_source(images).spec()
    if spec is None:
        raise ImageSourceError("images: a function or a list of paths cannot be stored in a run log; "
                               "write the paths to a text file, or pass the function to rs.open_run(path, images=...)")
    return spec


def outside(spec: str, roots: Sequence[str | os.PathLike]) -> Path | None:
    """The first file or folder a stored ``spec`` would read that lies under none of
    ``roots`` (None: all lie under one). A log is a file anyone can write: a server reads
    the images it names only inside the folders its operator serves. An image list is read
    (once its own file is inside) to check every path it lists."""
    bases = [Path(r).expanduser().resolve() for r in roots]

    def out(path: Path) -> bool:
        path = path.expanduser().resolve()
        return not any(path.is_relative_to(b) for b in bases)

    kind, sep, rest = spec.partition(":")
    where = Path(rest if sep and kind in KINDS else spec)
    if out(where):
        return where
    if kind == "files" or where.suffix in LIST_SUFFIXES:
        try:
            listed = FileListImages(where).paths
        except ImageSourceError:
            return None  # a missing list fails when the images are asked for, in its own words
        return next((p for p in listed if out(p)), None)
    return None


def _from_text(text: str) -> ImageSource:
    if not text.strip():
        raise ImageSourceError("images: an empty source (name a folder, an array file or an image list)")
    kind, sep, rest = text.partition(":")
    if sep and kind in KINDS and not _is_drive(text):
        if not rest.strip():
            raise ImageSourceError(f"images: {text!r} names no {kind}")
        if kind == "folder":
            return FolderImages(rest)
        return ArrayImages(rest) if kind == "array" else FileListImages(rest)
    path = Path(text).expanduser()
    if path.is_dir():
        return FolderImages(path)
    if path.suffix in ARRAY_SUFFIXES:
        return ArrayImages(path)
    if path.suffix in LIST_SUFFIXES:
        return FileListImages(path)
    if not path.exists():
        raise ImageSourceError(f"{text}: no such image folder or file")
    raise ImageSourceError(f"{text}: not an image source (a folder, a .npy/.npz array or a .txt list of paths; "
                           f"or prefix the kind: {', '.join(k + ':' for k in KINDS)})")


def _is_drive(text: str) -> bool:
    """``C:\\images`` is a path, not the kind "C"."""
    return len(text) > 2 and text[1] == ":" and text[0].isalpha() and text[2] in "\\/"


def read_image(path: Path) -> np.ndarray:
    """One image file as (H, W, 3) uint8; a one-line error naming the file otherwise."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise ImageSourceError(f"{path}: image not found") from None
    except (OSError, ValueError) as exc:
        raise ImageSourceError(f"{path}: not a readable image ({exc})") from None


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (H, W, 3) uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ImageSourceError(f"images must be uint8, not {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ImageSourceError(f"an image must be (H, W) or (H, W, 1|3|4), not {img.shape}")
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img[:, :, :3]


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled so its longer side is ``size``, centred on a black square."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resample = Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST
    scaled = np.asarray(Image.fromarray(image).resize((nw, nh), resample))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = scaled
    return out


def stack(images: Sequence[np.ndarray], size: int | None) -> np.ndarray:
    """Images as one (n, S, S, 3) array: letterboxed to ``size``, or to the largest side
    when no size is asked for and their shapes differ."""
    rgb = [as_rgb(img) for img in images]
    if not rgb:
        side = size or 1
        return np.zeros((0, side, side, 3), np.uint8)
    if size is None and len({img.shape for img in rgb}) == 1:
        return np.stack(rgb)
    side = size or max(max(img.shape[:2]) for img in rgb)
    return np.stack([letterbox(img, side) for img in rgb])


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__
