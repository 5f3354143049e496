"""Checkpoints: everything a resumed run needs to continue exactly where it stopped.

``last.pt`` in the run's ``checkpoints/`` folder holds the model (including center-loss
centers, which are buffers), optimiser, scheduler, labels in effect, step counter and every
random generator's state. It is replaced atomically after each complete epoch, only once
the run log has committed that epoch, so the log never lags behind the checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relabscope.diskspace import disk_full, is_disk_full, reserve
from relabscope.errors import WriteError


def rng_state() -> dict[str, Any]:
    """The host's global random generators' states (Python, numpy, torch CPU).

    CUDA generators are not kept: every epoch reseeds torch's generators, CUDA's included,
    from the seed, the epoch and the rank (``loop.seed_globals``), and a per-device state
    could not be restored where another number of GPUs is visible."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s generators. The per-device CUDA states that older
    checkpoints hold (``"cuda"``) are ignored, whatever devices are visible now."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def to_cpu(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor cloned to the CPU (a snapshot that later
    training steps cannot change)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj




def save(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new, never half.

    The file's size is claimed on the disk first (``relabscope.diskspace``), so a full disk
    is one line saying how much is needed before anything is written. Any failed write
    (torch reports a full disk as a RuntimeError from its zip writer) leaves the previous
    checkpoint in place, removes the partial file and raises WriteError.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            reserve(fh.fileno(), 0, _size(state), path, "writing the checkpoint")
            torch.save(state, fh)
            fh.truncate()
        os.replace(tmp, path)
    except WriteError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(path, _size(state), "writing the checkpoint") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise WriteError(f"{path}: could not be written ({reason})") from None


def _size(obj: Any) -> int:
    """About the bytes ``torch.save`` writes for ``obj``: its tensors' storage, 64 bytes of
    alignment each, and 1 MiB for everything pickled around them."""
    sizes: list[int] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            sizes.append(value.untyped_storage().nbytes() + 64)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(obj)
    return sum(sizes) + (1 << 20)


def load(path: Path) -> dict[str, Any]:
    # Our own files hold numpy RNG state and Python tuples, so weights_only is off; only
    # checkpoints relabscope wrote in the user's run directory are read this way.
    return torch.load(path, map_location="cpu", weights_only=False)
