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


def test_decisions_made_on_other_labels_are_refused_or_skipped(tiny_runs, tmp_path):
    """Failed on main at 0696aaf: corrections reviewed on a run whose noise was drawn with
    another seed trained the kept samples under a label their reviewer never saw (39 of 50
    in the issue's run), without a word."""
    review = tmp_path / "review"
    import shutil

    shutil.copytree(tiny_runs["scn"], review, ignore=shutil.ignore_patterns("checkpoints", "*.npz"))
    with Run(review) as run:
        train_ids = [int(i) for i in run.samples.index[run.samples["split"] == "train"]]
        run.review(train_ids, "keep", reviewer="ann")  # every training sample reviewed as given
        expected = run.fingerprint
    corrections = str(review / CSV_NAME)
    other = {**TINY, "seed": 1, "epochs": 1, "method": "baseline", "corrections": corrections}  # other noise
    with pytest.raises(DataError) as refused:
        train({**other, "out": str(tmp_path / "refused")}, progress=False, log=lambda line: None)
    message = str(refused.value)
    assert message.startswith(f"{corrections}: ") and "decisions were made on another given label" in message
    assert "reviewed as" in message and "--corrections-mismatch skip" in message and expected in message
    assert not (tmp_path / "refused" / "run.h5").exists()
    lines: list[str] = []
    train({**other, "corrections_mismatch": "skip", "out": str(tmp_path / "skipped")}, progress=False,
          log=lines.append)
    mismatched = int(message.split(":")[1].split(" of ")[0])
    with Run(tmp_path / "skipped") as after:
        assert after.meta["corrections_mismatched"] == mismatched > 0
    assert any(f"{mismatched} made on another given label left out" in line for line in lines), lines
    # the same labels (same seed): every decision applies
    train({**TINY, "epochs": 1, "method": "baseline", "corrections": corrections, "out": str(tmp_path / "same")},
          progress=False, log=lambda line: None)
    with Run(tmp_path / "same") as same:
        assert same.meta["corrections_mismatched"] == 0
