"""A small run log written by hand, for trying the analysis API, for docstring examples and
for tests that need a property a trained run only has by chance.

``example_run(path)`` writes, through :class:`~relabscope.runlog.writer.RunLogWriter` and
exactly as the trainer's hook would, a 5-epoch log of 64 training and 16 test samples in
4 classes whose relabelling empties one class ("anger", in epoch 1) and shrinks another
below half its size ("sadness"), while samples 0-3 flip-flop between "neutral" and
"happiness". Everything comes from seeded numpy arrays, so it is the same on every
machine (a trained run's relabels depend on floating point).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Generator, Iterator, TypedDict

import numpy as np
import tomli_w

from relabscope.rundir import CONFIG_NAME
from relabscope.runlog.schema import SampleTable
from relabscope.runlog.writer import RunLogWriter


class ExampleSpec(TypedDict):
    """The example run's shape and the class-balance events its relabels are written to cause."""

    class_names: list[str]
    per_class: int  # training samples per class
    num_test: int
    epochs: int
    embed_dim: int
    emptied: str  # the class the relabels of epoch ``emptied_epoch`` empty
    emptied_epoch: int
    shrunk: str  # the class they shrink below half its size, to ``shrunk_to`` samples
    shrunk_to: int


#: What the example run holds (the numbers its docstring and tests rely on).
EXAMPLE: ExampleSpec = {
    "class_names": ["neutral", "happiness", "sadness", "anger"],
    "per_class": 16,
    "num_test": 16,
    "epochs": 5,
    "embed_dim": 8,
    "emptied": "anger",
    "emptied_epoch": 1,
    "shrunk": "sadness",
    "shrunk_to": 6,
}


def example_run(run_dir: str | Path, *, seed: int = 0, method: str = "scn-c") -> Path:
    """Write the EXAMPLE run into ``run_dir`` (its ``run.h5`` and ``config.toml``) and
    return the directory: a run to try every call on without training one.

    Args:
        run_dir: the run directory to create (must not hold a run log yet).
        seed: seeds the embeddings, probabilities and losses (the relabels are fixed).
        method: the method name the log records (relabscope trained none: it only names it).

    Returns:
        ``run_dir`` as a Path, ready for :func:`relabscope.open_run`.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(example_run(tempfile.mkdtemp() + "/example"))
        >>> run.num_epochs, run.class_names
        (5, ['neutral', 'happiness', 'sadness', 'anger'])
        >>> run.class_warnings()["class_name"].tolist()
        ['sadness', 'anger']
    """
    for _ in _example_epochs(Path(run_dir), seed=seed, method=method):
        pass
    return Path(run_dir)


@contextlib.contextmanager
def live_example_run(run_dir: str | Path, *, epochs_done: int = 1, seed: int = 0,
                     method: str = "scn-c") -> Iterator[Path]:
    """The EXAMPLE run as it looks while training: its first ``epochs_done`` epochs
    committed and the writer still open until the ``with`` block ends (readers see a
    run in progress, as the dashboard's live view does).

    Example:
        >>> import tempfile, relabscope as rs
        >>> with live_example_run(tempfile.mkdtemp() + "/live", epochs_done=2) as path:
        ...     run = rs.open_run(path)
        ...     run.num_epochs, run.status
        (2, 'running')
    """
    if not 0 <= epochs_done <= EXAMPLE["epochs"]:
        raise ValueError(f"epochs_done must be within 0..{EXAMPLE['epochs']}, got {epochs_done}")
    epochs = _example_epochs(Path(run_dir), seed=seed, method=method)
    try:
        for _ in range(epochs_done + 1):  # the first step only creates the log
            next(epochs)
        yield Path(run_dir)
    finally:
        epochs.close()  # leaves the writer's with block: the log is closed


def _example_epochs(run_dir: Path, *, seed: int, method: str) -> Generator[int, None, None]:
    """Write the EXAMPLE log epoch by epoch, yielding the number of committed epochs
    (0 once the log exists, then after each epoch) with the writer open."""
    spec = EXAMPLE
    names, k, per = spec["class_names"], len(spec["class_names"]), spec["per_class"]
    n_train, n_test, d = k * per, spec["num_test"], spec["embed_dim"]
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    clean = np.r_[np.repeat(np.arange(k), per), np.arange(n_test) % k]
    given = clean.copy()
    given[[5, 21]] = [1, 0]  # two noisy labels with known clean ones
    samples = SampleTable(key=[f"img/{i:04d}.png" for i in range(n)],
                          split=np.r_[np.zeros(n_train), np.ones(n_test)], given_label=given, clean_label=clean)
    centers = np.eye(k, d, dtype=np.float32) * 6.0
    base = centers[clean] + rng.normal(0, 1.0, (n, d)).astype(np.float32)
    anger, sad, happy = names.index("anger"), names.index("sadness"), names.index("happiness")
    anger_ids = np.flatnonzero(given[:n_train] == anger)
    sad_moved = np.flatnonzero(given[:n_train] == sad)[:per - spec["shrunk_to"]]
    config = {"method": method, "dataset": "synthetic", "epochs": spec["epochs"], "noise": 0.0, "seed": seed,
              "embed_every": 1, "image_size": 16, "batch_size": 16}
    meta = {"method": method, "dataset": "synthetic", "num_train": n_train, "num_test": n_test,
            "method_relabels": 1, "device": "cpu", "created": "2026-01-01T00:00:00+00:00"}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text(tomli_w.dumps(config))
    effect = given[:n_train].copy()
    with RunLogWriter.create(run_dir, samples, names, embed_dim=d, fields={"weight": ()}, has_centers=True,
                             config=config, metadata=meta) as log:
        yield 0
        for e in range(spec["epochs"]):
            emb = base + rng.normal(0, 0.3, (n, d)).astype(np.float32)
            logits = rng.normal(0, 0.5, (n, k)).astype(np.float32)
            logits[np.arange(n), clean] += 2.0
            for step, ids in enumerate(np.array_split(np.arange(n_train), 4)):
                new = effect[ids].copy()
                if e == spec["emptied_epoch"]:
                    moved = np.isin(ids, anger_ids)
                    new[moved] = ids[moved] % 2  # to neutral or happiness
                    new[np.isin(ids, sad_moved)] = happy
                elif e >= 2:
                    flip = ids[ids < 4]
                    new[np.isin(ids, flip)] = np.where(effect[flip] == 0, happy, 0)
                log.log_batch(ids, effect[ids], logits[ids], emb[ids], loss=rng.random(len(ids)).astype(np.float32),
                              new_labels=new, step=e * 4 + step, fields={"weight": rng.random(len(ids))})
                effect[ids] = new
            test = np.arange(n_train, n)
            log.log_batch(test, given[test], logits[test], emb[test], phase="test")
            log.end_epoch(centers=centers, lr=1e-3, seconds=1.0, save_embeddings=True)
            yield e + 1
