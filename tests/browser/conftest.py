"""End-to-end tests that drive the dashboard in headless Chromium (dash's ``dash_duo``
fixture: a threaded Flask server plus a selenium WebDriver).

Headless without any command-line flag: ``pytest_setup_options`` below hands dash's
fixtures ChromeOptions that already carry ``--headless`` (plus the browser binary and the
flags a container needs), so the README's plain ``.venv/bin/pytest`` runs them headless; a
``--headless`` given anyway is harmless (Chromium sees the flag twice).
``RELABSCOPE_BROWSER_HEADED=1`` opens a visible window instead (local debugging).

Nothing is downloaded: selenium 4.2 (dash[testing] pins selenium<=4.2.0) has no
selenium-manager; it starts the ``chromedriver`` first on PATH, which ``_browser_env``
makes the one ``find_driver`` picks (``RELABSCOPE_CHROMEDRIVER``, a file named
chromedriver; else the one beside the browser, i.e. Debian's /usr/bin/chromedriver next to
/usr/bin/chromium). The browser is ``RELABSCOPE_CHROMIUM``, else chromium on PATH. Without
a browser, a driver or dash[testing] the tests skip with the reason, unless
``RELABSCOPE_REQUIRE_BROWSER`` is set (``.ci/run`` sets it): then they fail.

Screenshots: every test saves some (``shoot``). ``RELABSCOPE_SCREENSHOTS`` unset: into the
test's tmp_path; ``1`` (or true/yes): into tests/browser/screenshots/ (git-ignored); any
other value: into that folder.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.dashboard.conftest import served  # noqa: F401  (the session's tiny runs plus a truncated one)

REQUIRE_ENV = "RELABSCOPE_REQUIRE_BROWSER"
SHOTS_ENV = "RELABSCOPE_SCREENSHOTS"
HEADED_ENV = "RELABSCOPE_BROWSER_HEADED"
REPO_SHOTS = Path(__file__).parent / "screenshots"
WINDOW = (1400, 1000)
#: duration of one pointer move (selenium's default is 250 ms a move)
MOVE_MS = 40
#: first-load and interaction times, printed in the terminal summary
TIMINGS: list[tuple[str, float]] = []
#: what the readability check (tests.browser.overlap) measured: (where, figures, texts per
#: kind), printed in the terminal summary
TEXT_COUNTS: list[tuple[str, int, dict[str, int]]] = []


# ---------------------------------------------------------------------- browser and driver
def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def find_browser() -> str | None:
    """Chromium (or Chrome): ``RELABSCOPE_CHROMIUM`` / ``DASH_TEST_CHROMEPATH``, else PATH."""
    for env in ("RELABSCOPE_CHROMIUM", "DASH_TEST_CHROMEPATH"):
        if os.environ.get(env):
            return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def find_driver() -> str | None:
    """chromedriver: ``RELABSCOPE_CHROMEDRIVER``, else the one beside the browser (Debian:
    /usr/bin/chromedriver next to /usr/bin/chromium, same version), else PATH, else
    Debian's locations."""
    if os.environ.get("RELABSCOPE_CHROMEDRIVER"):
        path = os.environ["RELABSCOPE_CHROMEDRIVER"]
        return path if os.access(path, os.X_OK) else None
    browser = find_browser()
    candidates = [str(Path(browser).parent / "chromedriver")] if browser else []
    candidates += [shutil.which("chromedriver") or "", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        from dash.testing.plugin import _installed
    except ImportError:
        _installed = False
    if not _installed:
        return "dash[testing] (selenium) is not installed: pip install -e '.[test]'"
    if find_browser() is None:
        return "no Chromium/Chrome found (apt-get install chromium chromium-driver, or .ci/install-chromium)"
    if find_driver() is None:
        return "no chromedriver found (apt-get install chromium-driver, or .ci/install-chromium)"
    return None


@pytest.fixture(autouse=True, scope="session")
def _browser_env():
    """Skip (or, with RELABSCOPE_REQUIRE_BROWSER, fail) without a browser; put the found
    chromedriver first on PATH, where selenium 4.2 looks for it."""
    why = _missing()
    if why is not None:
        if os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0"):
            pytest.fail(f"browser tests cannot run: {why}; {REQUIRE_ENV} is set", pytrace=False)
        pytest.skip(f"browser tests need a local browser: {why}")
    driver = find_driver()
    before = os.environ.get("PATH", "")
    if shutil.which("chromedriver") != driver:
        os.environ["PATH"] = str(Path(driver).parent) + os.pathsep + before
    yield
    os.environ["PATH"] = before


@pytest.hookimpl(optionalhook=True)
def pytest_setup_options():
    """dash's browser fixtures call this hook for their WebDriver options (first result)."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    binary = find_browser()
    if binary:
        options.binary_location = binary
    if not _truthy(os.environ.get(HEADED_ENV)):
        options.add_argument("--headless")
    for arg in ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                "--disable-extensions", "--disable-component-update", "--no-first-run",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US"):
        options.add_argument(arg)
    return options


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "dashboard browser timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.2f} s  {what}")
    if TEXT_COUNTS:
        terminalreporter.write_sep("-", "figure texts measured by the readability check")
        for what, figures, counts in TEXT_COUNTS:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            terminalreporter.write_line(f"{what}: {figures} figures, {sum(counts.values())} texts ({kinds})")


# ---------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dash_app(served):  # noqa: F811
    """A fresh app over the served runs; the refresh tick is off (no redraw mid-click)."""
    from relabscope.dashboard import create_app

    return create_app([served], refresh_seconds=0, host="127.0.0.1")


@pytest.fixture
def board(dash_duo, dash_app):
    """``dash_duo`` with the app served on a free port (no page opened yet)."""
    # the runner itself (what start_server calls before it opens "/"): no wasted page load.
    # debug with the dev tools UI: callback errors and invalid props show as an error count.
    dash_duo.server(dash_app, port=free_port(), debug=True, use_reloader=False, dev_tools_hot_reload=False,
                    dev_tools_ui=True, dev_tools_props_check=True)
    return Board(dash_duo)


class Board:
    """Helpers over ``dash_duo`` for the relabscope dashboard."""

    def __init__(self, duo):
        self.duo = duo
        self.driver = duo.driver

    @property
    def url(self) -> str:
        return self.duo.server.url

    def open(self, path: str, *, wait: str | None = None, timeout: float = 30) -> float:
        """Load ``path`` (e.g. ``/flipflops?run=scn``) and wait for the Dash renderer, for
        ``wait`` (a CSS selector) and for every callback to finish; the seconds it took."""
        t0 = time.perf_counter()
        self.duo.wait_for_page(self.url + path, timeout=timeout)
        if wait:
            self.duo.wait_for_element(wait, timeout=timeout)
        self.settle(timeout)
        return time.perf_counter() - t0

    def settle(self, timeout: float = 30) -> None:
        """Wait until no callback is pending (the renderer's request queue is empty)."""
        until(lambda: self.duo._wait_for_callbacks(), timeout, "callbacks still pending")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def figure(self, selector: str) -> dict:
        """The traces (type, name, number of x values) and title of the plotly graph at
        ``selector`` (a ``.js-plotly-plot`` or an element containing one)."""
        return self.js(
            """
            var el = document.querySelector(arguments[0]);
            if (!el) return null;
            var gd = el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
            if (!gd || !gd._fullLayout || !gd._fullData) return null;
            var title = gd._fullLayout.title && gd._fullLayout.title.text;
            // _fullData: the traces as plotly drew them (base64-packed arrays decoded)
            return {title: title || '', traces: gd._fullData.map(function (t) {
                var x = t.x || [], y = t.y || [];
                return {type: t.type || 'scatter', name: t.name || '',
                        n: Math.max(x.length || 0, y.length || 0),
                        drawn: Array.prototype.filter.call(x.length ? x : y, function (v) { return v !== null; }).length};
            })};
            """, selector)

    def wait_figure(self, selector: str, timeout: float = 30, predicate: Callable[[dict], bool] | None = None) -> dict:
        """The figure at ``selector`` once plotly drew it with at least one trace."""
        def ready():
            fig = self.figure(selector)
            if fig is None or not fig["traces"]:
                return None
            return fig if predicate is None or predicate(fig) else None
        return until(ready, timeout, f"no plotly figure with data at {selector}")

    def client_point(self, selector: str, x: Any, y: Any) -> tuple[float, float]:
        """Viewport coordinates of data point (x, y) of the plotly graph at ``selector``
        (scrolled into view first)."""
        return tuple(self.js(
            """
            var el = document.querySelector(arguments[0]);
            var gd = el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
            gd.scrollIntoView({block: 'center'});
            var fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
            var r = gd.querySelector('.main-svg').getBoundingClientRect();
            return [r.left + xa._offset + xa.d2p(arguments[1]), r.top + ya._offset + ya.d2p(arguments[2])];
            """, selector, x, y))

    def click(self, target: Any) -> None:
        """Scroll ``target`` (a CSS selector or an element) to the middle of the window
        (away from the dev-tools bar at the bottom) and click it."""
        el = self.duo.find_element(target) if isinstance(target, str) else target
        self.js("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", el)
        el.click()

    def click_at(self, x: float, y: float) -> None:
        """A real mouse click at viewport coordinates (the pointer rests there first, so
        plotly's hover picking sees the point)."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.driver, duration=MOVE_MS)
        actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
        actions.pointer_action.pause(0.1)
        actions.pointer_action.click()
        actions.perform()

    def drag_path(self, path: list[tuple[float, float]], steps: int = 4) -> None:
        """Press at ``path[0]``, move through the other points (``steps`` moves per
        segment), release: a lasso, or with two points a box (viewport coordinates)."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.driver, duration=MOVE_MS)
        p = actions.pointer_action
        p.move_to_location(int(path[0][0]), int(path[0][1]))
        p.pointer_down()
        for (x0, y0), (x1, y1) in zip(path, path[1:]):
            for i in range(1, steps + 1):
                f = i / steps
                p.move_to_location(int(x0 + (x1 - x0) * f), int(y0 + (y1 - y0) * f))
        p.pointer_up()
        actions.perform()

    def texts(self, selector: str) -> list[str]:
        """innerText of every element at ``selector``, now (no implicit wait: dash_duo's
        find_elements waits 2 s before it answers "none")."""
        return self.js("return Array.prototype.map.call(document.querySelectorAll(arguments[0]),"
                       " function (e) { return e.innerText; });", selector)

    def count(self, selector: str) -> int:
        return len(self.texts(selector))

    def text(self, selector: str) -> str:
        return " ".join(self.texts(selector))

    def search(self) -> dict[str, str]:
        from relabscope.dashboard.inputs import parse_search

        return parse_search(self.js("return window.location.search"))

    def images_loaded(self, selector: str) -> list[dict]:
        """src, complete and naturalWidth of every <img> under ``selector``."""
        return self.js(
            """
            return Array.prototype.map.call(document.querySelectorAll(arguments[0]), function (img) {
                return {src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth};
            });
            """, selector + " img")

    def wait_images(self, selector: str, minimum: int = 1, timeout: float = 30) -> list[dict]:
        """The images under ``selector`` once at least ``minimum`` exist and all finished loading."""
        def ready():
            imgs = self.images_loaded(selector)
            return imgs if len(imgs) >= minimum and all(i["complete"] for i in imgs) else None
        return until(ready, timeout, f"images under {selector} did not load")

    def errors(self) -> list[dict]:
        """SEVERE browser console entries (failed requests, JS exceptions, Dash callback
        errors) and the Dash dev-tools error count."""
        logs = [e for e in self.duo.get_logs() if e.get("level") == "SEVERE"]
        for badge in self.texts(".test-devtools-error-count"):
            if badge.strip() not in ("", "0"):
                logs.append({"level": "DEVTOOLS", "message": f"Dash dev tools report {badge} error(s)"})
        return logs

    def assert_no_errors(self) -> None:
        errors = self.errors()
        assert not errors, "browser errors:\n" + "\n".join(str(e.get("message"))[:400] for e in errors)


def until(check: Callable[[], Any], timeout: float, message: str, poll: float = 0.1) -> Any:
    """The first truthy ``check()`` within ``timeout`` seconds, else AssertionError."""
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # stale elements while Dash re-renders: try again
            last_exc = exc
        if time.monotonic() > end:
            raise AssertionError(f"{message} (after {timeout:.0f} s)" + (f"; last error: {last_exc!r}" if last_exc else ""))
        time.sleep(poll)


# ---------------------------------------------------------------------- screenshots
def screenshot_dir(tmp_path: Path) -> Path:
    value = os.environ.get(SHOTS_ENV, "").strip()
    if not value:
        return tmp_path / "screenshots"
    if _truthy(value):
        return REPO_SHOTS
    return Path(value)


@pytest.fixture
def shoot(board, tmp_path, request) -> Callable[[str], Path]:
    """``shoot("name")`` saves a PNG of the browser window; returns its path."""
    folder = screenshot_dir(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def save(name: str) -> Path:
        path = folder / f"{test}--{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        assert board.driver.save_screenshot(str(path)), f"screenshot {path} not written"
        return path
    return save
