"""The review page in the browser, against ``relabscope serve`` in a subprocess: ten samples
decided by keyboard survive a ``kill -9`` of the server (each was on disk once its tile
showed it), and two browser windows deciding the same sample follow the documented rule
(the first decision wins; the second is refused with who decided, the tile reloads, and a
decision made after that is written on top). The page stays readable: tiles do not overlap,
no text runs out of its tile or is too small, the focused tile has a visible ring."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import relabscope as rs
from relabscope.analysis.review import resolve
from relabscope.dashboard import ids
from relabscope.dashboard import review as rvpage
from relabscope.data.journal import CSV_NAME, CorrectionJournal
from tests.browser.conftest import TIMINGS, Board, free_port, screenshot_dir, until
from tests.browser.overlap import measure_text

GRID = f"#{ids.RV_GRID}"
#: the smallest font on the page a reader must read, in CSS pixels
MIN_FONT_PX = 11


class Served:
    """``relabscope serve ROOT`` in its own process (the one the test kills)."""

    def __init__(self, root: Path, port: int, log: Path):
        self.root, self.port, self.log = root, port, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> float:
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relabscope", "serve", str(self.root / "runs"), "--port", str(self.port),
                 "--images", f"ex={self.root / 'faces.npy'}"], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

        def listening():
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        until(listening, timeout, f"relabscope serve did not listen on port {self.port}", poll=0.1)
        return time.perf_counter() - t0

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def shoot(dash_duo, tmp_path, request):
    """``shoot("name")`` saves a PNG of the browser window (as the conftest's, without its
    app over the trained tiny runs: this page is served by a subprocess)."""
    folder = screenshot_dir(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = folder / f"{request.node.name}--{name}.png"
        assert dash_duo.driver.save_screenshot(str(path)), f"screenshot {path} not written"
        return path
    return save


class RemoteBoard(Board):
    """``Board`` helpers on a server this process does not run."""

    def __init__(self, duo, url: str):
        super().__init__(duo)
        self._url = url

    @property
    def url(self) -> str:
        return self._url


@pytest.fixture
def review_server(tmp_path):
    """The example run (64 training samples) with its pixels in an array, served on a free port."""
    rs.example_run(tmp_path / "runs" / "ex")
    np.save(tmp_path / "faces.npy", np.random.default_rng(1).integers(0, 256, (80, 16, 16, 3), dtype=np.uint8))
    server = Served(tmp_path, free_port(), tmp_path / "serve.log")
    TIMINGS.append(("relabscope serve in a subprocess: listening", server.start()))
    yield server
    server.stop()


def _open(board: Board) -> None:
    board.open("/review?run=ex", wait=f"{GRID} .rv-tile", timeout=60)
    board.wait_images(GRID, minimum=rvpage.PAGE_SIZE, timeout=30)


def _tiles(board: Board) -> list[dict]:
    """Each tile on the page: its sample, badge text, message, box."""
    return board.js("""return Array.prototype.map.call(document.querySelectorAll(arguments[0] + ' .rv-tile'),
        function (t) {
            var r = t.getBoundingClientRect(), b = t.querySelector('.rv-badge'), m = t.querySelector('.rv-msg');
            return {sample: +t.dataset.sample, badge: b ? b.innerText : '', message: m ? m.innerText : '',
                    left: r.left, right: r.right, top: r.top, bottom: r.bottom};
        });""", GRID)


def _focused(board: Board) -> dict | None:
    """The focused tile's sample and its focus ring (box-shadow), or None."""
    return board.js("""var t = document.activeElement && document.activeElement.closest('.rv-tile');
        return t ? {sample: +t.dataset.sample, ring: getComputedStyle(t).boxShadow} : null;""")


