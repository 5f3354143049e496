"""Run against run: the same tables for two runs, side by side, samples aligned by key.

The seed paper's argument is comparative (SCN vs SCN-C on the same data), so every table
here puts run A and run B in adjacent columns plus their difference (B - A). Samples are
aligned by their key (path or ``file#row``), which is stable across runs of the same data
set whatever ``--limit`` or unreadable images did to the row order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from relabscope.analysis.class_balance import ClassBalanceWarning
from relabscope.analysis.compactness import overall
from relabscope.analysis.correction_round import correction_round
from relabscope.analysis.run import LabelKind, Run


@dataclass
class Comparison:
    """Two runs compared; build it with :func:`compare`. Each table puts run A and run B
    side by side, usually with their difference (B - A).

    Args:
        a: run A (the reference: differences are B - A).
        b: run B.
    """

    a: Run
    b: Run

    @property
    def names(self) -> tuple[str, str]:
        """The two runs' column names: their names, suffixed (A) and (B) when equal."""
        a, b = self.a.name, self.b.name
        return (f"{a} (A)", f"{b} (B)") if a == b else (a, b)

    def summary(self, *, warn: bool = True) -> pd.DataFrame:
        """Headline numbers per run: last test accuracy, relabels (and, with relabel
        guards, the relabels they vetoed), flip-flops, relabel consistency, compactness,
        classes relabelling emptied or shrank below half their given size and (when clean
        labels are known) noise recovery. Geometry leads with its scale-free numbers; the
        two in the model's own units (which a center loss shrinks, so they do not compare
        between models) end in ``_raw``.

        Args:
            warn: issue a :class:`ClassBalanceWarning` per such class, naming the run, the
                class, the epoch and the counts (see :meth:`class_warnings`): a good-looking
                flip-flop count must not hide that relabelling absorbed a class. Views that
                show those messages themselves pass False.

        Returns:
            One row per number (test_acc, relabel_events, relabels_vetoed and
            vetoed_by_<guard> per guard when either run had a relabel guard on (NaN in a
            run without it: no guard, no veto count), relabelled_samples, flipflops,
            closer_before, closer_to_new, control_closer, closer_vs_control,
            mean_rel_gap_change, gap_change_raw, undone_fraction, compactness_ratio,
            nearest_own, silhouette, compactness_raw (``relabscope.analysis.compactness.overall``
            over :meth:`shared_classes`, each sample's nearest other center among them too),
            classes_compared (their number), classes_emptied, classes_below_half,
            canaries_back, others_away when a run has canaries (``Run.canary_recovery``),
            and noisy_corrected, clean_corrupted when clean labels are known); a column per
            run and "difference (B - A)".
        """
        shared = self.shared_classes()
        rows = {name: headline(run, classes=shared) for name, run in zip(self.names, (self.a, self.b))}
        order = ordered_union(*(list(r.index) for r in rows.values()))
        df: pd.DataFrame = pd.DataFrame(rows).reindex(order)
        df["difference (B - A)"] = df[self.names[1]] - df[self.names[0]]
        for message in self.class_warnings()["message"] if warn else ():
            warnings.warn(message, ClassBalanceWarning, stacklevel=2)
        return df

    def class_warnings(self) -> pd.DataFrame:
        """``Run.class_warnings()`` of both runs in one table.

        Returns:
            Their rows, with a ``run`` column first and the run named in each message.
        """
        parts = []
        for name, run in zip(self.names, (self.a, self.b)):
            w = run.class_warnings()
            w.insert(0, "run", name)
            w["message"] = name + ": " + w["message"]
            parts.append(w)
        return pd.concat(parts, ignore_index=True)

    def class_counts(self) -> pd.DataFrame:
        """Class sizes of both runs: what relabelling left of each class.

        Returns:
            One row per class name: given_a, final_a (the count after the last epoch),
            lowest_a (the smallest during training), and the same for b.
        """
        out: pd.DataFrame | None = None
        for tag, run in (("a", self.a), ("b", self.b)):
            counts = run.class_counts()
            last = counts[counts["epoch"] == counts["epoch"].max()].set_index("class_name")
            part = pd.DataFrame({f"given_{tag}": last["given"], f"final_{tag}": last["count"],
                                 f"lowest_{tag}": counts.groupby("class_name", sort=False)["count"].min()})
            out = part if out is None else out.join(part, how="outer")
        assert out is not None
        out.index.name = "class"
        return out

    def metrics(self) -> pd.DataFrame:
        """The training curves of both runs, epoch by epoch.

        Returns:
            One row per epoch of either run: epoch, test_acc_a, train_acc_a, relabels_a,
            and the same for b (NaN past a run's last epoch).
        """
        cols = ["epoch", "test_acc", "train_acc", "relabels"]
        a, b = self.a.metrics()[cols], self.b.metrics()[cols]
        both: pd.DataFrame = a.merge(b, on="epoch", how="outer", suffixes=("_a", "_b"))
        return both

    def shared_classes(self, epoch: int = -1) -> list[str]:
        """The classes with a mean in both runs at ``epoch``: geometry compares over these
        (a run that emptied a class must not look more compact for having fewer competitors).

        Args:
            epoch: the epoch of each run (negative counts from its last committed one).

        Returns:
            Class names, in run A's order.
        """
        missing = set(self.a.classes_without_mean(epoch)) | set(self.b.classes_without_mean(epoch))
        return [c for c in self.a.class_names if c in self.b.class_names and c not in missing]

    def correction_round(self) -> pd.DataFrame | None:
        """What reviewers' decisions did when one run trained on the other's corrections
        (``relabscope train --corrections``): the run without them is "before".

        Returns:
            ``relabscope.analysis.correction_round.correction_round``'s table (per decision:
            decided, in_training, relabelled_again, final_differs, noisy_before/after), or
            None when neither run trained on corrections.

        Raises:
            RunDirError: the corrections file is gone or changed since the run trained on it.
        """
        if self.b.config.get("corrections"):
            return correction_round(self.a, self.b)
        if self.a.config.get("corrections"):
            return correction_round(self.b, self.a)
        return None

    def geometry_note(self, epoch: int = -1) -> str | None:
        """One line when the two runs' sets of classes with a mean differ (which run lacks
        which class, and that geometry compares over the shared ones); None when they agree.

        Args:
            epoch: the epoch of each run (negative counts from its last committed one).
        """
        lacking = {name: run.classes_without_mean(epoch) for name, run in zip(self.names, (self.a, self.b))}
        if set(lacking[self.names[0]]) == set(lacking[self.names[1]]):
            return None
        parts = [f"{', '.join(c)} in {name}" for name, c in lacking.items() if c]
        return (f"no class mean (emptied by relabelling): {'; '.join(parts)}; compactness is compared over the "
                f"{len(self.shared_classes(epoch))} classes with a mean in both runs")

    def compactness(self, epoch: int = -1, labels: LabelKind = "effect") -> pd.DataFrame:
        """Paper Table 2 for both runs: did the center loss tighten the classes? Each
        sample's nearest other center is taken among :meth:`shared_classes`.

        Args:
            epoch: the epoch of each run (negative counts from its last committed one).
            labels: which label makes a class a sample's own: "effect", "given" or "clean".

        Returns:
            One row per class name: each run's ``Run.compactness()`` columns with suffix _a
            or _b (n, n_without_mean, mean, std, ratio, nearest_own, silhouette), ratio_difference (B - A,
            scale-free: compares across models) and mean_difference (B - A, raw units:
            meaningful only when both runs' embeddings share a scale).
        """
        shared = self.shared_classes(epoch)
        a = self.a.compactness(epoch, labels, competitors=shared).add_suffix("_a")
        b = self.b.compactness(epoch, labels, competitors=shared).add_suffix("_b")
        order = list(dict.fromkeys([*a.index, *b.index]))  # class order, not alphabetical
        df: pd.DataFrame = a.join(b, how="outer").reindex(order)
        df["ratio_difference"] = df["ratio_b"] - df["ratio_a"]
        df["mean_difference"] = df["mean_b"] - df["mean_a"]
        return df

    def consistency(self) -> pd.DataFrame:
        """The relabel-consistency summary (``Run.consistency``) of both runs side by side.

        Returns:
            One row per number, one column per run.
        """
        both: pd.DataFrame = pd.DataFrame({name: run.consistency() for name, run in zip(self.names, (self.a, self.b))})
        return both

    def samples(self) -> pd.DataFrame:
        """Training samples present in both runs, aligned by key, to find the samples one
        method relabels and the other does not.

        Returns:
            One row per sample: key, clean_label, and per run (suffix _a, _b) sample_id,
            given_label, final_label, changes, flipflops and distance_own (last-epoch
            distance to its own class).
        """
        parts = []
        for tag, run in (("a", self.a), ("b", self.b)):
            ff = run.flipflops().set_index("sample_id")
            s = run.samples.set_index("sample_id").loc[ff.index]
            dist = run.distances(-1)[ff.index.to_numpy()]
            labels = run.labels()[-1][ff.index.to_numpy()]
            own = np.where(labels >= 0, dist[np.arange(len(labels)), np.clip(labels, 0, None)], np.nan)
            parts.append(pd.DataFrame({
                "key": s["key"].to_numpy(),
                f"sample_id_{tag}": ff.index.to_numpy(),
                f"given_label_{tag}": ff["given_label"].to_numpy(),
                "clean_label": ff["clean_label"].to_numpy(),
                f"final_label_{tag}": ff["final_label"].to_numpy(),
                f"changes_{tag}": ff["changes"].to_numpy(),
                f"flipflops_{tag}": ff["flipflops"].to_numpy(),
                f"distance_own_{tag}": own,
            }))
        merged: pd.DataFrame = parts[0].merge(parts[1].drop(columns="clean_label"), on="key", how="inner")
        return merged


