"""One correction round: a run, reviewers' decisions about its samples, and the run trained
on them (``relabscope train --corrections``). What did the decisions change, and does the new
run agree with the reviewers, or does it relabel the corrected samples again?

The decisions are matched to the runs by sample key, so the two runs may order their
samples differently and the new run may lack the dropped ones. The accuracy, flip-flop and
class-balance side of the comparison is ``Comparison.summary``; this adds what only the
decisions can say.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from relabscope.data.corrections import Corrections, read_corrections
from relabscope.data.journal import DECISIONS
from relabscope.errors import RunDirError

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

COLUMNS = ["decision", "decided", "in_training", "relabelled_again", "final_differs", "noisy_before", "noisy_after"]


def corrections_of(after: Run) -> Corrections:
    """The corrections file ``after`` trained on (its config's ``corrections``), checked
    against the SHA-256 the run recorded.

    Raises:
        RunDirError: the run did not train on corrections, or the file is gone or changed.
    """
    path = after.config.get("corrections")
    if not path:
        raise RunDirError(f"{after.run_dir}: the run did not train on corrections (relabscope train --corrections)")
    try:
        found = read_corrections(path)
    except Exception as exc:
        raise RunDirError(f"{after.run_dir}: cannot read the corrections it trained on: {exc}") from None
    recorded = after.meta.get("corrections_sha256")
    if recorded and recorded != found.sha256:
        raise RunDirError(f"{Path(path)}: changed since {after.name} trained on it (SHA-256 differs)")
    return found


def correction_round(before: Run, after: Run) -> pd.DataFrame:
    """Per decision kind: how many samples the reviewers decided, how many of them the new
    run trained on, how many it relabelled again (at least one relabel event), how many
    ended training under another label than the reviewed one (the given label for
    ``keep``, the reviewer's for ``relabel``), and, where clean labels are known, how many
    of them carried a wrong label before (given label in ``before``) and after (training
    label in ``after``). A row "all" sums them.

    Raises:
        RunDirError: ``after`` did not train on corrections, or they are gone or changed.
    """
    corrections = corrections_of(after)
    names = {name: i for i, name in enumerate(after.class_names)}
    before_keys = _train_index(before)
    after_keys = _train_index(after)
    relabelled = set(after.relabel_events()["sample_id"].tolist())
    final = after.final_labels()
    given_after, given_before = after.given_labels, before.given_labels
    clean, clean_before = after.clean_labels, before.clean_labels
    rows = []
    for decision in DECISIONS:
        keys = [k for k, c in corrections.decisions.items() if c.decision == decision and k in before_keys]
        trained = [after_keys[k] for k in keys if k in after_keys]
        again = sum(1 for sid in trained if sid in relabelled)
        reviewed = np.array([given_after[after_keys[k]] if decision == "keep"
                             else names.get(corrections.decisions[k].label or "", -1)
                             for k in keys if k in after_keys], dtype=np.int64)
        differs = int((final[trained] != reviewed).sum())
        row = {"decision": decision, "decided": len(keys), "in_training": len(trained), "relabelled_again": again,
               "final_differs": differs if decision in ("keep", "relabel") else pd.NA}
        if clean is not None and clean_before is not None:
            ids_before = np.array([before_keys[k] for k in keys], dtype=np.int64)
            row["noisy_before"] = int((given_before[ids_before] != clean_before[ids_before]).sum())
            row["noisy_after"] = int((given_after[trained] != clean[trained]).sum())
        rows.append(row)
    known = clean is not None and clean_before is not None
    table = pd.DataFrame(rows).reindex(columns=[c for c in COLUMNS if known or "noisy" not in c])
    sums = {c: int(pd.to_numeric(table[c], errors="coerce").fillna(0).sum()) for c in table.columns if c != "decision"}
    total = pd.DataFrame([{"decision": "all", **sums}])
    out: pd.DataFrame = pd.concat([table, total], ignore_index=True)
    return out


def _train_index(run: Run) -> dict[str, int]:
    """Training sample -> its id, by what decisions name it (its key, made unique)."""
    keys = run.decision_keys
    return {keys[i]: int(i) for i in np.flatnonzero(run.train_mask)}