def _press(board: Board, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(board.driver).send_keys(key).perform()


def _name(board: Board, name: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = board.duo.find_element(f"#{ids.RV_NAME}")
    box.clear()
    box.send_keys(name + Keys.ENTER)
    board.js("document.activeElement.blur();")  # keys typed next go to the tiles
    until(lambda: board.js("return window.localStorage.getItem(arguments[0])", ids.RV_REVIEWER) == f'"{name}"',
          10, f"the reviewer name {name!r} was not kept in the browser")


def _badge(decision: str, label: str | None, reviewer: str) -> str:
    what = {"keep": f"keep {label}", "relabel": f"relabel → {label}"}.get(decision, decision)
    return f"{what} · {reviewer}"


def _csv(folder: Path) -> dict[int, tuple[str, str | None, str]]:
    with open(folder / CSV_NAME, newline="") as fh:
        return {int(r["sample_id"]): (r["decision"], r["label"] or None, r["reviewer"]) for r in csv.DictReader(fh)}


def _readable(board: Board) -> list[str]:
    """What makes the page hard to read: overlapping tiles, text running out of its tile,
    text under MIN_FONT_PX, and any plotly figure text problem (``tests.browser.overlap``)."""
    found = board.js("""
        var minPx = arguments[1], out = [];
        var tiles = Array.prototype.slice.call(document.querySelectorAll(arguments[0] + ' .rv-tile'));
        var boxes = tiles.map(function (t) { return t.getBoundingClientRect(); });
        boxes.forEach(function (a, i) { boxes.slice(i + 1).forEach(function (b, j) {
            if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
                out.push('tiles ' + i + ' and ' + (i + j + 1) + ' overlap');
        }); });
        tiles.forEach(function (t, i) {
            var box = boxes[i];
            t.querySelectorAll('*').forEach(function (e) {
                var r = e.getBoundingClientRect();
                if (!r.width || !r.height) return;
                if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
                    out.push('tile ' + i + ': ' + e.tagName + ' "' + e.innerText + '" runs out of the tile');
                if (e.childElementCount === 0 && e.innerText && parseFloat(getComputedStyle(e).fontSize) < minPx)
                    out.push('tile ' + i + ': "' + e.innerText + '" in a ' + getComputedStyle(e).fontSize + ' font');
            });
        });
        return out;""", GRID, MIN_FONT_PX)
    check = measure_text(board.driver, f"#{ids.PAGE}", at_least_figures=0)
    return found + check.problems


def test_ten_keyboard_decisions_survive_kill_9(dash_duo, review_server, shoot) -> None:
    from selenium.webdriver.common.keys import Keys

    served = review_server

    run_dir = served.root / "runs" / "ex"
    with rs.open_run(run_dir) as run:
        table = run.suspects()
        names = run.class_names
    order = table["sample_id"].tolist()
    board = RemoteBoard(dash_duo, f"http://127.0.0.1:{served.port}")
    board.driver.set_window_size(1500, 1400)
    t0 = time.perf_counter()
    _open(board)
    TIMINGS.append(("review page: first load with 24 thumbnails", time.perf_counter() - t0))
    assert [t["sample"] for t in _tiles(board)] == order[:rvpage.PAGE_SIZE]
    assert all(t["badge"] == "undecided" for t in _tiles(board))
    _name(board, "ann")

    # the first key focuses the first tile; arrows move along and between rows
    _press(board, "j")
    focused = _focused(board)
    assert focused["sample"] == order[0] and "rgb(42, 111, 176)" in focused["ring"], focused
    tiles = _tiles(board)
    per_row = sum(1 for t in tiles if abs(t["top"] - tiles[0]["top"]) < 2)
    assert 1 < per_row < len(tiles)
    _press(board, Keys.ARROW_DOWN)
    assert _focused(board)["sample"] == order[per_row]
    _press(board, Keys.ARROW_UP)
    assert _focused(board)["sample"] == order[0]

    # ten decisions, each moving to the next tile; a detour with l / j and the arrows on the way
    keys = ["k", "s", "1", "a", "x", Keys.ENTER, "2", "k", "4", "s"]
    asked = [("keep", None), ("suggested", None), ("relabel", 0), ("ambiguous", None), ("drop", None),
             ("suggested", None), ("relabel", 1), ("keep", None), ("relabel", 3), ("suggested", None)]
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        assert _focused(board)["sample"] == order[i]
        _press(board, key)
        if i == 3:
            _press(board, "l", "j", Keys.ARROW_RIGHT, Keys.ARROW_LEFT)
    want = {}
    for sid, (decision, label) in zip(order[:10], asked):
        row = table.set_index("sample_id").loc[sid]
        want[sid] = resolve(decision, label, given=int(row["given_label"]), suggested=int(row["suggested_label"]),
                            class_names=names) + ("ann",)

    def acknowledged():
        badges = {t["sample"]: t["badge"] for t in _tiles(board)}
        return all(badges[sid] == _badge(*want[sid]) for sid in order[:10])
    until(acknowledged, 30, f"the tiles do not show the ten decisions: {_tiles(board)[:10]}")
    TIMINGS.append(("ten keyboard decisions, until every tile showed its own", time.perf_counter() - t0))
    assert {t["badge"] for t in _tiles(board)[10:]} == {"undecided"}
    assert {r: v for r, v in _csv(run_dir).items()} == want
    problems = _readable(board)
    assert not problems, "\n".join(problems)
    shoot("decided")

    # PgDn turns the page and focuses its first tile; PgUp comes back
    _press(board, Keys.PAGE_DOWN)
    until(lambda: (_focused(board) or {}).get("sample") == order[rvpage.PAGE_SIZE], 15,
          "PgDn did not show and focus the next page")
    assert "page 2 of 3" in board.text(f"#{ids.RV_COUNT}")
    _press(board, Keys.PAGE_UP)
    until(lambda: (_focused(board) or {}).get("sample") == order[0], 15, "PgUp did not come back")
    board.settle()
    board.assert_no_errors()

    # kill -9, restart on the same port, reload: every acknowledged decision is there
    board.driver.get("about:blank")  # no request to the dead server from the open page
    served.kill()
    (run_dir / CSV_NAME).unlink()  # rebuilt from the journal, the truth
    TIMINGS.append(("relabscope serve restarted after kill -9", served.start()))
    _open(board)
    until(acknowledged, 30, f"after kill -9 and a restart the tiles do not show the ten decisions: {_tiles(board)[:10]}")
    assert _csv(run_dir) == want
    assert board.duo.find_element(f"#{ids.RV_NAME}").get_attribute("value") == "ann"  # kept in the browser
    board.assert_no_errors()


def test_two_windows_deciding_one_sample_follow_the_rule(dash_duo, review_server, shoot) -> None:
    served = review_server
    run_dir = served.root / "runs" / "ex"
    board = RemoteBoard(dash_duo, f"http://127.0.0.1:{served.port}")
    board.driver.set_window_size(1500, 1200)
    first = board.driver.current_window_handle
    _open(board)
    board.driver.switch_to.new_window("window")
    second = board.driver.current_window_handle
    board.driver.set_window_size(1500, 1200)
    _open(board)  # both windows show the top sample undecided
    sid = _tiles(board)[0]["sample"]
    tile = f"{GRID} .rv-tile[data-sample='{sid}']"

    board.driver.switch_to.window(first)
    _name(board, "ann")
    board.click(f"{tile} img")  # the image: focuses the tile (its first line links to the inspector)
    _press(board, "k")
    until(lambda: _tiles(board)[0]["badge"].startswith("keep ") and _tiles(board)[0]["badge"].endswith("· ann"), 15,
          "ann's keep was not shown")

    board.driver.switch_to.window(second)
    assert _tiles(board)[0]["badge"] == "undecided"  # this window still shows what it loaded
    _name(board, "bob")
    board.click(f"{tile} img")  # the image: focuses the tile (its first line links to the inspector)
    _press(board, "x")
    until(lambda: "decided meanwhile by ann" in _tiles(board)[0]["message"], 15,
          f"the second window was not told of ann's decision: {_tiles(board)[0]}")
    top = _tiles(board)[0]
    assert top["badge"].startswith("keep ") and top["badge"].endswith("· ann")  # reloaded: ann's decision
    journal = CorrectionJournal(run_dir, ["neutral", "happiness", "sadness", "anger"])
    assert [(d.decision, d.reviewer) for d in journal.history()] == [("keep", "ann")]  # bob's drop not written
    assert _csv(run_dir)[sid][0::2] == ("keep", "ann")
    problems = _readable(board)
    assert not problems, "\n".join(problems)
    shoot("conflict")

    # having seen ann's decision, bob decides on top of it
    board.click(f"{tile} img")  # the image: focuses the tile (its first line links to the inspector)
    _press(board, "x")
    until(lambda: _tiles(board)[0]["badge"] == "drop · bob" and not _tiles(board)[0]["message"], 15,
          "bob's decision on top of ann's was not shown")
    assert [(d.decision, d.reviewer) for d in journal.history()] == [("keep", "ann"), ("drop", "bob")]
    board.settle()
    board.assert_no_errors()
