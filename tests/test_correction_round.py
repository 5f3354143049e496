"""One correction round end to end, through the CLI a curator would use: suspects out to
Label Studio, annotations back in, a run trained on them, before and after compared."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
from click.testing import CliRunner

import relabscope as rs
from relabscope.analysis.correction_round import correction_round
from relabscope.cli import main
from tests.conftest import TINY

TOP = 12


def _ok(result):
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def test_export_import_train_compare(tiny_runs, tmp_path):
    before_dir = tmp_path / "before"
    shutil.copytree(tiny_runs["scn"], before_dir)
    runner = CliRunner()
    tasks_file = tmp_path / "tasks.json"
    _ok(runner.invoke(main, ["suspects", str(before_dir), "--top", str(TOP), "--format", "labelstudio",
                             "--out", str(tasks_file)]))
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == TOP and (tmp_path / "tasks.xml").is_file()
    with rs.open_run(before_dir) as before:
        top = before.suspects().head(TOP)
        assert [t["data"]["sample_id"] for t in tasks] == top["sample_id"].tolist()  # most suspect first
        assert all(t["data"]["image"].startswith("data:image/png") for t in tasks)  # the data set's pixels
        names, clean = before.class_names, before.clean_labels

    # a stand-in annotator who knows the clean labels; one task left undone, one dropped
    for i, task in enumerate(tasks):
        sid = task["data"]["sample_id"]
        choice = "drop" if i == 1 else names[clean[sid]]
        task["annotations"] = [] if i == 0 else [{"id": i, "completed_by": {"email": "oracle@lab"},
                                                  "result": [{"from_name": "label", "type": "choices",
                                                              "value": {"choices": [choice]}}]}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = _ok(runner.invoke(main, ["corrections", str(before_dir), "--import", str(export)]))
    assert f"imported {TOP - 1} decisions" in result.stderr
    with open(before_dir / "corrections.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == TOP - 1 and {r["reviewer"] for r in rows} == {"oracle@lab"}

    after_dir = tmp_path / "after"
    options = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k not in ("dataset_options",)]
    options += [f"-O{k}={v}" for k, v in TINY["dataset_options"].items()]
    _ok(runner.invoke(main, ["train", "--method", "scn", *options, "--corrections",
                             str(before_dir / "corrections.csv"), "--out", str(after_dir), "-q"]))
    with rs.open_run(before_dir) as before, rs.open_run(after_dir) as after:
        table = correction_round(before, after).set_index("decision")
        decided = table.loc["all", "decided"]
        assert decided == TOP - 1
        assert table.loc["drop", "decided"] == 1 and table.loc["drop", "in_training"] == 0
        assert table.loc["all", "in_training"] == TOP - 2
        # every kept or relabelled sample now trains on its clean label
        assert table.loc["all", "noisy_after"] == 0 and table.loc["all", "noisy_before"] >= table.loc["relabel", "decided"]
        summary = rs.compare(before, after).summary(warn=False)
        assert {"test_acc", "flipflops", "classes_emptied"} <= set(summary.index)
        relabelled_again = table.loc["all", "relabelled_again"]
        events = after.relabel_events()
        keys = after.log.samples["key"]
        reviewed = {r["key"] for r in rows if r["decision"] in ("keep", "relabel")}
        assert relabelled_again == len({sid for sid in events["sample_id"] if str(keys[sid]) in reviewed})
        assert np.isfinite(summary.loc["test_acc"]).all()

    # the compare page and the report show the round, in either order of the runs
    from relabscope.dashboard import ids
    from relabscope.dashboard.app import create_app
    from relabscope.dashboard.harness import by_id, dash_call, texts
    from relabscope.report import write_report

    with rs.open_run(before_dir) as before, rs.open_run(after_dir) as after:
        expected = correction_round(before, after)
        for a, b in ((before, after), (after, before)):
            assert rs.compare(a, b).correction_round().equals(expected)
    app = create_app([tmp_path], refresh_seconds=0, host="127.0.0.1")
    out = dash_call(app, app.server.test_client(), [f"{ids.CP_SUMMARY}.children"],
                    {f"{ids.CP_ARGS}.data": {"run": "before", "against": "after"}, f"{ids.LIVE_VERSION}.data": None})
    section = by_id(out[ids.CP_SUMMARY]["children"], ids.CP_CORRECTIONS)
    assert "Correction round" in texts(section)
    shown = next(c for c in section["props"]["children"] if c.get("type") == "DataTable")["props"]["data"]
    assert [r["decided"] for r in shown] == expected["decided"].tolist()
    index = write_report([before_dir, after_dir], tmp_path / "report", png=False, projection=None, gradcam_samples=0)
    assert "correction round" in index.read_text()
    assert (tmp_path / "report" / "tables" / "compare__correction_round.csv").is_file()


def test_suspects_as_a_table_and_a_csv(tiny_runs, tmp_path):
    runner = CliRunner()
    printed = _ok(runner.invoke(main, ["suspects", str(tiny_runs["scn"]), "--top", "5"])).stdout.splitlines()
    assert printed[0].split() == ["rank", "sample_id", "key", "score", "flag", "given", "suggested"]
    assert [line.split()[0] for line in printed[1:]] == ["1", "2", "3", "4", "5"]
    _ok(runner.invoke(main, ["suspects", str(tiny_runs["scn"]), "--top", "7", "--out", str(tmp_path / "s.csv")]))
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with rs.open_run(tiny_runs["scn"]) as run:
        top = run.suspects().head(7)
        names = run.class_names
    assert [int(r["sample_id"]) for r in rows] == top["sample_id"].tolist()
    assert [r["suggested"] for r in rows] == [names[i] for i in top["suggested_label"]]
    assert "aum" in rows[0] and "low_p_given" in rows[0]
