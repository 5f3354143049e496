"""Full-page screenshots of dashboard pages, as a reader sees them, for docs/images.

    python docs/screenshots.py runs/demo --width 1500 --out docs/images \
        "overview=/?run=scn-c-20" "compare=/compare?run=scn-20&against=scn-c-20"

Serves the runs under ROOT in this process (the same ``create_app`` as ``relabscope
serve``), opens each URL in headless Chromium at ``--width`` pixels, waits until no view is
loading, then saves the whole page's height as ``OUT/<name>.png``. Needs Debian's
``chromium`` and ``chromium-driver`` (.ci/install-chromium); downloads nothing.
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
from werkzeug.serving import make_server

from relabscope.dashboard import create_app, ids


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
    """Wait until Dash has rendered the page and no view is loading (twice in a row)."""
    end, quiet = time.time() + timeout, 0
    while time.time() < end and quiet < 2:
        busy = driver.execute_script(
            "var page = document.getElementById(arguments[0]);"
            "return !page || page.children.length === 0"
            " || document.querySelectorAll('[data-dash-is-loading=\"true\"], ._dash-loading-callback').length", ids.PAGE)
        quiet = 0 if busy else quiet + 1
        time.sleep(0.7)


def shoot(root: Path, pages: dict[str, str], out: Path, width: int = 1500, timeout: float = 120.0) -> list[Path]:
    """Save a full-page PNG of each ``name -> URL path`` under ``out``; returns the files."""
    app = create_app([root], refresh_seconds=0)
    port = _free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = _browser(width)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        for name, path in pages.items():
            driver.set_window_size(width, 1000)
            driver.get(f"http://127.0.0.1:{port}{path}")
            _settle(driver, timeout)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(height) + 200, 12000))  # the window counts its frame too
            time.sleep(1.0)  # graphs resize to the new viewport
            target = out / f"{name}.png"
            driver.save_screenshot(str(target))
            saved.append(target)
            print(f"{target}  ({width} x {height} px)")
    finally:
        driver.quit()
        server.shutdown()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="folder of runs to serve")
    parser.add_argument("pages", nargs="+", help="NAME=/path?query")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a page to settle")
    args = parser.parse_args()
    pages = dict(p.split("=", 1) for p in args.pages)
    shoot(args.root, pages, args.out, args.width, args.timeout)


if __name__ == "__main__":
    main()
