"""Run against run: the same tables for two runs, side by side, samples aligned by key.

The seed paper's argument is comparative (SCN vs SCN-C on the same data), so every table
here puts run A and run B in adjacent columns plus their difference (B - A). Samples are
aligned by their key (path or ``file#row``), which is stable across runs of the same data
set whatever ``--limit`` or unreadable images did to the row order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from relabscope.analysis.class_balance import ClassBalanceWarning
from relabscope.analysis.run import LabelKind, Run


@dataclass
class Comparison:
    """Two runs compared; build it with :func:`compare`."""

    a: Run
    b: Run

    @property
    def names(self) -> tuple[str, str]:
        a, b = self.a.name, self.b.name
        return (f"{a} (A)", f"{b} (B)") if a == b else (a, b)

    def summary(self, *, warn: bool = True) -> pd.DataFrame:
        """Headline numbers per run: last test accuracy, relabels, flip-flops, relabel
        consistency, mean compactness, classes relabelling emptied or shrank below half their
        given size and (when clean labels are known) noise recovery.

        With ``warn`` (the default), each such class also raises a
        :class:`ClassBalanceWarning` naming the run, the class, the epoch and the counts
        (see :meth:`class_warnings`): a good-looking flip-flop count must not hide that
        relabelling absorbed a class. Views that show those messages themselves pass
        ``warn=False``."""
        rows = {name: headline(run) for name, run in zip(self.names, (self.a, self.b))}
        df = pd.DataFrame(rows)
        df["difference (B - A)"] = df[self.names[1]] - df[self.names[0]]
        for message in self.class_warnings()["message"] if warn else ():
            warnings.warn(message, ClassBalanceWarning, stacklevel=2)
        return df

    def class_warnings(self) -> pd.DataFrame:
        """``Run.class_warnings()`` of both runs, with a ``run`` column first and the run
        named in each message."""
        parts = []
        for name, run in zip(self.names, (self.a, self.b)):
            w = run.class_warnings()
            w.insert(0, "run", name)
            w["message"] = name + ": " + w["message"]
            parts.append(w)
        return pd.concat(parts, ignore_index=True)

    def class_counts(self) -> pd.DataFrame:
        """Per class: given size, and each run's count after its last epoch (``final_a``,
        ``final_b``) and smallest count during training (``lowest_a``, ``lowest_b``)."""
        out = None
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
        """Per epoch: test accuracy and relabels of both runs (outer join on epoch)."""
        cols = ["epoch", "test_acc", "train_acc", "relabels"]
        a, b = self.a.metrics()[cols], self.b.metrics()[cols]
        return a.merge(b, on="epoch", how="outer", suffixes=("_a", "_b"))

    def compactness(self, epoch: int = -1, labels: LabelKind = "effect") -> pd.DataFrame:
        """Paper Table 2 for both runs, and the change of the mean (B - A)."""
        a = self.a.compactness(epoch, labels).add_suffix("_a")
        b = self.b.compactness(epoch, labels).add_suffix("_b")
        order = list(dict.fromkeys([*a.index, *b.index]))  # class order, not alphabetical
        df = a.join(b, how="outer").reindex(order)
        df["mean_difference"] = df["mean_b"] - df["mean_a"]
        return df

    def consistency(self) -> pd.DataFrame:
        """The relabel-consistency summary of both runs side by side."""
        return pd.DataFrame({name: run.consistency() for name, run in zip(self.names, (self.a, self.b))})

    def samples(self) -> pd.DataFrame:
        """Training samples present in both runs, aligned by key: each run's sample id,
        final label, relabel count, flip-flops and last-epoch distance to its own class."""
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
        merged = parts[0].merge(parts[1].drop(columns="clean_label"), on="key", how="inner")
        return merged


def compare(run_a: Run | str, run_b: Run | str) -> Comparison:
    """Compare two runs (``Run`` objects or run directories)."""
    a = run_a if isinstance(run_a, Run) else Run(run_a)
    b = run_b if isinstance(run_b, Run) else Run(run_b)
    return Comparison(a, b)


def headline(run: Run) -> pd.Series:
    """A run's headline numbers (the columns of :meth:`Comparison.summary`)."""
    metrics = run.metrics()
    flip = run.flipflops()
    cons = run.consistency()
    comp = run.compactness()
    balance = run.class_warnings()
    out = {
        "test_acc": float(metrics["test_acc"].iloc[-1]) if len(metrics) else np.nan,
        "relabel_events": float(flip["changes"].sum()),
        "relabelled_samples": float((flip["changes"] > 0).sum()),
        "flipflops": float(flip["flipflops"].sum()),
        "closer_before": float(cons["closer_before"]),
        "closer_to_new": float(cons["closer_to_new"]),
        "mean_gap_change": float(cons["mean_gap_change"]),
        "mean_rel_gap_change": float(cons["mean_rel_gap_change"]),
        "undone_fraction": float(cons["undone_fraction"]),
        "mean_compactness": float(np.average(comp["mean"].fillna(0), weights=comp["n"])) if comp["n"].sum() else np.nan,
        "classes_emptied": float((balance["kind"] == "emptied").sum()),
        "classes_below_half": float((balance["kind"] == "shrunk").sum()),
    }
    if run.clean_labels is not None:
        rec = run.noise_recovery()
        out["noisy_corrected"] = float(rec["noisy_corrected"].iloc[-1]) if len(rec) else np.nan
        out["clean_corrupted"] = float(rec["clean_corrupted"].iloc[-1]) if len(rec) else np.nan
    return pd.Series(out)
