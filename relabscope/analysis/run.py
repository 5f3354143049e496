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

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence, TypeVar

import numpy as np
import pandas as pd

from relabscope.analysis import class_balance as _class_balance
from relabscope.analysis import compactness as _compactness
from relabscope.analysis import consistency as _consistency
from relabscope.analysis import distances as _distances
from relabscope.analysis import dynamics as _dynamics
from relabscope.analysis import flipflops as _flipflops
from relabscope.analysis import review as _review
from relabscope.analysis import suspects as _suspects
from relabscope.models.spec import NO_MODEL, ModelSpec
from relabscope.analysis.projection import LANDMARKS, project_run
from relabscope.data.canaries import CANARY_COLUMN
from relabscope.data.corrections import labels_fingerprint
from relabscope.data.journal import CorrectionJournal, Decision, decision_keys
from relabscope.errors import NotApplicable, RunDirError
from relabscope.methods import METHODS
from relabscope.runlog.images import ImageSource, ImageSourceError, ImagesArg, image_source, outside
from relabscope.runlog.reader import RunLogReader
from relabscope.runlog.schema import EMBED_SOURCES, SPLIT_CODES

if TYPE_CHECKING:
    from relabscope.analysis.gradcam import DatasetIndex, GradCamResult

LabelKind = Literal["effect", "given", "clean"]
Match = _consistency.Match
_T = TypeVar("_T")