def compare(run_a: Run | str | Path, run_b: Run | str | Path) -> Comparison:
    """Compare two runs of the same data, e.g. SCN against SCN-C (``rs.compare``).

    Args:
        run_a: run A, the reference (differences are B - A): a :class:`Run` or a run directory.
        run_b: run B.

    Returns:
        The :class:`Comparison`.

    Example:
        >>> import tempfile, relabscope as rs
        >>> tmp = tempfile.mkdtemp()
        >>> scn = rs.example_run(tmp + "/scn", method="scn", seed=1)
        >>> scnc = rs.example_run(tmp + "/scn-c")
        >>> both = rs.compare(scn, scnc)
        >>> table = both.summary(warn=False)
        >>> list(table.columns)
        ['scn', 'scn-c', 'difference (B - A)']
        >>> table.loc["classes_emptied"].tolist()
        [1.0, 1.0, 0.0]
    """
    a = run_a if isinstance(run_a, Run) else Run(run_a)
    b = run_b if isinstance(run_b, Run) else Run(run_b)
    return Comparison(a, b)


def ordered_union(*orders: list[str]) -> list[str]:
    """Every key of ``orders``, the first's order kept and a key the first lacks placed
    right after the key it follows in its own order (a run's veto rows stay next to its
    relabel events, even when the other run has none).

    >>> ordered_union(["a", "c"], ["a", "b", "c", "d"])
    ['a', 'b', 'c', 'd']
    """
    out = list(orders[0]) if orders else []
    for order in orders[1:]:
        for i, key in enumerate(order):
            if key not in out:
                out.insert(out.index(order[i - 1]) + 1 if i else 0, key)
    return out


