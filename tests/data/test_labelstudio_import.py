"""Label Studio's exports read as Label Studio writes them: the full JSON, JSON-MIN and CSV
fixtures in tests/data/labelstudio were made by Label Studio's own converter
(label-studio-sdk 2.1.2; its README cites the source of every field), for six tasks: a keep,
a relabel, two annotators who disagree, a ground-truth annotation overruled later, a skipped
(cancelled) task and an unannotated one.

On main at 0696aaf: JSON-MIN and CSV were refused with misleading lines ("no data.key ...
was it exported by relabscope?", "not JSON"); the disagreement was settled by timestamp
without a word; ground_truth was ignored; skipped, cancelled and unannotated tasks were not
counted; a task whose key is not in the run (or is a list, or a path) was stored; a task id
like "ann-1", a sample_id like "fifty-nine" or a result of [1] ended in a traceback; and a
task whose given label differed from the run's was stored as a keep of the run's label."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import relabscope as rs
from relabscope.errors import DataError

FIXTURES = Path(__file__).parent / "labelstudio"
CLASSES = ["neutral", "happiness", "sadness", "anger"]
#: the given label of each fixture task's sample (img/0000.png ... img/0005.png)
GIVEN = ["neutral", "happiness", "sadness", "anger", "neutral", "happiness"]


@pytest.fixture
def run(tmp_path):
    """A run whose first six training samples are the fixtures' tasks."""
    n_train, n_test = 8, 2
    given = [CLASSES.index(g) for g in GIVEN] + [0, 1] + [2, 3]
    samples = rs.SampleTable(key=[f"img/{i:04d}.png" for i in range(n_train + n_test)],
                             split=[0] * n_train + [1] * n_test, given_label=given)
    rng = np.random.default_rng(0)
    with rs.RunLogWriter.create(tmp_path / "run", samples, CLASSES, embed_dim=4) as log:
        ids = np.arange(n_train + n_test)
        log.log_batch(ids[:n_train], samples.given_label[:n_train], rng.normal(size=(n_train, 4)),
                      rng.normal(size=(n_train, 4)))
        log.log_batch(ids[n_train:], samples.given_label[n_train:], rng.normal(size=(n_test, 4)),
                      rng.normal(size=(n_test, 4)), phase="test")
        log.end_epoch()
    with rs.open_run(tmp_path / "run") as opened:
        yield opened


def _decided(imported) -> dict[str, tuple]:
    return {r.key: (r.decision, r.label, r.reviewer, r.settled) for r in imported.decisions.itertuples()}


def test_the_full_json_export(run) -> None:
    with pytest.raises(DataError, match=r"export_full\.json: annotators disagree on 1 tasks \(img/0002\.png: "
                                        r"neutral vs sadness\); --resolve latest or --resolve majority"):
        rs.import_labelstudio(run, FIXTURES / "export_full.json")
    assert run.journal.history() == []  # refused: nothing written
    done = rs.import_labelstudio(run, FIXTURES / "export_full.json", resolve="latest")
    assert done.format == "JSON"
    assert _decided(done) == {
        "img/0000.png": ("keep", "neutral", "label-studio user 10", "one annotator"),
        "img/0001.png": ("relabel", "anger", "label-studio user 10", "one annotator"),
        "img/0002.png": ("keep", "sadness", "label-studio user 11", "latest"),        # 304, updated last
        "img/0003.png": ("relabel", "happiness", "label-studio user 12", "ground truth"),  # 305 beats the later 306
    }
    assert done.counts == {"tasks": 6, "decided": 4, "skipped": 1, "unannotated": 1, "conflicting": 1,
                           "ground_truth": 1, "cancelled_annotations": 0}
    summary = done.summary()
    assert "imported 4 decisions (2 keep, 2 relabel) from 6 tasks (JSON)" in summary
    assert "1 settled by a ground-truth annotation" in summary
    assert "1 where annotators disagreed, settled by the latest annotation" in summary
    assert "not decided: 1 skipped in Label Studio, 1 unannotated" in summary
    stored = run.journal.latest()
    assert {k: d.given for k, d in stored.items()} == {f"img/000{i}.png": GIVEN[i] for i in range(4)}
    assert {d.source for d in stored.values()} == {"labelstudio"} and {d.run for d in stored.values()} == {run.fingerprint}
    assert [d.seq for d in run.journal.history()] == [1, 2, 3, 4]


