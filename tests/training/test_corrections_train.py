"""``train --corrections``: reviewers' decisions reach the next run's labels and samples,
and the run records which file it trained on."""

from __future__ import annotations

import hashlib

import pytest

from relabscope.analysis.run import Run
from relabscope.data.journal import CSV_NAME, CorrectionJournal
from relabscope.errors import DataError
from relabscope.training.runner import train
from tests.conftest import TINY


def test_a_run_trains_on_the_decisions(tiny_runs, tmp_path):
    with Run(tiny_runs["scn"]) as before:
        samples = before.samples
        train_rows = samples[samples["split"] == "train"]
        keys = train_rows["key"].tolist()
        given = train_rows["given_label"].to_numpy()
        clean = before.clean_labels[: len(keys)]
        names = before.class_names
    journal = CorrectionJournal(tmp_path / "review", names)
    relabel = {keys[0]: (given[0] + 1) % len(names), keys[1]: (given[1] + 2) % len(names)}
    for key, label in relabel.items():
        journal.decide(key, keys.index(key), "relabel", names[label], reviewer="t")
    journal.decide(keys[2], 2, "drop")
    journal.decide(keys[3], 3, "ambiguous")
    journal.decide(keys[4], 4, "keep", names[given[4]])
    csv_path = tmp_path / "review" / CSV_NAME

    out = tmp_path / "after"
    lines: list[str] = []
    train({**TINY, "epochs": 1, "method": "baseline", "corrections": str(csv_path), "out": str(out)},
          progress=False, log=lines.append)
    with Run(out) as after:
        rows = after.samples[after.samples["split"] == "train"]
        kept = rows["key"].tolist()
        assert keys[2] not in kept and keys[3] not in kept and len(kept) == len(keys) - 2
        by_key = dict(zip(kept, rows["given_label"].to_numpy()))
        for key, label in relabel.items():
            assert by_key[key] == label
        assert by_key[keys[4]] == given[4]
        assert all(by_key[keys[i]] == given[i] for i in range(5, len(keys)))
        # the shipped labels stay the clean reference: a corrected label is not promoted to "clean"
        clean_after = dict(zip(kept, after.clean_labels[: len(kept)]))
        assert all(clean_after[k] == clean[keys.index(k)] for k in kept)
        assert after.meta["corrections_sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
        assert after.config["corrections"] == str(csv_path)
    assert any(line.startswith("corrections: 1 keep, 2 relabel, 1 ambiguous, 1 drop") for line in lines), lines


def test_corrections_for_another_data_set_are_one_line(tmp_path):
    journal = CorrectionJournal(tmp_path, ["a", "b"])
    journal.decide("not-a-key.png", 0, "drop")
    with pytest.raises(DataError, match="none of its 1 decisions names a training sample"):
        train({**TINY, "epochs": 1, "method": "baseline", "corrections": str(tmp_path / CSV_NAME),
               "out": str(tmp_path / "run")}, progress=False, log=lambda line: None)
    assert not (tmp_path / "run" / "run.h5").exists()