def veto_counts(run: Run) -> dict[str, float]:
    """The relabels the run's relabel guards vetoed: ``relabels_vetoed`` (all of them) and
    ``vetoed_by_<guard>`` for each guard switched on, in the order they applied; empty for
    a run without guards (which logs no vetoes: not the same as none vetoed)."""
    if not run.log.guards:
        return {}
    by_guard = run.vetoes().groupby("guard")["vetoed"].sum()
    return {"relabels_vetoed": float(by_guard.sum()),
            **{f"vetoed_by_{g}": float(by_guard.get(g, 0)) for g in run.guards}}


def headline(run: Run, classes: list[str] | None = None) -> pd.Series:
    """A run's headline numbers (the columns of :meth:`Comparison.summary`); geometry over
    ``classes`` (default: every class with a mean)."""
    metrics = run.metrics()
    flip = run.flipflops()
    cons = run.consistency()
    if classes is None:
        classes = [c for c in run.class_names if c not in run.classes_without_mean()]
    comp = overall(run.compactness(competitors=classes).loc[classes])
    balance = run.class_warnings()
    out = {
        "test_acc": float(metrics["test_acc"].iloc[-1]) if len(metrics) else np.nan,
        "relabel_events": float(flip["changes"].sum()),
        **veto_counts(run),
        "relabelled_samples": float((flip["changes"] > 0).sum()),
        "flipflops": float(flip["flipflops"].sum()),
        "closer_before": float(cons["closer_before"]),
        "closer_to_new": float(cons["closer_to_new"]),
        "control_closer": float(cons["control_closer"]),
        "closer_vs_control": float(cons["closer_vs_control"]),
        "mean_rel_gap_change": float(cons["mean_rel_gap_change"]),
        "gap_change_raw": float(cons["mean_gap_change"]),
        "undone_fraction": float(cons["undone_fraction"]),
        "compactness_ratio": comp["ratio"],
        "nearest_own": comp["nearest_own"],
        "silhouette": comp["silhouette"],
        "compactness_raw": comp["mean"],
        "classes_compared": float(len(classes)),
        "classes_emptied": float((balance["kind"] == "emptied").sum()),
        "classes_below_half": float((balance["kind"] == "shrunk").sum()),
    }
    if run.has_canaries:
        canaries = run.canary_recovery()
        for column in ("canaries_back", "others_away"):
            out[column] = float(canaries[column].iloc[-1]) if len(canaries) else np.nan
    if run.clean_labels is not None:
        rec = run.noise_recovery()
        out["noisy_corrected"] = float(rec["noisy_corrected"].iloc[-1]) if len(rec) else np.nan
        out["clean_corrupted"] = float(rec["clean_corrupted"].iloc[-1]) if len(rec) else np.nan
    numbers: pd.Series = pd.Series(out)
    return numbers