def test_the_snapshot_export_names_annotators_by_email(run) -> None:
    done = rs.import_labelstudio(run, FIXTURES / "export_full_snapshot.json", resolve="majority")
    assert _decided(done)["img/0000.png"][2] == "alice@example.com"
    assert _decided(done)["img/0002.png"][1:] == ("sadness", "bob@example.com", "majority")  # a tie: the latest


@pytest.mark.parametrize("name, fmt, annotator", [("export_min.json", "JSON-MIN", "label-studio user 10"),
                                                   ("export.csv", "CSV", "label-studio user 10"),
                                                   ("export_min_snapshot.json", "JSON-MIN", "alice@example.com")])
def test_json_min_and_csv_exports(run, name, fmt, annotator) -> None:
    """One row per annotation, none for the skipped task, no ground-truth mark: task 104's
    two annotations disagree here (the full JSON settles it by its ground truth)."""
    with pytest.raises(DataError, match="annotators disagree on 2 tasks"):
        rs.import_labelstudio(run, FIXTURES / name)
    done = rs.import_labelstudio(run, FIXTURES / name, resolve="latest")
    assert done.format == fmt
    decided = _decided(done)
    assert decided["img/0000.png"][:3] == ("keep", "neutral", annotator)
    assert decided["img/0001.png"][:2] == ("relabel", "anger")
    assert decided["img/0002.png"][:2] == ("keep", "sadness")
    assert decided["img/0003.png"][:2] == ("keep", "anger")  # 306 is the later one
    assert done.counts["tasks"] == 5 and done.counts["unannotated"] == 1 and done.counts["skipped"] == 0
    assert done.counts["conflicting"] == 2 and done.counts["ground_truth"] == 0


def _edited(tmp_path, change) -> Path:
    tasks = json.loads((FIXTURES / "export_full.json").read_text())
    change(tasks)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda t: t[0]["data"].update(key="img/9999.png"), r"1 tasks name samples this run does not have \(first: 'img/9999\.png'\)"),
    (lambda t: t[0]["data"].update(key="../../etc/passwd"), r"1 tasks name samples this run does not have"),
    (lambda t: t[0]["data"].update(key=["img/0000.png"]), r"task 101: data\.key is \"\['img/0000\.png'\]\", not a sample key"),
    (lambda t: t[0]["data"].update(sample_id="fifty-nine"), r"task 101: data\.sample_id is 'fifty-nine', not a whole number"),
    (lambda t: t[0]["annotations"][0].update(result=[1]), r"task 101: an annotation's result is \[1\], not Label Studio's"),
    (lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices=["surprise"]),
     r"task 102 \(img/0001\.png\): choice 'surprise' is not a class"),
    (lambda t: t[0]["data"].update(given="anger"),
     r"1 tasks showed another given label than this run's \(first: img/0000\.png: anger, here neutral\)"),
])
def test_what_cannot_be_imported_is_one_line_and_writes_nothing(run, tmp_path, change, message) -> None:
    path = _edited(tmp_path, change)
    with pytest.raises(DataError, match=f"^{path}: .*{message}"):
        rs.import_labelstudio(run, path, resolve="latest")
    assert run.journal.history() == []


def test_a_task_id_that_is_not_a_number_is_fine(run, tmp_path) -> None:
    def rename(tasks):
        tasks[0]["id"] = "ann-1"
    done = rs.import_labelstudio(run, _edited(tmp_path, rename), resolve="latest")
    assert "img/0000.png" in _decided(done)


def test_not_an_export_is_one_line(run, tmp_path) -> None:
    for content, message in (('{"a": 1}', "not a Label Studio export"), ("just,a,csv\n1,2,3\n", "key column"),
                             ("", "key column")):
        path = tmp_path / "x.json"
        path.write_text(content)
        with pytest.raises(DataError, match=f"^{path}: .*{message}"):
            rs.import_labelstudio(run, path)


def test_the_cli_prints_the_summary_and_refuses_in_one_line(run, tmp_path) -> None:
    from click.testing import CliRunner

    from relabscope.cli import main

    export = tmp_path / "export.csv"
    shutil.copy(FIXTURES / "export.csv", export)
    refused = CliRunner().invoke(main, ["corrections", str(run.run_dir), "--import", str(export)])
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1 and "annotators disagree" in refused.stderr
    done = CliRunner().invoke(main, ["corrections", str(run.run_dir), "--import", str(export), "--resolve", "latest"])
    assert done.exit_code == 0, done.output
    assert "imported 4 decisions (3 keep, 1 relabel) from 5 tasks (CSV)" in done.stderr
    assert "2 where annotators disagreed, settled by the latest annotation; not decided: 1 unannotated" in done.stderr
