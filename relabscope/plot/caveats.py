"""What a geometry figure must say about its own data: classes that had no mean (relabelled
empty), and the pass the embeddings came from (training or eval-mode probe). Geometry
figures append these to their subtitle so nobody reads a distance without knowing both."""

from __future__ import annotations

from typing import Iterable

from relabscope.plot._style import Runs, as_list, source_note, unique_names


def without_mean_note(runs: Runs) -> str | None:
    """Which classes had no class mean (relabelling emptied them) and from which epoch, so a
    figure says what it left out instead of drawing NaN; None when every class kept samples."""
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    parts = []
    for name, run in zip(names, listed):
        w = run.class_warnings()
        w = w[(w["kind"] == "emptied") & (w["emptied_epoch"] + 1 < run.num_epochs)]
        for class_name, emptied_epoch in zip(w["class_name"], w["emptied_epoch"]):
            where = f" in {name}" if len(listed) > 1 else ""
            parts.append(f"{class_name}{where} from epoch {emptied_epoch + 1}")
    if not parts:
        return None
    return "no class mean (emptied by relabelling), left out: " + ", ".join(parts)


def embeddings_note(runs: Runs, epochs: Iterable[int] | None = None) -> str:
    """The pass the runs' embeddings at ``epochs`` (all by default) come from, run by run
    when they differ (``Run.embedding_sources``)."""
    listed = as_list(runs)
    chosen = None if epochs is None else list(epochs)
    notes = [source_note(r.embedding_sources(), chosen) for r in listed]
    if len(set(notes)) <= 1:
        return notes[0] if notes else ""
    names = unique_names([r.name for r in listed])
    return "; ".join(f"{n}: {note}" for n, note in zip(names, notes))


def geometry_note(runs: Runs, epochs: Iterable[int] | None = None) -> str:
    """Both notes, for a figure's subtitle (joined by " · ")."""
    return " · ".join(p for p in (embeddings_note(runs, epochs), without_mean_note(runs)) if p)
