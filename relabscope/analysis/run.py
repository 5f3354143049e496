"""``Run``: one logged run, for notebooks, ``relabscope report`` and the dashboard.

A Run reads and forwards: every number it returns comes from an analysis function that
takes plain arrays, so each view is one call here and one testable function there.
Arrays are read lazily and cached per number of committed epochs, so a Run over a run
that is still training shows new epochs on the next call.

Conventions: epochs are 0-based rows (``epoch=-1`` is the last committed one); sample ids
are rows of ``samples`` (training samples first, then test samples); class ids are the
data set's own, named by ``class_names``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

import numpy as np
import pandas as pd

from relabscope.analysis import class_balance as _class_balance
from relabscope.analysis import compactness as _compactness
from relabscope.analysis import consistency as _consistency
from relabscope.analysis import distances as _distances
from relabscope.analysis import dynamics as _dynamics
from relabscope.analysis import flipflops as _flipflops
from relabscope.runlog.reader import RunLogReader
from relabscope.runlog.schema import SPLIT_CODES

if TYPE_CHECKING:
    from relabscope.analysis.gradcam import GradCamResult, ImageSource

LabelKind = Literal["effect", "given", "clean"]


class Run:
    """A run log opened for analysis. Cheap to open; reads on demand."""

    def __init__(self, path: str | Path):
        self.log = RunLogReader(path)
        self.path = self.log.path
        self.run_dir = self.path.parent
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return (f"Run({str(self.run_dir)!r}: {self.method} on {self.log.meta.get('dataset')}, "
                f"{self.num_epochs} epochs, {self.status})")

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def class_names(self) -> list[str]:
        return self.log.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_epochs(self) -> int:
        """Committed epochs (grows while the run trains)."""
        return self.log.num_epochs

    @property
    def config(self) -> dict[str, Any]:
        return self.log.config

    @property
    def meta(self) -> dict[str, Any]:
        return self.log.meta

    @property
    def method(self) -> str:
        return str(self.log.meta.get("method", self.config.get("method", "?")))

    @property
    def status(self) -> str:
        return self.log.status

    @property
    def relabels_at_all(self) -> bool:
        """Whether the method can relabel (views say so instead of drawing empty charts)."""
        return bool(self.meta.get("method_relabels", True))

    @cached_property
    def samples(self) -> pd.DataFrame:
        """One row per sample: sample_id, key, split ("train"/"test"), given_label,
        clean_label (-1 unknown), noisy (given != clean, when clean is known), and the data
        set's extra columns (a column per component for multi-valued extras)."""
        raw = self.log.samples
        split_names = {v: k for k, v in SPLIT_CODES.items()}
        df = pd.DataFrame({
            "sample_id": np.arange(len(raw["key"])),
            "key": raw["key"],
            "split": pd.Categorical([split_names[int(s)] for s in raw["split"]], categories=list(SPLIT_CODES)),
            "given_label": raw["given_label"].astype(np.int64),
            "clean_label": raw["clean_label"].astype(np.int64),
        })
        known = df["clean_label"] >= 0
        df["noisy"] = pd.array(np.where(known, df["given_label"] != df["clean_label"], False), dtype="boolean")
        df.loc[~known, "noisy"] = pd.NA
        for name, col in raw.items():
            if name in ("key", "split", "given_label", "clean_label"):
                continue
            if col.ndim == 1:
                df[name] = col
            else:
                for j in range(col.shape[1]):
                    df[f"{name}_{j}"] = col[:, j]
        return df

    @cached_property
    def _split(self) -> np.ndarray:
        return self.log.samples["split"]

    @property
    def train_mask(self) -> np.ndarray:
        return self._split == SPLIT_CODES["train"]

    @property
    def given_labels(self) -> np.ndarray:
        return self.log.samples["given_label"].astype(np.int64)

    @property
    def clean_labels(self) -> np.ndarray | None:
        """Clean labels, or None when the run's data set does not know them."""
        clean = self.log.samples["clean_label"].astype(np.int64)
        return clean if (clean >= 0).any() else None

    # ------------------------------------------------------------------ raw arrays
    def _cached(self, key: str, read: Any) -> Any:
        n = self.num_epochs
        if self._cache.get(key, (None,))[0] != n:
            self._cache[key] = (n, read())
        return self._cache[key][1]

    def labels(self) -> np.ndarray:
        """Label in effect per epoch and sample, ``(epochs, samples)`` int (-1: not seen)."""
        return self._cached("labels", lambda: self.log.epoch_array("label").astype(np.int64))

    def final_labels(self) -> np.ndarray:
        """Labels in effect after the last committed epoch (its relabels applied)."""
        return self._cached("final", lambda: _flipflops.final_labels(
            self.labels()[-1] if self.num_epochs else self.given_labels, self._events(),
            last_epoch=self.num_epochs - 1))

    def predictions(self) -> np.ndarray:
        return self._cached("pred", lambda: self.log.epoch_array("pred").astype(np.int64))

    def probabilities(self, epoch: int | None = None, *, sample_id: int | None = None) -> np.ndarray:
        """``(samples, classes)`` at ``epoch``, or ``(epochs, samples, classes)`` for None;
        with ``sample_id``, that sample's ``(epochs, classes)`` alone (read from disk without
        the rest: what a per-sample view wants from a large log)."""
        if sample_id is not None:
            return self.log.sample_array("prob", int(sample_id))
        if epoch is None:
            return self._cached("prob", lambda: self.log.epoch_array("prob"))
        return self.log.epoch_array("prob", epoch)

    def _events(self) -> np.ndarray:
        return self._cached("events", self.log.relabels)

    def relabel_events(self) -> pd.DataFrame:
        """Every relabel: epoch, step, sample_id, old, new, p_old, p_new."""
        ev = self._events()
        return pd.DataFrame({
            "epoch": ev["epoch"].astype(np.int64), "step": ev["step"], "sample_id": ev["sample"],
            "old": ev["old"].astype(np.int64), "new": ev["new"].astype(np.int64),
            "p_old": ev["p_old"], "p_new": ev["p_new"],
        })

    def distances(self, epoch: int | None = -1) -> np.ndarray:
        """Distance of each sample's embedding to each class mean: ``(samples, classes)`` at
        ``epoch``, or ``(epochs, samples, classes)`` for None."""
        if epoch is None:
            return self._cached("distance", lambda: self.log.epoch_array("distance"))
        return self.log.epoch_array("distance", epoch)

    def class_means(self, epoch: int = -1) -> np.ndarray:
        return self.log.epoch_array("class_mean", epoch)

    def embeddings(self, epoch: int = -1) -> np.ndarray:
        """``(samples, D)`` float16 embeddings kept at ``epoch`` (see ``embedding_epoch``)."""
        return self.log.embeddings(self.embedding_epoch(epoch))

    def embedding_epochs(self) -> list[int]:
        """The epochs whose embeddings the log kept (``--embed-every``, and the last)."""
        return [int(e) for e in self.log.embedding_epochs()]

    def embedding_epoch(self, epoch: int = -1) -> int:
        """The absolute epoch ``epoch`` names among those with embeddings: -1 is the latest
        epoch that kept them (mid-run with ``--embed-every`` > 1 that is not the last
        committed one); other negative values count back from the last committed epoch, as
        everywhere else. Raises ValueError when that epoch kept no embeddings."""
        kept = self.embedding_epochs()
        if not kept:
            raise ValueError(f"{self.path}: no embeddings kept yet (no committed epoch stored them)")
        if epoch == -1:
            return kept[-1]
        e = epoch + self.num_epochs if epoch < 0 else epoch
        if e not in kept:
            raise ValueError(f"{self.path}: no embeddings kept for epoch {epoch}; epochs with embeddings: {kept}")
        return e

    @property
    def fields(self) -> list[str]:
        """The method's own per-sample quantities: SCN's importance ``weight``, RUL's
        ``uncertainty``, DMUE's ``weight`` s and ``latent`` label distribution."""
        return self.log.fields

    def field(self, name: str, epoch: int | None = None, *, sample_id: int | None = None) -> np.ndarray:
        """A method's per-sample quantity, all epochs or one (``(epochs, samples, ...)`` or
        ``(samples, ...)``); with ``sample_id``, that sample's ``(epochs, ...)`` alone."""
        if name not in self.fields:
            raise KeyError(f"{self.path}: {self.method} logs no field {name!r}; it logs {self.fields or 'none'}")
        if sample_id is not None:
            return self.log.sample_array("field/" + name, int(sample_id))
        return self.log.epoch_array("field/" + name, epoch)

    # ------------------------------------------------------------------ views
    def metrics(self) -> pd.DataFrame:
        """Per epoch: test_acc, train_acc, train_loss, lr, seconds, relabels, and per-class
        test accuracy as ``acc_<class>``."""
        n = self.num_epochs
        df = pd.DataFrame({"epoch": np.arange(n)})
        for name in ("test_acc", "train_acc", "train_loss", "lr", "seconds"):
            df[name] = self.log.epoch_array(name)
        df["relabels"] = _flipflops.relabels_per_epoch(self._events()["epoch"], n)
        per_class = self.log.epoch_array("class_acc")
        for j, cls in enumerate(self.class_names):
            df[f"acc_{cls}"] = per_class[:, j] if n else []
        return df

    def confusion(self, epoch: int = -1) -> pd.DataFrame:
        """Test confusion matrix (rows given label, columns prediction)."""
        m = self.log.epoch_array("confusion", epoch)
        return pd.DataFrame(m, index=self.class_names, columns=self.class_names)

    def flipflops(self) -> pd.DataFrame:
        """Per training sample (paper Fig. 3): changes, flipflops, labels_visited,
        epochs_<class> (epochs spent in each class), first/last relabel epoch,
        final_label and final_is_clean. Computed once per committed epoch count; each call
        returns its own copy."""
        return self._cached("flipflops", lambda: _flipflops.flipflop_table(
            labels=self._train_columns(self.labels()),
            events=self._events(),
            given=self.given_labels[self.train_mask],
            clean=None if self.clean_labels is None else self.clean_labels[self.train_mask],
            sample_ids=np.flatnonzero(self.train_mask),
            class_names=self.class_names,
        )).copy()

    def class_counts(self) -> pd.DataFrame:
        """Per epoch and class: training samples under the labels in effect, beside the
        class's given (and, when known, clean) size. Epochs 0..E: row ``E`` (= num_epochs)
        counts the labels after the last epoch's relabels. Columns: epoch, class_id,
        class_name, count, given, clean, fraction_of_given."""
        mask = self.train_mask
        clean = self.clean_labels
        return self._cached("class_counts", lambda: _class_balance.class_counts(
            self._train_columns(self.labels()), self.final_labels()[mask], self.given_labels[mask],
            None if clean is None else clean[mask], self.class_names)).copy()

    def class_warnings(self, threshold: float = _class_balance.SHRINK_THRESHOLD) -> pd.DataFrame:
        """The classes relabelling emptied or shrank below ``threshold`` of their given size,
        one row each with the epoch, the counts and a one-line ``message``; empty when every
        class kept at least that share."""
        return _class_balance.class_warnings(self.class_counts(), threshold)

    def label_flow(self) -> pd.DataFrame:
        """Training samples by given label (rows) and label in effect after the last epoch
        (columns)."""
        mask = self.train_mask
        return _class_balance.label_flow(self.given_labels[mask], self.final_labels()[mask], self.class_names)

    def classes_without_mean(self, epoch: int = -1) -> list[str]:
        """Names of the classes that held no training sample at ``epoch``: they have no
        class mean, so every distance to them is NaN and geometry views leave them out."""
        if self.num_epochs == 0:
            return []
        return _class_balance.empty_classes(self.log.epoch_array("class_count", epoch), self.class_names)

    def oscillation_matrix(self) -> pd.DataFrame:
        """Counts of A -> B -> A cycles, rows A, columns B."""
        m = _flipflops.oscillation_matrix(self._events(), self.num_classes)
        return pd.DataFrame(m, index=self.class_names, columns=self.class_names)

    def oscillations(self) -> pd.DataFrame:
        """The A -> B -> A cycles behind ``oscillation_matrix``, one row each: sample_id, a,
        b (class ids) and epoch (of the relabel that returned to A). Counting rows per
        (a, b) gives the matrix (same history definition: a sample's first ``old``, then
        each ``new`` in time order)."""
        cycles = _flipflops.oscillation_cycles(self._events(), self.num_classes)
        return pd.DataFrame({"sample_id": cycles["sample"], "a": cycles["a"], "b": cycles["b"],
                             "epoch": cycles["epoch"]})

    def consistency(self) -> pd.Series:
        """The paper's claim as numbers: after a relabel old -> new, is the sample's
        embedding at the next epoch closer to the new class mean than to the old one?"""
        return _consistency.consistency_summary(self.consistency_events())

    def consistency_events(self) -> pd.DataFrame:
        """One row per relabel event with the distances before and after it."""
        return self._cached("consistency", lambda: _consistency.consistency_events(
            self._events(), lambda e: self.distances(e), self.num_epochs))

    def compactness(self, epoch: int = -1, labels: LabelKind = "effect", split: str = "train") -> pd.DataFrame:
        """Paper Table 2: per class, mean and std of each sample's distance to its class
        center. Centers are the epoch's class means (labels in effect); ``labels`` picks
        which label makes a class "its" class."""
        return _compactness.compactness(
            self.distances(epoch), self._label_kind(labels, epoch), self._split_mask(split), self.class_names)

    def distance_profile(self, sample_id: int, epochs: Iterable[int] | None = None) -> pd.DataFrame:
        """Paper Fig. 1/4 data: the sample's distance to every class mean at ``epochs``
        (default: before its first relabel, just after it, and the last epoch), with the
        given label, label in effect and clean label marked."""
        if epochs is None:
            epochs = _distances.key_epochs(self._events(), sample_id, self.num_epochs)
        return _distances.distance_profile(
            sample_id, list(epochs), lambda e: self.distances(e)[sample_id], self.labels()[:, sample_id],
            int(self.given_labels[sample_id]),
            None if self.clean_labels is None else int(self.clean_labels[sample_id]),
            self.class_names)

    def dynamics(self) -> pd.DataFrame:
        """Per training sample: forgetting events, area under the margin and data-map
        confidence/variability, each against the given label and the label in effect."""
        mask = self.train_mask
        return _dynamics.dynamics_table(
            probs=self._train_columns(self.probabilities()), preds=self._train_columns(self.predictions()),
            effect=self._train_columns(self.labels()), given=self.given_labels[mask],
            sample_ids=np.flatnonzero(mask))

    def noise_detection(self) -> pd.DataFrame:
        """When clean labels are known: AUROC of each dynamics score (and of being
        relabelled) for finding the samples whose given label is wrong."""
        clean = self._require_clean()[self.train_mask]
        noisy = pd.array(self.given_labels[self.train_mask] != clean, dtype="boolean")
        noisy[clean < 0] = pd.NA  # clean label unknown for this sample: not scored
        return _dynamics.noise_detection(self.dynamics(), self.flipflops(), noisy)

    def noise_recovery(self) -> pd.DataFrame:
        """Per epoch, when clean labels are known: precision and recall of relabel events,
        fraction of noisy samples corrected and of clean samples corrupted. Computed once per
        committed epoch count; each call returns its own copy."""
        clean = self._require_clean()
        mask = self.train_mask
        return self._cached("noise_recovery", lambda: _dynamics.noise_recovery(
            self._train_columns(self.labels()), self.final_labels()[mask], self._events(),
            self.given_labels, clean, mask)).copy()

    def project(
        self,
        method: Literal["umap", "tsne"] = "umap",
        epoch: int = -1,
        classes: Iterable[int] | None = None,
        max_points: int | None = None,
        seed: int = 0,
        split: str = "train",
    ) -> pd.DataFrame:
        """Paper Fig. 5: a 2-D t-SNE or UMAP of the embeddings kept at ``epoch``, for
        ``classes`` (by label in effect; None: all), stratified-subsampled to at most
        ``max_points``. Deterministic by ``seed``; cached next to the log. Columns:
        sample_id, x, y, label (in effect), given_label, clean_label."""
        from relabscope.analysis.projection import project_run

        return project_run(self, method=method, epoch=epoch, classes=classes,
                           max_points=max_points, seed=seed, split=split)

    def gradcam(self, sample_ids: Iterable[int], label: LabelKind | int = "given", **options: Any) -> "GradCamResult":
        """Paper Fig. 6: Grad-CAM on the last convolutional block of the run's final
        checkpoint, for each sample's given label, label in effect or a fixed class.
        Returns heat maps, images and overlays (see ``relabscope.analysis.gradcam``)."""
        from relabscope.analysis.gradcam import run_gradcam

        return run_gradcam(self, list(sample_ids), label=label, **options)

    def images(self, sample_ids: Iterable[int], size: int | None = None) -> np.ndarray:
        """The samples' images as training stored them: ``(n, H, W, 3)`` uint8 (grey images
        repeated over 3 channels), re-read from the data set the run's config names (the
        log keeps keys, not pixels). ``size``: the storage size asked for (default the
        run's image_size; the data set's native size when that is smaller). Raises
        ValueError for ids out of range, RunDirError when the images cannot be found."""
        from relabscope.analysis.gradcam import load_images

        ids = np.asarray(list(sample_ids), dtype=np.int64).reshape(-1)
        n = len(self._split)
        bad = ids[(ids < 0) | (ids >= n)]
        if len(bad):
            raise ValueError(f"sample id {int(bad[0])} out of range: the run has {n} samples (0..{n - 1})")
        pixels = load_images(self, ids, image_size=int(size or self.config["image_size"]))
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()

    @cached_property
    def _image_source(self) -> "ImageSource":
        """The run's data set, re-opened on the first image request and kept."""
        from relabscope.analysis.gradcam import open_image_source

        return open_image_source(self)

    # ------------------------------------------------------------------ helpers
    def _train_columns(self, per_epoch: np.ndarray) -> np.ndarray:
        """The training samples' columns of an ``(epochs, samples, ...)`` array: a view when
        they are the leading samples (as training writes them), else a copy."""
        ids = np.flatnonzero(self.train_mask)
        if len(ids) == 0 or ids[-1] == len(ids) - 1:
            return per_epoch[:, :len(ids)]
        return per_epoch[:, ids]

    def _require_clean(self) -> np.ndarray:
        clean = self.clean_labels
        if clean is None:
            raise ValueError(f"{self.path}: the run's data set has no clean labels")
        return clean

    def _split_mask(self, split: str) -> np.ndarray:
        if split == "all":
            return np.ones(len(self._split), bool)
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be train, test or all, not {split!r}")
        return self._split == SPLIT_CODES[split]

    def _label_kind(self, kind: LabelKind, epoch: int) -> np.ndarray:
        if kind == "effect":
            return self.labels()[epoch]
        if kind == "given":
            return self.given_labels
        if kind == "clean":
            return self._require_clean()
        raise ValueError(f"labels must be effect, given or clean, not {kind!r}")

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_run(path: str | Path) -> Run:
    """Open a run directory (or its ``run.h5``) for analysis."""
    return Run(path)
