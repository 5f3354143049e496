"""A resume beside a served dashboard and a notebook that hold the run's log open: the
resume is never blocked, and both show the new epochs without a restart.

Before these changes (main at 0696aaf) the resume failed with ``unable to lock file, errno =
11`` (no file named) while anyone held the log, after rewriting config.toml (epochs = 6)
with nothing trained.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

import relabscope as rs
from relabscope.dashboard import create_app, ids
from relabscope.dashboard.harness import dash_call, texts
from tests.conftest import TINY

MORE = TINY["epochs"] + 2


def test_a_served_and_a_notebook_reader_follow_a_resume(tiny_runs, tmp_path) -> None:
    root = tmp_path / "runs"
    run_dir = root / "scn"
    shutil.copytree(tiny_runs["scn"], run_dir)
    app = create_app([root], refresh_seconds=0)
    client = app.server.test_client()
    tick = {f"{ids.URL}.search": "?run=scn", f"{ids.LIVE_VERSION}.data": None}
    version = dash_call(app, client, [f"{ids.LIVE_VERSION}.data"], {f"{ids.TICK}.n_intervals": 1}, tick)
    assert version[ids.LIVE_VERSION]["data"]["epochs"] == TINY["epochs"]
    notebook = rs.open_run(run_dir)
    before = notebook.labels()
    held = rs.RunLogReader(run_dir)  # plain reads too, held across the resume
    assert held.num_epochs == TINY["epochs"]

    done = subprocess.run([sys.executable, "-m", "relabscope", "train", "--resume", str(run_dir),
                           "--epochs", str(MORE), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    version = dash_call(app, client, [f"{ids.LIVE_VERSION}.data"], {f"{ids.TICK}.n_intervals": 2}, tick)
    assert version[ids.LIVE_VERSION]["data"] == {"run": "scn", "epochs": MORE, "status": "finished"}
    overview = dash_call(app, client, [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children",
                                       f"{ids.OV_CONFIG}.children"],
                         {f"{ids.OV_ARGS}.data": {"run": "scn"}, f"{ids.LIVE_VERSION}.data": None})
    config = {r["setting"]: r["value"] for r in overview[ids.OV_CONFIG]["children"]["props"]["data"]}
    assert config["epochs"] == str(MORE)
    last = float(app.relabscope.registry.get("scn").metrics()["test_acc"].iloc[MORE - 1])
    assert f"{last:.1%}" in texts(overview[ids.OV_NUMBERS]["children"])
    # the notebook's Run reads the new file: its cached arrays were keyed on the old one
    after = notebook.labels()
    assert after.shape == (MORE, before.shape[1]) and notebook.config["epochs"] == MORE
    np.testing.assert_array_equal(after[:TINY["epochs"]], before)  # the kept epochs, copied as they were
    assert held.num_epochs == MORE and held.generation == 1 and held.config["epochs"] == MORE
    assert rs.check_log(run_dir).ok
    notebook.close()
    held.close()
