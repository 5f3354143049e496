"""Full-page screenshots of dashboard pages, as a reader sees them, for docs/images.

    python docs/screenshots.py runs/demo --width 1500 --out docs/images \
        "overview=/?run=scn-c-20" "compare=/compare?run=scn-20&against=scn-c-20" \
        "dashboard-map-hover=/map?run=scn-20@hover" "dashboard-map-lasso=/map?run=scn-20@lasso" \
        "dashboard-review=/review?run=scn-c-20@review"

Serves the runs under ROOT in this process (the same ``create_app`` as ``relabscope
serve``), opens each URL in headless Chromium at ``--width`` pixels, waits until no view is
loading or computing, then saves the whole page's height as ``OUT/<name>.png``. A URL
ending in ``@ACTION`` is shot after that action (``ACTIONS``): ``@hover`` rests the pointer
on a map point until its hover card shows the image, ``@lasso`` lassoes part of the map
until the image grid below it has loaded, ``@review`` decides the review page's first tiles
by keyboard (written to that run's corrections: shoot a copy of the runs). A URL ending in
``#ID`` (before any ``@ACTION``) is shot as that element alone, e.g. one figure's cell;
``@gradcam`` presses the sample page's Grad-CAM button (``--model`` serves a model of your
own for callback runs)::

    python docs/screenshots.py runs/guards --out docs/images \
        "guards-vetoes=/?run=scn-guarded#ov-relabels" "guards-class-floor=/?run=scn-guarded#ov-classes"

Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/install-chromium); downloads nothing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.keys import Keys
from werkzeug.serving import make_server

from relabscope.dashboard import create_app, ids
from relabscope.models.spec import ModelSpec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(width: int):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--hide-scrollbars", f"--window-size={width},1000"):
        options.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def _settle(driver, timeout: float) -> None:
    """Wait until Dash has rendered the page, no view is loading and none is computing in
    the background (a map's UMAP behind its PCA preview), twice in a row."""
    end, quiet = time.time() + timeout, 0
    while time.time() < end and quiet < 2:
        busy = driver.execute_script(
            "var page = document.getElementById(arguments[0]);"
            "return !page || page.children.length === 0 || document.querySelectorAll("
            "'[data-dash-is-loading=\"true\"], ._dash-loading-callback, .computing').length", ids.PAGE)
        quiet = 0 if busy else quiet + 1
        time.sleep(0.7)


def _until(driver, script: str, timeout: float, what: str, *args) -> None:
    """Wait until ``script`` (JavaScript) returns true; RuntimeError naming ``what`` if not."""
    end = time.time() + timeout
    while not driver.execute_script(script, *args):
        if time.time() > end:
            raise RuntimeError(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)


def _fit_viewport(driver, width: int, height: int) -> None:
    """Make the page's visible part ``height`` pixels tall (the window's frame takes some of
    the window's own height) and scroll to the top."""
    driver.set_window_size(width, min(height, 12000))
    frame = height - driver.execute_script("return window.innerHeight")
    if frame:
        driver.set_window_size(width, min(height + frame, 12000))
    driver.execute_script("window.scrollTo(0, 0);")
    time.sleep(1.0)  # graphs resize to the new viewport


#: the map's plot area and its points (sample id, viewport px, drawn as a cross: label in
#: effect differs from the given one), the map scrolled to the window's middle first
_MAP_POINTS = """
var gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
gd.scrollIntoView({block: 'center'});
var fl = gd._fullLayout, s = fl._size, r = gd.querySelector('.main-svg').getBoundingClientRect(), pts = [];
gd._fullData.forEach(function (t) {
    if (!t.customdata || !t.x) return;
    for (var i = 0; i < t.x.length; i++) {
        var sym = Array.isArray(t.marker.symbol) ? t.marker.symbol[i] : t.marker.symbol;
        pts.push({id: t.customdata[i][0], moved: sym === 4 || sym === 'x',
                  x: r.left + s.l + fl.xaxis.c2p(t.x[i]), y: r.top + s.t + fl.yaxis.c2p(t.y[i])});
    }
});
return {left: r.left + s.l, top: r.top + s.t, width: s.w, height: s.h, points: pts};
"""


def hover_map_point(driver, timeout: float) -> str | None:
    """Rest the pointer on a relabelled map point with room around it, left of the middle,
    until the hover card shows that sample's decoded image (the shot: the whole page)."""
    area = driver.execute_script(_MAP_POINTS, ids.MP_GRAPH)
    pts = area["points"]
    if not pts:
        raise RuntimeError("the map page shows no points to hover")

    def room(p):  # a point with a close neighbour may hand the hover to it
        return min(((q["x"] - p["x"]) ** 2 + (q["y"] - p["y"]) ** 2 for q in pts if q is not p), default=0.0)
    middle = [p for p in pts if area["left"] + 0.2 * area["width"] < p["x"] < area["left"] + 0.5 * area["width"]
              and area["top"] + 0.3 * area["height"] < p["y"] < area["top"] + 0.7 * area["height"]] or pts
    point = max(middle, key=lambda p: (p["moved"], room(p)))
    actions = ActionBuilder(driver, duration=50)
    actions.pointer_action.move_to_location(int(round(point["x"])), int(round(point["y"])))
    actions.perform()
    _until(driver, "var img = document.querySelector('#' + arguments[0] + ' img');"
                   "return !!(img && img.complete && img.naturalWidth);", timeout,
           f"no hover card with the image of sample {point['id']}", ids.MP_TOOLTIP)
    return None


def lasso_map(driver, timeout: float) -> str | None:
    """Lasso the middle of the map (an eighth of it each way from its centre) and wait
    until the image grid below it has loaded (the shot ends below the grid)."""
    area = driver.execute_script(_MAP_POINTS, ids.MP_GRAPH)
    cx, cy = area["left"] + area["width"] / 2, area["top"] + area["height"] / 2
    dx, dy = area["width"] / 8, area["height"] / 8
    corners = [(cx - dx, cy - dy), (cx + dx, cy - dy * 0.6), (cx + dx, cy + dy), (cx - dx * 0.8, cy + dy),
               (cx - dx, cy - dy + 2)]
    actions = ActionBuilder(driver, duration=40)
    pointer = actions.pointer_action
    pointer.move_to_location(int(corners[0][0]), int(corners[0][1]))
    pointer.pointer_down()
    for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
        for i in range(1, 5):
            pointer.move_to_location(int(x0 + (x1 - x0) * i / 4), int(y0 + (y1 - y0) * i / 4))
    pointer.pointer_up()
    actions.perform()
    _until(driver, "var imgs = document.querySelectorAll('#' + arguments[0] + ' img');"
                   "return imgs.length > 0 && Array.prototype.every.call(imgs, function (i) {"
                   " return i.complete && i.naturalWidth > 0; });", timeout,
           "the lasso filled no image grid (no point in the map's middle?)", ids.MP_GRID)
    return ids.MP_GRID


#: the keys ``review_by_keyboard`` presses, one decision per tile from the first
REVIEW_KEYS = ("k", "s", "s", "2", "a", "s", "x", "k", "s")


def review_by_keyboard(driver, timeout: float) -> str | None:
    """Type a reviewer name, decide the review page's first tiles by keyboard
    (``REVIEW_KEYS``: keep, take the suggestion, a class, ambiguous, drop) and wait until
    every one shows its decision (the shot: the whole page, the next tile focused)."""
    box = driver.find_element("id", ids.RV_NAME)
    box.send_keys("ann" + Keys.ENTER)
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
    ActionChains(driver).send_keys("j").perform()  # the first key focuses the first tile
    for key in REVIEW_KEYS:
        ActionChains(driver).send_keys(key).perform()
    _until(driver, "var b = document.querySelectorAll('#' + arguments[0] + ' .rv-badge');"
                   "return b.length >= arguments[1] && Array.prototype.slice.call(b, 0, arguments[1]).every("
                   "function (e) { return e.innerText !== 'undecided'; });", timeout,
           "the review tiles did not show their decisions", ids.RV_GRID, len(REVIEW_KEYS))
    return None


def compute_gradcam(driver, timeout: float) -> str | None:
    """Press the sample page's Grad-CAM button and wait until its card holds a figure or
    a note (a run of a model of the user's, served without --model)."""
    driver.find_element("id", ids.SM_GRADCAM_GO).click()
    _until(driver, "var c = document.getElementById(arguments[0]);"
                   "return !!(c && (c.querySelector('.js-plotly-plot') || c.querySelector('.note-card')));",
           timeout, "the Grad-CAM card showed neither a figure nor a note", ids.SM_GRADCAM)
    return ids.SM_GRADCAM


#: ``NAME=/path@ACTION``: what to do on the page before its screenshot; each returns the id
#: of the element the shot ends below (None: the whole page)
ACTIONS = {"hover": hover_map_point, "lasso": lasso_map, "review": review_by_keyboard, "gradcam": compute_gradcam}


def shoot(root: Path, pages: dict[str, str], out: Path, width: int = 1500, timeout: float = 120.0,
          model: ModelSpec | None = None) -> list[Path]:
    """Save a full-page PNG of each ``name -> URL path`` (``@ACTION`` at its end: taken
    after that action of ``ACTIONS``; ``#ID`` before it: of that element alone) under
    ``out``; returns the files."""
    for name, path in pages.items():
        if "@" in path and path.rsplit("@", 1)[1] not in ACTIONS:
            raise SystemExit(f"{name}: unknown action @{path.rsplit('@', 1)[1]}; actions: {', '.join(ACTIONS)}")
    app = create_app([root], refresh_seconds=0, host="127.0.0.1", model=model)
    port = _free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = _browser(width)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        for name, spec in pages.items():
            path, _, action = spec.rpartition("@") if "@" in spec else (spec, "", "")
            path, _, element = path.partition("#")
            driver.set_window_size(width, 1000)
            driver.get(f"http://127.0.0.1:{port}{path}")
            _settle(driver, timeout)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(height) + 200, 12000))  # the window counts its frame too
            time.sleep(1.0)  # graphs resize to the new viewport
            if action:
                end = ACTIONS[action](driver, timeout)
                _settle(driver, timeout)
                if end is not None:  # the page down to that element
                    height = int(driver.execute_script(
                        "var r = document.getElementById(arguments[0]).getBoundingClientRect();"
                        " return r.bottom + window.scrollY + 16;", end))
                    _fit_viewport(driver, width, height)
            target = out / f"{name}.png"
            if element:  # the window holds the whole page: the element is in view
                shot = driver.find_element("id", element)
                shot.screenshot(str(target))
                print(f"{target}  (#{element}: {shot.size['width']} x {shot.size['height']} px of a {width} px page)")
            else:
                driver.save_screenshot(str(target))
                print(f"{target}  ({width} x {int(height)} px)")
            saved.append(target)
    finally:
        driver.quit()
        server.shutdown()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="folder of runs to serve")
    parser.add_argument("pages", nargs="+", help="NAME=/path?query, NAME=/path?query#ELEMENT_ID (that element "
                        f"alone), or either with @ACTION at its end (ACTION: {', '.join(ACTIONS)})")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a page to settle")
    parser.add_argument("--model", nargs=3, metavar=("FACTORY", "WEIGHTS", "LAYER"),
                        help="serve with this model for runs of a model relabscope did not build (as serve --model)")
    args = parser.parse_args()
    pages = dict(p.split("=", 1) for p in args.pages)
    shoot(args.root, pages, args.out, args.width, args.timeout, ModelSpec(*args.model) if args.model else None)


if __name__ == "__main__":
    main()