class Run:
    """A run log opened for analysis. Cheap to open; reads on demand, so it also follows a
    run that is still training (each call sees the epochs committed by then).

    Args:
        path: the run directory, or its ``run.h5``.
        images: where the samples' pixels are, overriding what the log recorded: a folder
            (keys are relative paths), an array file, an image list, or a function
            ``fn(sample_ids, keys)`` (see ``relabscope.runlog.images``). None: the log's own
            source, else the data set the run's config names.

    Raises:
        RunDirError: no readable run log there.
        ImageSourceError: ``images`` names no usable source.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.Run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> run.method, run.num_epochs, run.status
        ('scn-c', 5, 'finished')
        >>> run.labels().shape  # (epochs, samples): the label in effect
        (5, 80)
        >>> int(run.flipflops()["flipflops"].sum())
        8
        >>> run.close()
    """

    def __init__(self, path: str | Path, *, images: ImagesArg | None = None,
                 image_roots: Sequence[str | Path] | None = None):
        self.log = RunLogReader(path)
        self._image_roots = None if image_roots is None else list(image_roots)
        self.path = self.log.path
        self.run_dir = self.path.parent
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}  # key -> ((file generation, epochs), value)
        self._images: DatasetIndex | None = None  # the data set, opened on the first image request
        self._images_lock = threading.Lock()
        self._source: ImageSource | None = None
        if images is not None:
            self._source = image_source(images)

    def __repr__(self) -> str:
        return (f"Run({str(self.run_dir)!r}: {self.method} on {self.log.meta.get('dataset')}, "
                f"{self.num_epochs} epochs, {self.status})")

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        """The run directory's name: what titles and legends call the run."""
        return self.run_dir.name

    @property
    def class_names(self) -> list[str]:
        """Class names by class id (the data set's own order)."""
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
        """The resolved training settings the run was started (or last resumed) with."""
        return self.log.config

    @property
    def meta(self) -> dict[str, Any]:
        """What the log recorded about the run: data set, versions, device, sample counts."""
        return self.log.meta

    @property
    def method(self) -> str:
        """The method's name, e.g. "scn-c"."""
        return str(self.log.meta.get("method", self.config.get("method", "?")))

    @property
    def status(self) -> str:
        """"running", "finished", "diverged" or "interrupted"."""
        return self.log.status

    @property
    def damage(self) -> str | None:
        """The first damage a read of this run's log met (one line), or None."""
        return self.log.damage

    def touch(self) -> None:
        """Read a little of every per-epoch dataset, so a damaged log fails now rather than
        when a view first asks (``RunLogReader.touch``).

        Raises:
            LogDamagedError: the log is damaged.
        """
        self.log.touch()

    @property
    def trained_by_relabscope(self) -> bool:
        """Whether ``relabscope train`` wrote the run, so its checkpoint holds the model;
        a run logged by a callback or ``RunCapture`` is of the user's own model."""
        meta = self.meta
        return meta.get("writer") != "capture" and "framework" not in meta and meta.get("method") in METHODS

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
        df: pd.DataFrame = pd.DataFrame({
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
        """Per sample: whether it is a training sample."""
        return self._split_mask("train")

    @property
    def keys(self) -> np.ndarray:
        """Per sample: its key (stable across runs of one data set: a path or a row)."""
        keys: np.ndarray = self.log.samples["key"]
        return keys

    @cached_property
    def decision_keys(self) -> list[str]:
        """Per sample: what a reviewer's decision names it by, its key made unique where
        samples share one (``relabscope.data.journal.decision_keys``)."""
        return decision_keys(self.keys.tolist())

    @property
    def given_labels(self) -> np.ndarray:
        """Per sample: the label the data set gives (noise included)."""
        return self.log.samples["given_label"].astype(np.int64)

    @cached_property
    def canary_labels(self) -> np.ndarray:
        """Per sample: the label a canary had before relabscope moved it (``--canaries``,
        ``relabscope.data.canaries``); -1 for every other sample, and everywhere in a run
        without canaries."""
        column = self.log.samples.get(CANARY_COLUMN)
        labels: np.ndarray = np.full(len(self._split), -1, np.int64) if column is None else column.astype(np.int64)
        return labels

    @property
    def dataset_labels(self) -> np.ndarray:
        """Per sample: the label the data set gives, each canary's from before relabscope
        moved it (:attr:`given_labels` otherwise)."""
        canary = self.canary_labels
        labels: np.ndarray = np.where(canary >= 0, canary, self.given_labels)
        return labels

    @property
    def has_canaries(self) -> bool:
        """Whether the run was trained with canaries planted."""
        return bool((self.canary_labels >= 0).any())

    @property
    def clean_labels(self) -> np.ndarray | None:
        """Per sample: the clean label (-1 where unknown), or None when the run's data set
        knows none (then nothing can say which given labels are wrong)."""
        clean = self.log.samples["clean_label"].astype(np.int64)
        return clean if (clean >= 0).any() else None

    # ------------------------------------------------------------------ raw arrays
    def _cached(self, key: str, read: Callable[[], _T]) -> _T:
        """``read()``, cached until the run commits another epoch or a resume replaces its
        log file (the reader's generation)."""
        n = self.num_epochs
        version = (self.log.generation, n)
        if key not in self._cache or self._cache[key][0] != version:
            self._cache[key] = (version, read())
        value: _T = self._cache[key][1]  # each key holds what its one reader returns
        return value

    def _cached_table(self, key: str, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """``_cached`` for a table: each call returns its own copy, free to change."""
        table: pd.DataFrame = self._cached(key, read).copy()
        return table

    def labels(self) -> np.ndarray:
        """The label each sample trained on in each epoch.

        Returns:
            ``(epochs, samples)`` int64. A test sample holds its given label (the one the
            test pass scores against; relabelling never touches it); -1 marks a sample
            the epoch did not see (a hand-written log may skip some).
        """
        return self._cached("labels", lambda: self.log.epoch_array("label").astype(np.int64))

    def final_labels(self) -> np.ndarray:
        """The labels a next epoch would train on: the last epoch's relabels applied.

        Returns:
            ``(samples,)`` int64.
        """
        return self._cached("final", lambda: _flipflops.final_labels(
            self.labels()[-1] if self.num_epochs else self.given_labels, self._events(),
            last_epoch=self.num_epochs - 1))

    def predictions(self) -> np.ndarray:
        """The predicted class of each sample in each epoch.

        Returns:
            ``(epochs, samples)`` int64 (-1: not seen).
        """
        return self._cached("pred", lambda: self.log.epoch_array("pred").astype(np.int64))

    def probabilities(self, epoch: int | None = None, *, sample_id: int | None = None) -> np.ndarray:
        """Softmax probabilities, as the log stores them (float16).

        Args:
            epoch: one epoch (negative counts from the last committed one), or None for all.
            sample_id: one sample's probabilities over the epochs alone, read from disk
                without the rest: what a per-sample view wants from a large log.

        Returns:
            ``(samples, classes)`` for one epoch, ``(epochs, samples, classes)`` for all,
            ``(epochs, classes)`` with ``sample_id``.
        """
        if sample_id is not None:
            return self.log.sample_array("prob", int(sample_id))
        if epoch is None:
            return self._cached("prob", lambda: self.log.epoch_array("prob"))
        return self.log.epoch_array("prob", epoch)

    def _events(self) -> np.ndarray:
        return self._cached("events", self.log.relabels)

    def relabel_events(self) -> pd.DataFrame:
        """Every relabel of the committed epochs, in the order they happened.

        Returns:
            One row per event: epoch, step, sample_id, old, new (class ids), p_old, p_new
            (the probabilities of both labels when the method relabelled).
        """
        ev = self._events()
        events: pd.DataFrame = pd.DataFrame({
            "epoch": ev["epoch"].astype(np.int64), "step": ev["step"], "sample_id": ev["sample"],
            "old": ev["old"].astype(np.int64), "new": ev["new"].astype(np.int64),
            "p_old": ev["p_old"], "p_new": ev["p_new"],
        })
        return events

    @property
    def guards(self) -> list[str]:
        """The relabel guards the run had on, in the order they apply (empty when none was,
        or the log predates guards)."""
        return list(self.log.guards)

    def vetoes(self) -> pd.DataFrame:
        """The relabels the run's relabel guards refused (``--relabel-floor``,
        ``--relabel-hysteresis``, ``--relabel-agree``), beside ``relabel_events``' granted ones.

        Returns:
            One row per committed epoch, guard switched on and class: epoch, guard,
            class_id, class_name (the class the refused relabels would have left) and
            vetoed (how many). A relabel several guards would refuse counts once, for the
            first in the order they apply (hysteresis, agree, floor). No rows when the log
            records no vetoes: no guard was on, or the log predates guards.
        """
        def read() -> pd.DataFrame:
            counts = self.log.vetoes()
            columns = ["epoch", "guard", "class_id", "class_name", "vetoed"]
            if counts is None:
                return pd.DataFrame({c: pd.Series(dtype=object if c in ("guard", "class_name") else np.int64)
                                     for c in columns})
            epochs, guards, classes = np.meshgrid(np.arange(counts.shape[0]), np.arange(counts.shape[1]),
                                                  np.arange(counts.shape[2]), indexing="ij")
            table = pd.DataFrame({
                "epoch": epochs.ravel(), "guard": np.array(self.log.guards, dtype=object)[guards.ravel()],
                "class_id": classes.ravel(), "class_name": np.array(self.class_names, dtype=object)[classes.ravel()],
                "vetoed": counts.ravel().astype(np.int64),
            })
            recorded: pd.DataFrame = table[table["vetoed"] >= 0].reset_index(drop=True)
            return recorded

        return self._cached_table("vetoes", read)

    def distances(self, epoch: int | None = -1) -> np.ndarray:
        """Distance of each sample's embedding to each class mean (the mean of the training
        embeddings under the labels in effect): one definition for every method.

        Args:
            epoch: one epoch (negative counts from the last committed one), or None for all.

        Returns:
            ``(samples, classes)``, or ``(epochs, samples, classes)`` for None; NaN for a
            class without samples (it has no mean).
        """
        if epoch is None:
            return self._cached("distance", lambda: self.log.epoch_array("distance"))
        return self.log.epoch_array("distance", epoch)

    def class_means(self, epoch: int = -1) -> np.ndarray:
        """The class means the distances are measured to.

        Args:
            epoch: the epoch (negative counts from the last committed one).

        Returns:
            ``(classes, D)``; NaN rows for classes without samples.
        """
        return self.log.epoch_array("class_mean", epoch)

    def embeddings(self, epoch: int = -1) -> np.ndarray:
        """The embeddings the log kept at an epoch.

        Args:
            epoch: as in :meth:`embedding_epoch` (-1: the latest epoch that kept them).

        Returns:
            ``(samples, D)`` float16.
        """
        return self.log.embeddings(self.embedding_epoch(epoch))

    def embedding_epochs(self) -> list[int]:
        """The epochs whose embeddings the log kept (``--embed-every``, and the last).

        Returns:
            Absolute epochs, ascending.
        """
        return [int(e) for e in self.log.embedding_epochs()]

    def embedding_epoch(self, epoch: int = -1) -> int:
        """The absolute epoch ``epoch`` names among those with embeddings.

        Args:
            epoch: -1 is the latest epoch that kept them (mid-run with ``--embed-every`` > 1
                that is not the last committed one); other negative values count back from
                the last committed epoch, as everywhere else.

        Returns:
            The absolute epoch.

        Raises:
            ValueError: that epoch kept no embeddings.
        """
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
        """A method's per-sample quantity (one of :attr:`fields`).

        Args:
            name: the field, e.g. "weight".
            epoch: one epoch (negative counts from the last committed one), or None for all.
            sample_id: one sample's values over the epochs alone, read without the rest.

        Returns:
            ``(epochs, samples, ...)``, ``(samples, ...)`` for one epoch, or ``(epochs, ...)``
            with ``sample_id``.

        Raises:
            KeyError: the method logs no such field.
        """
        if name not in self.fields:
            raise KeyError(f"{self.path}: {self.method} logs no field {name!r}; it logs {self.fields or 'none'}")
        if sample_id is not None:
            return self.log.sample_array("field/" + name, int(sample_id))
        return self.log.epoch_array("field/" + name, epoch)

    # ------------------------------------------------------------------ views
    def metrics(self) -> pd.DataFrame:
        """The training curves.

        Returns:
            One row per epoch: epoch, test_acc, train_acc (against the labels in effect),
            train_loss, lr, seconds, relabels, and the per-class test accuracy as
            ``acc_<class>``.
        """
        n = self.num_epochs
        df: pd.DataFrame = pd.DataFrame({"epoch": np.arange(n)})
        for name in ("test_acc", "train_acc", "train_loss", "lr", "seconds"):
            df[name] = self.log.epoch_array(name)
        df["relabels"] = _flipflops.relabels_per_epoch(self._events()["epoch"], n)
        per_class = self.log.epoch_array("class_acc")
        for j, cls in enumerate(self.class_names):
            df[f"acc_{cls}"] = per_class[:, j] if n else []
        return df

    def confusion(self, epoch: int = -1) -> pd.DataFrame:
        """The test confusion matrix.

        Args:
            epoch: the epoch (negative counts from the last committed one).

        Returns:
            Counts, rows the given label and columns the prediction, both by class name.
        """
        m = self.log.epoch_array("confusion", epoch)
        return self._by_class(m)

    def flipflops(self) -> pd.DataFrame:
        """Relabel inconsistency per training sample (paper Fig. 3): a flip-flop is a relabel
        back to a label the sample held before. Computed once per committed epoch count;
        each call returns its own copy.

        Returns:
            One row per training sample: sample_id, given_label, clean_label, final_label,
            changes (relabels), flipflops, labels_visited, epochs_<class> (epochs spent in
            each class), first_relabel_epoch, last_relabel_epoch, final_is_clean.
        """
        return self._cached_table("flipflops", lambda: _flipflops.flipflop_table(
            labels=self._train_columns(self.labels()),
            events=self._events(),
            given=self.given_labels[self.train_mask],
            clean=None if self.clean_labels is None else self.clean_labels[self.train_mask],
            sample_ids=np.flatnonzero(self.train_mask),
            class_names=self.class_names,
        ))

    def class_counts(self) -> pd.DataFrame:
        """Class sizes under the labels in effect, beside each class's given (and, when known,
        clean) size: relabelling can empty a class, which a flip-flop count never shows. The
        given size is the data set's, canaries counted under their label from before the
        flip (:attr:`dataset_labels`).

        Returns:
            One row per epoch 0..E and class (row ``E`` = num_epochs counts the labels after
            the last epoch's relabels): epoch, class_id, class_name, count, given, clean,
            fraction_of_given.
        """
        mask = self.train_mask
        clean = self.clean_labels
        return self._cached_table("class_counts", lambda: _class_balance.class_counts(
            self._train_columns(self.labels()), self.final_labels()[mask], self.dataset_labels[mask],
            None if clean is None else clean[mask], self.class_names))

    def class_warnings(self, threshold: float = _class_balance.SHRINK_THRESHOLD) -> pd.DataFrame:
        """The classes relabelling emptied or shrank too far.

        Args:
            threshold: the share of its given size below which a class is reported.

        Returns:
            One row per such class (none when every class kept that share): class_id,
            class_name, kind ("emptied" or "shrunk"), given, lowest, lowest_epoch,
            below_epoch, emptied_epoch, final and a one-line message.
        """
        return _class_balance.class_warnings(self.class_counts(), threshold)

    def label_flow(self) -> pd.DataFrame:
        """Where relabelling moved the training samples.

        Returns:
            Sample counts, rows the given label and columns the label in effect after the
            last epoch, both by class name.
        """
        mask = self.train_mask
        return _class_balance.label_flow(self.given_labels[mask], self.final_labels()[mask], self.class_names)

    def embedding_sources(self) -> list[str]:
        """Per committed epoch, the pass whose training embeddings (and so class means and
        distances) the log kept: "train" (the training forward: augmented images, train
        mode, weights moving through the epoch) or "probe" (``--probe-every``: the images
        again, unaugmented, in eval mode after the epoch). Every geometry figure says which.

        Returns:
            One of "train" / "probe" per epoch.
        """
        names = {code: name for name, code in EMBED_SOURCES.items()}
        return list(self._cached("embed_source", lambda: [names[int(v)] for v in self.log.epoch_array("embed_source")]))

    def classes_without_mean(self, epoch: int = -1) -> list[str]:
        """The classes that held no training sample at an epoch: they have no class mean, so
        every distance to them is NaN and geometry views leave them out.

        Args:
            epoch: the epoch (negative counts from the last committed one).

        Returns:
            Their names (none before the first committed epoch).
        """
        if self.num_epochs == 0:
            return []
        return _class_balance.empty_classes(self.log.epoch_array("class_count", epoch), self.class_names)

    def oscillation_matrix(self) -> pd.DataFrame:
        """Which pairs of classes samples oscillate between.

        Returns:
            Counts of A -> B -> A cycles, rows A and columns B, both by class name.
        """
        m = _flipflops.oscillation_matrix(self._events(), self.num_classes)
        return self._by_class(m)

    def oscillations(self) -> pd.DataFrame:
        """The A -> B -> A cycles behind :meth:`oscillation_matrix` (same history: a sample's
        first ``old``, then each ``new`` in time order), so counting rows per (a, b) gives it.

        Returns:
            One row per cycle: sample_id, a, b (class ids) and epoch (of the relabel that
            returned to A).
        """
        cycles = _flipflops.oscillation_cycles(self._events(), self.num_classes)
        table: pd.DataFrame = pd.DataFrame({"sample_id": cycles["sample"], "a": cycles["a"], "b": cycles["b"],
                                            "epoch": cycles["epoch"]})
        return table

    def consistency(self, *, band: float = _consistency.CONTROL_BAND, match: Match = "pair") -> pd.Series:
        """The paper's claim as numbers: after a relabel old -> new, once the sample has
        trained on ``new``, is its embedding closer to the new class mean than to the old
        one, and how much more often than for samples the rule nearly relabelled?

        Args:
            band: the control group's margins lie within ``band`` below the relabel
                threshold (:meth:`consistency_control`).
            match: match controls to events on the class pair ("pair") or on the class
                pair and epoch ("pair_epoch").

        Returns:
            events, evaluated (events with an "after" epoch), closer_before, closer_to_new,
            control, control_closer, matched_events, closer_vs_control (relabelled minus
            control: the compared figure), mean_gap_change, mean_rel_gap_change (of
            d(new) - d(old)), undone and undone_fraction (relabelled back to the old label
            later); docs/analysis.md defines each.
        """
        return _consistency.consistency_summary(self.consistency_events(), self.consistency_control(band=band),
                                                match=match, num_classes=self.num_classes)

    def consistency_events(self) -> pd.DataFrame:
        """The relabel events behind :meth:`consistency`: "before" is the epoch of the
        relabel, "after" the first epoch whose embeddings have seen an update under the new
        label, from the same kind of pass (epoch + 2 for training-pass embeddings, + 1 for
        a probe pass; NA where the log has none).

        Returns:
            One row per relabel event: epoch, sample_id, old, new, before_pass, after_epoch,
            after_pass, the distances to both class means before and after it
            (d_old_before, d_new_before, d_old_after, d_new_after), closer_before,
            closer_to_new, gap_change, rel_gap_change, undone.
        """
        return self._cached_table("consistency", lambda: _consistency.consistency_events(
            self._events(), self.distances, self.embedding_sources()))

    def consistency_control(self, *, band: float = _consistency.CONTROL_BAND) -> pd.DataFrame:
        """The control group of :meth:`consistency`: in each epoch the rule was applied,
        the training samples it did not relabel whose margin ``p_max - p_label`` was
        positive and within ``band`` below the relabel threshold (the run's ``delta``),
        followed from that epoch like a relabel to their argmax class.

        Args:
            band: the width of the margin band below the threshold.

        Returns:
            One row per control: epoch, sample_id, old (label in effect), new (argmax
            class), margin, and :meth:`consistency_events`' columns from before_pass to
            rel_gap_change.
        """
        def read() -> pd.DataFrame:
            events = self._events()
            epochs = _consistency.relabelling_epochs(self.config, events, self.num_epochs) \
                if self.relabels_at_all else range(0)  # a method without a relabel rule has nothing to nearly do
            return _consistency.consistency_control(
                events, lambda e: self.log.epoch_array("label", e), self.probabilities, self.train_mask, epochs,
                self.distances, self.embedding_sources(), _consistency.relabel_threshold(self.config, events), band)
        return self._cached_table(f"consistency_control:{band!r}", read)

    def consistency_by_lag(self, max_lag: int | None = None, *, band: float = _consistency.CONTROL_BAND,
                           match: Match = "pair") -> pd.DataFrame:
        """For k = 0, 1, 2, ... epochs after each relabel, the fraction of relabelled
        samples closer to the new class mean, beside the control group followed the same
        way: when (and whether) the embedding follows the relabel.

        Args:
            max_lag: the last lag (default: the furthest any event reaches in the log).
            band: as in :meth:`consistency_control`.
            match: as in :meth:`consistency`.

        Returns:
            One row per pass and lag: pass, lag, trained_on_new, events, closer_to_new,
            control, control_closer, matched_events, closer_vs_control.
        """
        return self._cached_table(f"consistency_lag:{max_lag}:{band!r}:{match}", lambda: _consistency.consistency_by_lag(
            self._events(), self.consistency_control(band=band), self.distances, self.embedding_sources(),
            num_classes=self.num_classes, max_lag=max_lag, match=match))

    def compactness(self, epoch: int = -1, labels: LabelKind = "effect", split: str = "train", *,
                    competitors: Iterable[str] | None = None) -> pd.DataFrame:
        """Paper Table 2: how tightly each class gathers around its center, the geometry
        the center loss of "-C" methods pulls on. The centers are the epoch's class means
        under the labels in effect whichever ``labels`` is chosen (docs/analysis.md says
        why); a class relabelled empty has none, and its samples are counted, not dropped.

        Args:
            epoch: the epoch (negative counts from the last committed one).
            labels: which label makes a class a sample's own: "effect", "given" or "clean".
            split: "train", "test" or "all".
            competitors: the class names a sample's nearest *other* center is taken among
                (default: every class with a mean; ``Comparison`` passes the classes with a
                mean in both runs).

        Returns:
            One row per class name: n (its samples under ``labels``), n_without_mean (those
            whose class has no mean), scale-free ratio, nearest_own and silhouette, raw
            mean and std of the distance to the own center.
        """
        mask = None
        if competitors is not None:
            wanted = set(competitors)
            unknown = wanted - set(self.class_names)
            if unknown:
                raise ValueError(f"competitors: no class named {sorted(unknown)[0]!r}; classes: {self.class_names}")
            mask = np.array([name in wanted for name in self.class_names])
        return _compactness.compactness(self.distances(epoch), self._label_kind(labels, epoch),
                                        self._split_mask(split), self.class_names, competitors=mask)

    def distance_profile(self, sample_id: int, epochs: Iterable[int] | None = None) -> pd.DataFrame:
        """Paper Fig. 1/4 data: one sample's distance to every class mean around its relabel.

        Args:
            sample_id: the sample.
            epochs: the epochs to show; default: before its first relabel, just after it,
                and the last epoch.

        Returns:
            One row per epoch and class: epoch, class_id, class_name, distance (raw units),
            relative_distance (distance / the epoch's mean distance between class means:
            scale-free), is_given, is_effect, is_clean, label_in_effect.
        """
        if epochs is None:
            epochs = _distances.key_epochs(self._events(), sample_id, self.num_epochs)
        return _distances.distance_profile(
            sample_id, list(epochs), lambda e: self.distances(e)[sample_id], self.labels()[:, sample_id],
            int(self.given_labels[sample_id]),
            None if self.clean_labels is None else int(self.clean_labels[sample_id]),
            self.class_names, spread_at=lambda e: _distances.center_spread(self.class_means(e)))

    def dynamics(self) -> pd.DataFrame:
        """Training dynamics per training sample, each against the given label and the label
        in effect: the usual noisy-label detectors, beside what relabelling did.

        Returns:
            One row per training sample: sample_id, forgetting_<given|effect> (forgetting
            events), aum_<...> (area under the margin), confidence_<...> and
            variability_<...> (the data map's axes).
        """
        mask = self.train_mask
        return self._cached_table("dynamics", lambda: _dynamics.dynamics_table(
            probs=self._train_columns(self.probabilities()), preds=self._train_columns(self.predictions()),
            effect=self._train_columns(self.labels()), given=self.given_labels[mask],
            sample_ids=np.flatnonzero(mask)))

    def noise_detection(self) -> pd.DataFrame:
        """How well each dynamics score (and being relabelled) finds the samples whose given
        label is wrong.

        Returns:
            One row per score: score, auroc, direction (whether high or low values point
            to noise), n.

        Raises:
            ValueError: the run's data set knows no clean labels.
        """
        clean = self._require_clean()[self.train_mask]
        noisy = pd.array(self.given_labels[self.train_mask] != clean, dtype="boolean")
        noisy[clean < 0] = pd.NA  # clean label unknown for this sample: not scored
        return _dynamics.noise_detection(self.dynamics(), self.flipflops(), noisy)

    def noise_recovery(self) -> pd.DataFrame:
        """Whether relabelling repaired the noise. Computed once per committed epoch count;
        each call returns its own copy.

        Returns:
            One row per epoch: epoch, relabels, relabel_precision (new label = clean),
            relabel_recall, noisy_corrected and clean_corrupted (fractions).

        Raises:
            ValueError: the run's data set knows no clean labels.
        """
        clean = self._require_clean()
        mask = self.train_mask
        return self._cached_table("noise_recovery", lambda: _dynamics.noise_recovery(
            self._train_columns(self.labels()), self.final_labels()[mask], self._events(),
            self.given_labels, clean, mask))

    def canary_recovery(self) -> pd.DataFrame:
        """Is relabelling helping on this data? What it did to the canaries (``--canaries``)
        and to the rest, per epoch, without clean labels: :meth:`noise_recovery` with each
        canary's label from before the flip as its right label and every other sample's
        given label as its own.

        Returns:
            One row per epoch: epoch, relabels, canaries_back (fraction of canaries whose
            label after the epoch is their label from before the flip: a planted error
            undone) and others_away (fraction of the other training samples whose label
            after the epoch is not their given one: at most what relabelling corrupted,
            since some of those were wrong and are now right).

        Raises:
            ValueError: the run has no canaries.
        """
        if not self.has_canaries:
            raise ValueError(f"{self.path}: the run has no canaries (train it with --canaries 0.02)")
        mask, canary = self.train_mask, self.canary_labels
        reference = np.where(canary >= 0, canary, self.given_labels)

        def table() -> pd.DataFrame:
            recovery = _dynamics.noise_recovery(self._train_columns(self.labels()), self.final_labels()[mask],
                                                self._events(), self.given_labels, reference, mask)
            return recovery.rename(columns={"noisy_corrected": "canaries_back", "clean_corrupted": "others_away"})[
                ["epoch", "relabels", "canaries_back", "others_away"]]

        return self._cached_table("canary_recovery", table)

    def suspects(self, *, window: int | None = None, signals: Iterable[str] | None = None) -> pd.DataFrame:
        """The training samples whose given labels are most likely wrong, most suspect first:
        no clean labels needed (``relabscope.analysis.suspects`` defines every column).

        Args:
            window: the last epochs whose probabilities the flag and the suggestion average
                (default: the later half of the committed epochs).
            signals: the signals the score combines (default: ``DEFAULT_SIGNALS``; those the
                run lacks drop out).

        Returns:
            One row per training sample: sample_id, key, rank (1 = most suspect), score,
            flag, given_label, suggested_label, confident_label (-1: none), final_label,
            the signals and the baselines low_p_given and low_p_last; ``attrs`` name the
            signals used, the flag's per-class thresholds and the window.
        """
        mask = self.train_mask
        chosen = None if signals is None else tuple(signals)
        return self._cached_table(f"suspects:{window}:{chosen}", lambda: _suspects.suspects(
            _suspects.signal_table(
                self.dynamics(), self.flipflops(), probs=self._train_columns(self.probabilities()),
                preds=self._train_columns(self.predictions()), labels=self._train_columns(self.labels()),
                final=self.final_labels()[mask],
                distances=self._train_columns(self.distances(None)), given=self.given_labels[mask],
                relabels=self.relabels_at_all, window=window),
            signals=chosen, keys=[self.decision_keys[i] for i in np.flatnonzero(mask)]))

    def noise_matrix_estimate(self, *, window: int | None = None) -> np.ndarray:
        """The data's label errors as this run saw them: ``(K, K)``, row-stochastic, the
        estimated probability that a training sample of class a was given class b
        (confident learning's calibrated joint over :meth:`suspects`' confident labels,
        canaries left out). Saved as CSV (``np.savetxt(path, m, delimiter=",")``) it is a
        ``--canary-matrix`` for the next run, whose canaries then resemble these errors,
        or a ``--noise-matrix`` to train on errors like them."""
        table = self.suspects(window=window)
        real = self.canary_labels[table["sample_id"].to_numpy()] < 0
        return _suspects.noise_matrix_estimate(table["given_label"].to_numpy()[real],
                                               table["confident_label"].to_numpy()[real], self.num_classes)

    def suspect_quality(self, *, window: int | None = None, signals: Iterable[str] | None = None,
                        truth: Literal["auto", "canaries", "clean"] = "auto",
                        confidence: float = 0.95) -> pd.DataFrame:
        """How well :meth:`suspects` finds the wrong given labels, beside each single signal,
        the flag and the plain "low probability of the given label" baseline, with
        confidence intervals.

        On a run trained with canaries (``--canaries``) no clean labels are needed: the
        truth is which training samples are canaries, and every figure estimates how well
        a ranking finds wrong labels. The other samples may hold natural noise, which a
        good ranking puts high too, where it counts against it: on noisy data the
        estimate is low (``benchmarks/suspects.py`` measures by how much, where the truth
        is known). ``attrs["truth"]`` says which truth was used.

        Args:
            window: as in :meth:`suspects`.
            signals: as in :meth:`suspects`.
            truth: "canaries", "clean" (given != clean label), or "auto": canaries when
                the run has them, else clean labels.
            confidence: the intervals' coverage.

        Returns:
            One row per scorer: scorer, kind, auroc, auroc_low, auroc_high,
            average_precision, ap_low, ap_high, n, noisy (canaries, with that truth).

        Raises:
            ValueError: the run has neither canaries nor clean labels (or not the one
                ``truth`` names).
        """
        if truth == "auto":
            truth = "canaries" if self.has_canaries else "clean"
        if truth not in ("canaries", "clean"):
            raise ValueError(f"truth must be auto, canaries or clean, not {truth!r}")
        table = self.suspects(window=window, signals=signals)
        ids = table["sample_id"].to_numpy()
        if truth == "canaries":
            if not self.has_canaries:
                raise ValueError(f"{self.path}: the run has no canaries (train it with --canaries 0.02)")
            noisy = pd.array(self.canary_labels[ids] >= 0, dtype="boolean")
        else:
            clean = self._require_clean()
            noisy = pd.array(self.given_labels[ids] != clean[ids], dtype="boolean")
            noisy[clean[ids] < 0] = pd.NA
        quality = _suspects.suspect_quality(table, noisy, confidence=confidence)
        quality.attrs.update(truth=truth, confidence=confidence)
        return quality

    def project(
        self,
        method: Literal["umap", "tsne", "pca"] = "umap",
        epoch: int = -1,
        classes: Iterable[int] | None = None,
        max_points: int | None = None,
        seed: int = 0,
        split: str = "train",
        landmarks: int | None = LANDMARKS,
    ) -> pd.DataFrame:
        """Paper Fig. 5: a 2-D map of the embeddings, deterministic by ``seed`` and cached
        next to the log (UMAP takes seconds to minutes; a dashboard asks again and again).

        Args:
            method: "umap", "tsne" or "pca" (about a second at any size; keeps global
                geometry, separates less).
            epoch: as in :meth:`embedding_epoch`.
            classes: class ids to keep (by label in effect); None keeps all.
            max_points: stratified subsample to at most this many points; None keeps all.
            seed: the random state of the subsample and the map.
            split: "train", "test" or "all".
            landmarks: UMAP / t-SNE lay out at most this many points and place the others
                at the weighted mean of their nearest landmarks; None lays out all (slow).

        Returns:
            One row per point: sample_id, x, y, label (in effect), given_label, clean_label.
        """
        return project_run(self, method=method, epoch=epoch, classes=classes,
                           max_points=max_points, seed=seed, split=split, landmarks=landmarks)

    def gradcam(self, sample_ids: Iterable[int], label: LabelKind | int = "given", **options: Any) -> "GradCamResult":
        """Paper Fig. 6: where the final model looks, as Grad-CAM on its last convolutional
        block. Loads the run's checkpoint and images (torch and captum).

        Args:
            sample_ids: the samples.
            label: the class to explain per sample: "given", "effect" (after the last
                epoch's relabels), "clean", or one class id for all.
            **options: ``device``, ``batch_size``, ``image_size``; for a model of your
                own (a run relabscope did not train) ``model`` (a module, a factory, or a
                :class:`~relabscope.models.spec.ModelSpec`), ``weights``, ``layer``
                and ``transform`` (see ``relabscope.analysis.gradcam.run_gradcam``);
                without ``model``, the one the run recorded (``RunCapture(model_factory=)``).

        Returns:
            Heat maps, images, overlays, the explained labels and the probabilities.

        Raises:
            NotApplicable: a run of a model of your own, and no model named or recorded.
            RunDirError: the checkpoint or the images cannot be found.
        """
        from relabscope.analysis.gradcam import run_gradcam  # torch and captum: loaded for Grad-CAM only

        spec = options.pop("model", None)
        if spec is None and not self.trained_by_relabscope:
            spec = ModelSpec.from_config(self.config)
            if spec is None:
                raise NotApplicable(NO_MODEL)
        if isinstance(spec, ModelSpec):
            options = {**spec.gradcam_options(), **{k: v for k, v in options.items() if v is not None}}
        elif spec is not None:
            options["model"] = spec
        return run_gradcam(self, list(sample_ids), label=label, **options)

    @property
    def has_images(self) -> bool:
        """Whether the run knows where its pixels are: a source given at open, one the log
        recorded, or the relabscope data set its config names. Cheap: nothing is opened
        (a folder that has since moved still fails on the first ``images`` call)."""
        return self._source is not None or (bool(self.meta.get("images")) and self.images_withheld is None) \
            or "dataset" in self.config

    @cached_property
    def images_withheld(self) -> str | None:
        """Why the images this run's log names are not read (one line), or None. A server
        opens runs with the folders it serves as ``image_roots``: a log (anyone can write
        one, naming any folder, e.g. ``folder:/``) gets its images only from inside them."""
        spec = str(self.meta.get("images") or "")
        if self._source is not None or self._image_roots is None or not spec:
            return None
        found = outside(spec, self._image_roots)
        if found is None:
            return None
        return (f"its log names images at {found}, outside the folders this server serves: serve the run with "
                "--images SOURCE to show them")

    @property
    def image_source(self) -> str | None:
        """Where the images come from, in words (None: the run has none)."""
        if self._source is not None:
            return self._source.describe()
        if self.meta.get("images"):
            return str(self.meta["images"])
        if "dataset" in self.config:
            return f"data set {self.config.get('data') or self.config['dataset']}"
        return None

    def images(self, sample_ids: Iterable[int], size: int | None = None) -> np.ndarray:
        """The samples' images: re-read from the image source (see ``has_images``); for a
        run relabscope trained, from its data set exactly as training stored them.

        Args:
            sample_ids: the samples.
            size: the side length asked for (data set: the storage size, default the run's
                image_size, the native size when that is smaller; other sources: each image
                letterboxed to size x size, default as stored).

        Returns:
            ``(n, H, W, 3)`` uint8 (grey images repeated over 3 channels).

        Raises:
            ValueError: a sample id is out of range.
            RunDirError: the run has no image source, or its data set cannot be found.
            ImageSourceError: an image cannot be read from the run's image source.
        """
        ids = np.asarray(list(sample_ids), dtype=np.int64).reshape(-1)
        n = len(self._split)
        bad = ids[(ids < 0) | (ids >= n)]
        if len(bad):
            raise ValueError(f"sample id {int(bad[0])} out of range: the run has {n} samples (0..{n - 1})")
        source = self._own_source
        if source is not None:
            keys = self.log.samples["key"]
            return source.load(ids, [str(keys[i]) for i in ids], size)
        if "dataset" not in self.config:
            raise RunDirError(f"{self.run_dir}: the run has no image source; open it with "
                              "rs.open_run(path, images=FOLDER|ARRAY|LIST|FUNCTION) or serve it with --images")
        from relabscope.analysis.gradcam import load_images  # torch: reading a log does not load it

        pixels = load_images(self, ids, image_size=int(size or self.config["image_size"]))
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()

    @property
    def _own_source(self) -> ImageSource | None:
        """The source given at open or recorded in the log (opened on first use), else None
        (then the data set in the run's config, if any, holds the images)."""
        if self._source is None and self.meta.get("images"):
            if self.images_withheld is not None:
                raise RunDirError(f"{self.path}: {self.images_withheld}")
            try:
                self._source = image_source(str(self.meta["images"]))
            except ImageSourceError as exc:
                raise RunDirError(f"{self.path}: its recorded images are gone: {exc}") from None
        return self._source

    @property
    def _image_source(self) -> "DatasetIndex":
        """The run's data set, re-opened on the first image request and kept.

        Guarded by this run's own lock, not ``functools.cached_property``'s: on Python 3.11
        that is one lock for every instance, so a dashboard thread re-opening one run's data
        set (minutes for a large one, or drawing the synthetic faces) would stall image
        requests of every other run."""
        with self._images_lock:
            if self._images is None:
                from relabscope.analysis.gradcam import open_image_source  # torch: not needed to read a log

                self._images = open_image_source(self)
            return self._images

    # ------------------------------------------------------------------ review
    @cached_property
    def journal(self) -> CorrectionJournal:
        """The reviewer decisions about this run's samples: ``corrections.journal`` and
        ``corrections.csv`` in the run directory (``relabscope.data.corrections``)."""
        return CorrectionJournal(self.run_dir, self.class_names)

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the training samples' keys and given labels, recorded with every
        decision made on this run: training on the decisions later can tell a run whose
        labels differ (``relabscope.data.corrections.labels_fingerprint``)."""
        train = self.train_mask
        return labels_fingerprint([k for k, t in zip(self.decision_keys, train) if t], self.given_labels[train],
                                  self.class_names)

    def review(self, sample_ids: int | Iterable[int], decision: str, label: str | int | None = None, *,
               reviewer: str = "", base: int | Iterable[int] | None = None, shown: int | str | None = None,
               source: str = "python") -> list[Decision]:
        """Record a reviewer's decision about samples, on disk when the call returns: the
        same decisions the dashboard's review page makes (``relabscope.analysis.review``).
        Each records the label the sample is given and this run's :attr:`fingerprint`, so
        it is applied later only where the sample has that label.

        Args:
            sample_ids: one sample id or several; each is decided in turn (one write).
            decision: "keep", "suggested" (take :meth:`suspects`' suggestion: a training
                sample), "relabel" (to ``label``), "ambiguous" or "drop".
            label: the class name or id of a relabel.
            reviewer: who decided.
            base: the ``seq`` of each sample's decision the reviewer saw (0: undecided), one
                for all or one per sample: a sample decided since is refused. None replaces
                whatever is there.
            shown: for "suggested", the suggestion the reviewer saw (class name or id): a
                sample whose suggestion is another one now (the run trained on) is refused.
            source: where the decision came from ("python", "dashboard", ...).

        Returns:
            The decisions as stored.

        Raises:
            ValueError: an unknown sample, decision or class.
            DecisionConflict: a sample was decided since ``base`` (``SuggestionChanged``:
                its suggestion is no longer ``shown``); the samples before it are saved, it
                and those after it are not.

        Example:
            >>> import tempfile, relabscope as rs
            >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
            >>> [(d.decision, d.label, d.given) for d in run.review([21, 5], "suggested", reviewer="ann", base=0)]
            [('relabel', 'happiness', 'neutral'), ('relabel', 'neutral', 'happiness')]
            >>> run.review(21, "drop", reviewer="bob", base=0)
            Traceback (most recent call last):
            ...
            relabscope.data.journal.DecisionConflict: sample 'img/0021.png' was decided meanwhile by ann (relabel happiness, #1): reload and decide again
            >>> run.corrections()[["sample_id", "decision", "label", "reviewer", "seq"]].values.tolist()
            [[5, 'relabel', 'neutral', 'ann', 2], [21, 'relabel', 'happiness', 'ann', 1]]
            >>> run.close()
        """
        return _review.review(self, sample_ids, decision, label, reviewer=reviewer, base=base, shown=shown,
                              source=source)

    def corrections(self) -> pd.DataFrame:
        """The latest decision per reviewed sample (what ``corrections.csv`` holds), also
        those another process made since.

        Returns:
            One row per decided sample, by sample id: sample_id, key, decision ("keep",
            "relabel", "ambiguous", "drop"), label (class name; None for ambiguous and
            drop), reviewer, source, time (UTC) and seq (its position in the journal: the
            ``base`` of a decision made on top of it).
        """
        return _review.corrections_table(self.journal.latest().values())

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
        mask: np.ndarray = self._split == SPLIT_CODES[split]
        return mask

    def _by_class(self, matrix: np.ndarray) -> pd.DataFrame:
        """A K x K matrix with the class names on both axes."""
        table: pd.DataFrame = pd.DataFrame(matrix, index=self.class_names, columns=self.class_names)
        return table

    def _label_kind(self, kind: LabelKind, epoch: int) -> np.ndarray:
        if kind == "effect":
            effect: np.ndarray = self.labels()[epoch]
            return effect
        if kind == "given":
            return self.given_labels
        if kind == "clean":
            return self._require_clean()
        raise ValueError(f"labels must be effect, given or clean, not {kind!r}")

    def close(self) -> None:
        """Give the log's file handle back (also on leaving a ``with`` block)."""
        self.log.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_run(path: str | Path, *, images: ImagesArg | None = None) -> Run:
    """Open a run for analysis: the entry point of every view (``rs.open_run``).

    Args:
        path: the run directory, or its ``run.h5``.
        images: where the samples' pixels are, for a log that recorded none (or to
            override it): see :class:`Run`.

    Returns:
        The :class:`Run`.

    Raises:
        RunDirError: no readable run log there.

    Example:
        >>> import tempfile, relabscope as rs
        >>> with rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example")) as run:
        ...     run.class_warnings()[["class_name", "kind", "final"]].to_numpy().tolist()
        [['sadness', 'shrunk', 6], ['anger', 'emptied', 0]]
    """
    return Run(path, images=images)
