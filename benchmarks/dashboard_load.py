"""The dashboard at AffectNet scale: first page load, per-callback latency, a load test.

Starts the dashboard in a child process the way ``relabscope serve`` does (the same
``relabscope.dashboard.app.serve`` function: waitress, the production WSGI server, with
``SERVER_THREADS`` threads) on 127.0.0.1 with a free port, then drives it over HTTP
exactly as the browser does (``/_dash-update-component`` POSTs whose payloads
``relabscope.dashboard.harness`` builds from the app's ``callback_map``, as for the tests;
component ids from ``relabscope.dashboard.ids``). A callback named below that the app no
longer has stops the benchmark with its outputs named; callbacks it cannot feed are listed
under "not timed" with the reason, never dropped silently:

1. first page load of the overview: ``GET /`` + its JS/CSS bundles + ``/_dash-layout`` +
   ``/_dash-dependencies`` + the routing callback, then the callbacks the overview page
   fires on load (run list, numbers, four figures; sent in parallel like the browser does).
   Cold (first request to a fresh server: the run is opened, caches empty) and warm.
2. per-callback latency: each page's callbacks (the routing callback per page, overview,
   flip-flops table/filters/row click/detail, sample inspector for many sample ids, and
   any further callback - map, compactness, compare ... - found in ``callback_map`` at run
   time, fed from its page's layout with varied dropdown/slider values), ``--calls`` calls
   each with varied inputs, sequentially; p50/p95/max over the warm calls, the first
   (cold) call shown separately.
3. load test: ``--clients`` threads (``requests.Session`` each) for ``--seconds`` hitting a
   mix of those callbacks; an error is anything but HTTP 200/204 with a Dash JSON body.

Peak memory is the server process's VmHWM (peak resident set) from /proc.

Callbacks that need the run's images or model (the image route, Grad-CAM on request) are
timed separately and left out of the goals and the load test: a synthetic log names no
data set, so they legitimately answer "not found"/an error card there.

    python benchmarks/dashboard_load.py --quick                       # small generated log, ~1 min
    python benchmarks/dashboard_load.py --log /work/bench/affectnet-scale.h5
    python benchmarks/dashboard_load.py --log ... --profile 4         # + cProfile of the 4 slowest

``--log`` may be a run.h5 anywhere: it is hard-linked as ``<its folder>/runs/<name>/run.h5``
(the registry discovers runs as folders holding ``run.h5`` and refuses symlinks out of its
root) unless ``--root`` names a folder of runs. ``--against`` links a second log into the
same folder, so the compare page and the compactness difference are timed against a run
of the same size (``--quick`` writes a second small log with another seed). Prints a table
and writes JSON to benchmarks/results/dashboard_load.json.

    python benchmarks/analysis_scale.py --log /work/bench/affectnet-scale-b.h5 --seed 1 --write-only
    python benchmarks/dashboard_load.py --log /work/bench/affectnet-scale.h5 \
        --against /work/bench/affectnet-scale-b.h5
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from relabscope.dashboard import ids
from relabscope.dashboard.harness import (ROUTER, CallbackFailed, answer, callback_key, components, is_pattern,
                                          key_outputs, page_callbacks, payload, post_session, post_test_client)
from relabscope.dashboard.images import ROUTE as IMAGE_ROUTE

HERE = Path(__file__).resolve().parent
GOALS = {"first_load_s": 3.0, "callback_p95_s": 1.0, "memory_gib": 3.0}
#: callbacks that need the run's images/model: timed, but outside the goals and the load test
NEEDS_DATA = ("sm gradcam (compute)", "image route")
FF_TABLE_OUTPUTS = [f"{ids.FF_TABLE}.data", f"{ids.FF_TABLE}.page_count", f"{ids.FF_TABLE}.page_current",
                    f"{ids.FF_COUNT}.children"]
MAP_OUTPUTS = [f"{ids.MP_GRAPH}.figure", f"{ids.MP_STATUS}.children", f"{ids.MP_POLL}.disabled"]


# ---------------------------------------------------------------------- the run folder
def make_quick_log(folder: Path, name: str, samples: int, epochs: int, seed: int) -> Path:
    """A small log written by benchmarks/analysis_scale.py's writer, as <folder>/<name>/run.h5."""
    spec = importlib.util.spec_from_file_location("analysis_scale", HERE / "analysis_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = folder / name / "run.h5"
    log.parent.mkdir(parents=True, exist_ok=True)
    embed_at = {max(0, epochs // 4 - 1), max(0, epochs // 2 - 1), max(0, 3 * epochs // 4 - 1), epochs - 1}
    print(f"writing a {samples:,}-sample, {epochs}-epoch log to {log}")
    mod.write_log(log, samples, max(100, samples // 70), epochs, 8, 512, embed_at, seed=seed)
    return log


def link_run(log: Path, root: Path) -> None:
    """Hard-link ``log`` as ``<root>/<name>/run.h5``: the registry discovers runs as folders
    holding ``run.h5`` and refuses symlinks out of its roots."""
    log = log.resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", log.parent.name if log.name == "run.h5" else log.stem)
    target = root / name / "run.h5"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if not os.path.samefile(target, log):
            raise SystemExit(f"{target} exists and is not {log}; pass --root")
    else:
        os.link(log, target)
        print(f"hard-linked {log} as {target}")


def serving_root(log: Path, against: Path | None) -> Path:
    """The folder to serve: a lone ``run.h5`` is served from its own folder; any other log
    (and the ``--against`` log) is linked under ``<its folder>/runs``."""
    log = log.resolve()
    if log.name == "run.h5" and against is None:
        return log.parent
    root = log.parent / "runs"
    for path in (log, against):
        if path is not None:
            link_run(path, root)
    return root


def run_id_of(registry, log: Path) -> str | None:
    """The registry's id of the run whose log is (a hard link of) ``log``."""
    for run_id in registry.ids():
        if os.path.samefile(registry.entry(run_id).log_path, log):
            return run_id
    return None


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import sys
from relabscope.dashboard.app import serve
serve([sys.argv[1]], host="127.0.0.1", port=int(sys.argv[2]), auth=None, log=lambda line: print(line, flush=True))
"""


class Server:
    """The dashboard in a child process; ``hwm()`` is its peak RSS so far (bytes)."""

    def __init__(self, root: Path, port: int, log_file: Path):
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env.pop("RELABSCOPE_AUTH", None)
        self.log = open(log_file, "w")
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        t = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {log_file}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
            if time.perf_counter() - t > 120:
                raise SystemExit("the server did not listen within 120 s")
        self.startup_s = time.perf_counter() - t
        self.rss_samples: list[float] = []
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        import psutil

        p = psutil.Process(self.proc.pid)
        while not self._stop.wait(0.25):
            try:
                self.rss_samples.append(p.memory_info().rss)
            except psutil.Error:
                return

    def status_bytes(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def hwm(self) -> int:
        return self.status_bytes("VmHWM")

    def rss(self) -> int:
        return self.status_bytes("VmRSS")

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------------- Dash calls
class Result:
    __slots__ = ("name", "seconds", "status", "ok", "error", "response", "error_cards", "note_figures")

    def __init__(self, name, seconds, status, ok, error=None, response=None, error_cards=0, note_figures=0):
        self.name, self.seconds, self.status, self.ok, self.error = name, seconds, status, ok, error
        self.response, self.error_cards, self.note_figures = response, error_cards, note_figures


def post(session, base: str, name: str, body: dict, timeout: float = 60.0, keep: bool = False) -> Result:
    """One timed callback request (``body``: a ``harness.payload``); ``keep`` keeps its
    response (``{"id": {"prop": value}}``) for the caller."""
    t = time.perf_counter()
    try:
        status, text = post_session(session, base, body, timeout)
    except Exception as exc:  # connection refused/reset, timeout
        return Result(name, time.perf_counter() - t, 0, False, f"{type(exc).__name__}: {exc}"[:300])
    dt = time.perf_counter() - t
    try:
        response = answer(status, text)
    except CallbackFailed as exc:
        return Result(name, dt, status, False, exc.detail)
    return Result(name, dt, status, True, None, response if keep else None, text.count("error-card"),
                  text.count('"meta": {"note"') + text.count('"meta":{"note"'))


def require(res: Result) -> dict:
    """The response of a request the benchmark cannot go on without (it stops otherwise)."""
    if not res.ok:
        raise SystemExit(f"{res.name} failed: {res.status} {res.error}")
    return res.response


# ---------------------------------------------------------------------- the layout, walked
def vary(comp: dict | None, prop: str, rng: random.Random, pick_sample: Callable[[], int]) -> Any:
    """A plausible value for ``comp.prop`` (``comp``: component JSON, as ``harness.components``
    gives it): another option of a dropdown/radio/checklist, a point of a slider, another
    sample id in a store or a sample-id box; else the layout's own value."""
    if comp is None:
        return None
    kind, props = comp["type"], comp["props"]
    value = props.get(prop)
    if prop == "value" and props.get("options"):
        opts = [o["value"] if isinstance(o, dict) else o for o in props["options"]]
        opts = [o for o in opts if not (isinstance(o, dict) and "value" not in o)]
        if props.get("multi") or kind == "Checklist":
            k = rng.randint(1, min(4, len(opts)))
            return sorted(rng.sample(opts, k), key=str)
        return rng.choice(opts)
    if prop == "value" and kind in ("Slider", "RangeSlider") and "min" in props and "max" in props:
        lo, hi = props["min"], props["max"]
        step = props.get("step") or 1
        pts = [lo + i * step for i in range(int((hi - lo) / step) + 1)] or [lo]
        if kind == "RangeSlider":
            a, b = sorted(rng.sample(pts, 2)) if len(pts) > 1 else (lo, hi)
            return [a, b]
        return rng.choice(pts)
    if prop == "data" and isinstance(value, dict) and "sample" in value:
        return {**value, "sample": pick_sample()}
    if prop == "value" and kind == "Input" and props.get("inputMode") == "numeric":
        return str(pick_sample())  # a sample-id box (e.g. the compare page's)
    return value


# ---------------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, server: Server, callback_map: dict, run_id: str, info: dict, seed: int = 0):
        import requests

        self.requests = requests
        self.server = server
        self.base = server.base
        self.callback_map = callback_map
        self.run_id = run_id
        self.info = info  # n, n_train, num_epochs, class_names, embed_epochs
        self.rng = random.Random(seed)
        self.session = requests.Session()
        self.version = None
        self.layouts: dict[str, dict[str, dict]] = {}   # page path -> component JSON by id
        self.table_rows: list[dict] = []
        self.flip_ids: list[int] = []

    # -------------------------------------------------------------- inputs
    def search(self, **params) -> str:
        from urllib.parse import urlencode

        return "?" + urlencode({"run": self.run_id, **params})

    def pick_sample(self, rng: random.Random | None = None) -> int:
        rng = rng or self.rng
        r = rng.random()
        if self.flip_ids and r < 0.4:
            return rng.choice(self.flip_ids)
        if r < 0.9:
            return rng.randrange(self.info["n_train"])
        return rng.randrange(self.info["n_train"], self.info["n"])  # a test sample

    def route_values(self, path: str, search: str) -> dict:
        return {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search}

    def specs(self) -> dict[str, Callable[[random.Random], tuple[str, dict, list | None]]]:
        """name -> make(rng) -> (callback key, values, changedPropIds). A named callback the
        app lacks stops the benchmark (``CallbackNotFound``); the app's other callbacks are fed
        from their page's layout (``generic``), and any that cannot be are listed with the
        reason in ``self.generic_skipped``."""
        rid = self.run_id
        out: dict[str, Callable] = {}
        named: set[str] = set()
        classes = list(range(len(self.info["class_names"])))
        epochs = self.info["num_epochs"]

        def add(name, outputs, make):
            key = callback_key(self.callback_map, outputs)
            named.add(key)
            out[name] = lambda rng, key=key, make=make: (key, *make(rng))

        live = lambda: {f"{ids.LIVE_VERSION}.data": self.version}  # noqa: E731
        add("route /", ROUTER, lambda rng: (self.route_values("/", self.search()), None))
        add("route /flipflops", ROUTER,
            lambda rng: (self.route_values("/flipflops", self.search(mode=rng.choice(["flipflopping", "all"]))), None))
        add("route /sample", ROUTER,
            lambda rng: (self.route_values("/sample", self.search(sample=self.pick_sample(rng))), None))
        add("runs-nav", [f"{ids.RUNS_NAV}.children"],
            lambda rng: ({f"{ids.URL}.pathname": rng.choice(["/", "/flipflops", "/sample"]),
                          f"{ids.URL}.search": self.search(), f"{ids.TICK}.n_intervals": rng.randrange(100)}, None))
        add("tick", [f"{ids.LIVE_VERSION}.data"],
            lambda rng: ({f"{ids.TICK}.n_intervals": rng.randrange(1, 100), f"{ids.URL}.search": self.search(),
                          **live()}, None))
        ov = {f"{ids.OV_ARGS}.data": {"run": rid}}
        add("ov summary", [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children", f"{ids.OV_CONFIG}.children"],
            lambda rng: ({**ov, **live()}, None))
        for w in ("accuracy", "relabels", "recovery", "consistency"):
            add(f"ov {w}", [f"{ids.ov_figure(w)}.children"], lambda rng: ({**ov, **live()}, None))
        ff = {f"{ids.FF_ARGS}.data": {"run": rid}}
        add("ff figures", [f"{ids.FF_HEATMAP}.figure", f"{ids.FF_BARS}.figure"], lambda rng: ({**ff, **live()}, None))

        def table(rng):
            from_filter = rng.random() < 0.5
            mode = rng.choice(["flipflopping", "relabelled", "all"])
            sort_cols = ["flipflops", "changes", "sample_id", "labels_visited", "last_relabel_epoch", "given"]
            sort_by = [{"column_id": c, "direction": rng.choice(["asc", "desc"])}
                       for c in rng.sample(sort_cols, rng.randint(1, 2))]
            values = {**ff, **live(), f"{ids.FF_MODE}.value": mode,
                      f"{ids.FF_GIVEN}.value": rng.choice([None, None] + classes),
                      f"{ids.FF_FINAL}.value": rng.choice([None, None] + classes),
                      f"{ids.FF_CELL}.data": list(rng.sample(classes, 2)) if rng.random() < 0.2 else None,
                      f"{ids.FF_TABLE}.page_current": 0 if from_filter else rng.choice([0, 1, 2, 5, 50, 500, 5000]),
                      f"{ids.FF_TABLE}.sort_by": sort_by}
            filters = [f"{ids.FF_MODE}.value", f"{ids.FF_GIVEN}.value", f"{ids.FF_FINAL}.value", f"{ids.FF_CELL}.data"]
            paging = [f"{ids.FF_TABLE}.page_current", f"{ids.FF_TABLE}.sort_by"]
            return values, [rng.choice(filters if from_filter else paging)]

        add("ff table", FF_TABLE_OUTPUTS, table)

        def row_click(rng):
            rows = self.table_rows or [{"sample_id": 0}]
            r = rng.randrange(len(rows))
            return ({f"{ids.FF_TABLE}.active_cell": {"row": r, "column": 1, "column_id": "sample_id"},
                     f"{ids.FF_BARS}.clickData": None, f"{ids.FF_TABLE}.data": rows},
                    [f"{ids.FF_TABLE}.active_cell"])

        add("ff row click", [f"{ids.FF_SELECTED}.data"], row_click)
        add("ff detail", [f"{ids.FF_DETAIL}.children"],
            lambda rng: ({f"{ids.FF_SELECTED}.data": self.pick_sample(rng), **ff, **live()}, None))
        names = self.info["class_names"]
        add("ff matrix click", [f"{ids.FF_CELL}.data"],
            lambda rng: ({f"{ids.FF_HEATMAP}.clickData": {"points": [{"x": names[a], "y": names[b]} for a, b in
                                                                     [rng.sample(classes, 2)]]},
                          f"{ids.FF_CLEAR}.n_clicks": 0, **ff}, [f"{ids.FF_HEATMAP}.clickData"]))
        add("ff cycle chip", [f"{ids.FF_CELL_CHIP}.children"],
            lambda rng: ({f"{ids.FF_CELL}.data": rng.choice([None, rng.sample(classes, 2)]), **ff}, None))

        def sm(rng):
            return {f"{ids.SM_ARGS}.data": {"run": rid, "sample": self.pick_sample(rng)}, **live()}

        add("sm facts+timeline+probs", [f"{ids.SM_FACTS}.children", f"{ids.SM_TIMELINE}.children",
                                        f"{ids.SM_PROBS}.children", f"{ids.SM_METHOD}.children"],
            lambda rng: (sm(rng), None))

        def distances(rng):
            pool = self.info["embed_epochs"] or list(range(epochs))
            chosen = None if rng.random() < 0.3 else sorted(rng.sample(pool, rng.randint(1, min(3, len(pool)))))
            return {**sm(rng), f"{ids.SM_EPOCHS}.value": chosen}, None

        add("sm distances", [f"{ids.SM_DISTANCES}.children"], distances)
        add("sm gradcam (not asked)", [f"{ids.SM_GRADCAM}.children"],
            lambda rng: ({**sm(rng), f"{ids.SM_GRADCAM_GO}.n_clicks": 0}, None))
        add("sm gradcam (compute)", [f"{ids.SM_GRADCAM}.children"],
            lambda rng: ({**sm(rng), f"{ids.SM_GRADCAM_GO}.n_clicks": 1}, [f"{ids.SM_GRADCAM_GO}.n_clicks"]))
        add("sm open", [f"{ids.URL}.search"],
            lambda rng: ({f"{ids.SM_OPEN}.n_clicks": 1, f"{ids.SM_INPUT}.n_submit": None,
                          f"{ids.SM_INPUT}.value": self.pick_sample(rng), f"{ids.URL}.search": self.search()},
                         [f"{ids.SM_OPEN}.n_clicks"]))
        # everything else the app registers (pages added later: map, compactness, compare, ...)
        out.update(self.generic(covered=named))
        return out

    def generic(self, covered: set[str]) -> dict[str, Callable]:
        """Specs for the callbacks not in ``covered``, fed from their page's layout (varied
        dropdown, slider and sample values); those no page layout can feed go to
        ``self.generic_skipped`` with the reason."""
        out: dict[str, Callable] = {}
        covered = set(covered)
        self.generic_skipped = []
        for page, comps in self.layouts.items():
            for key, cb in page_callbacks(self.callback_map, comps, ids.SHELL_INPUTS):
                if key in covered:
                    continue
                covered.add(key)
                missing = {s["id"] for s in cb["state"]} - set(comps) - ids.SHELL_INPUTS
                if missing:
                    self.generic_skipped.append((key[:80], f"state not on the {page} layout: {sorted(missing)}"))
                    continue
                make = self.layout_values(cb, page, comps)
                out[f"{page.strip('/') or 'overview'}: {','.join(key_outputs(key))}"[:60]] = \
                    lambda rng, key=key, make=make: (key, *make(rng))
        for key in self.callback_map:
            if key not in covered:
                why = "pattern-matching ids" if is_pattern(key) else "inputs on no page layout"
                self.generic_skipped.append((key[:80], why))
        return out

    def layout_values(self, cb: dict, page: str, comps: dict[str, dict]) -> Callable:
        """make(rng) -> (values, None) for callback ``cb`` from the ``page`` layout ``comps``."""
        def make(rng):
            values = {}
            for item in cb["inputs"] + cb["state"]:
                name, cid, prop = f"{item['id']}.{item['property']}", item["id"], item["property"]
                if cid == ids.URL:
                    values[name] = page.split("?")[0] if prop == "pathname" else self.search()
                elif cid == ids.LIVE_VERSION:
                    values[name] = self.version
                else:
                    values[name] = vary(comps.get(cid), prop, rng, lambda: self.pick_sample(rng))
            return values, None
        return make

    def call(self, name: str, make: Callable, rng: random.Random, session=None, keep=False) -> Result:
        key, values, changed = make(rng)
        return post(session or self.session, self.base, name, payload(self.callback_map, key, values, changed),
                    keep=keep)

    # -------------------------------------------------------------- 1. first page load
    def page_load(self, session) -> dict:
        """Seconds for the overview: shell (HTML, bundles, layout, dependencies), routing
        callback, then the page's own callbacks in parallel (as the renderer sends them)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        r = session.get(self.base + "/?run=" + self.run_id, timeout=60)
        r.raise_for_status()
        timings["GET /"] = time.perf_counter() - t0
        assets = re.findall(r'<script src="([^"]+)"', r.text) + re.findall(r'<link rel="stylesheet" href="([^"]+)"',
                                                                            r.text)
        t = time.perf_counter()
        with cf.ThreadPoolExecutor(6) as pool:  # a browser's 6 connections per host
            for resp in pool.map(lambda u: self.requests.get(self.base + u, timeout=60), assets):
                resp.raise_for_status()
        timings[f"{len(assets)} JS/CSS bundles"] = time.perf_counter() - t
        for path in ("/_dash-layout", "/_dash-dependencies"):
            t = time.perf_counter()
            session.get(self.base + path, timeout=60).raise_for_status()
            timings["GET " + path] = time.perf_counter() - t
        specs = self.specs_cache
        res = self.call("route /", specs["route /"], self.rng, session, keep=True)
        timings["routing callback"] = res.seconds
        self.version = require(res).get(ids.LIVE_VERSION, {}).get("data", self.version)
        shell_s = time.perf_counter() - t0
        t = time.perf_counter()
        names = ["runs-nav", "ov summary", "ov accuracy", "ov relabels", "ov recovery", "ov consistency"]
        sessions = [self.requests.Session() for _ in names]
        with cf.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda ns: self.call(ns[0], specs[ns[0]], random.Random(0), ns[1]),
                                    zip(names, sessions)))
        timings["overview callbacks (parallel)"] = time.perf_counter() - t
        for res in results:
            timings["  " + res.name] = res.seconds
        bad = [f"{r.name}: {r.status} {r.error}" for r in results if not r.ok]
        return {"shell_and_routing_s": shell_s, "total_s": time.perf_counter() - t0, "parts": timings,
                "errors": bad, "error_cards": {r.name: r.error_cards for r in results if r.error_cards}}

    # -------------------------------------------------------------- discovery of layouts
    def discover(self, pages: list[str]) -> None:
        """Route to every page once (warm-up of nothing but the layouts) to learn component
        values, table rows and flip-flopping sample ids; a page that does not open stops the
        benchmark (its callbacks would otherwise drop out of the table)."""
        router = callback_key(self.callback_map, ROUTER)
        for page in pages:
            path = "/" + page
            search = self.search(sample=0) if page == "sample" else self.search()
            res = post(self.session, self.base, f"route {path}",
                       payload(self.callback_map, router, self.route_values(path, search)), keep=True)
            self.layouts[path] = components(require(res)[ids.PAGE]["children"])
        key, values, _ = self.specs_cache["ff table"](random.Random(0))
        values.update({f"{ids.FF_MODE}.value": "flipflopping", f"{ids.FF_GIVEN}.value": None,
                       f"{ids.FF_FINAL}.value": None, f"{ids.FF_CELL}.data": None,
                       f"{ids.FF_TABLE}.page_current": 0, f"{ids.FF_TABLE}.sort_by": None})
        res = post(self.session, self.base, "ff table", payload(self.callback_map, key, values), keep=True)
        self.table_rows = require(res)[ids.FF_TABLE]["data"]
        self.flip_ids = [int(r["sample_id"]) for r in self.table_rows]
        # a few more pages of flip-floppers for the sample pool
        for page in (1, 2, 3):
            values[f"{ids.FF_TABLE}.page_current"] = page
            res = post(self.session, self.base, "ff table",
                       payload(self.callback_map, key, values, [f"{ids.FF_TABLE}.page_current"]), keep=True)
            self.flip_ids += [int(r["sample_id"]) for r in require(res)[ids.FF_TABLE]["data"]]

    # -------------------------------------------------------------- 2. per callback
    def per_callback(self, calls: int) -> dict:
        out = {}
        for name, make in self.specs_cache.items():
            rng = random.Random(zlib.crc32(name.encode()))
            results = [self.call(name, make, rng) for _ in range(calls)]
            secs = [r.seconds for r in results]
            warm = secs[1:] or secs
            out[name] = {
                "cold_s": secs[0], "p50_s": float(np.percentile(warm, 50)), "p95_s": float(np.percentile(warm, 95)),
                "max_s": float(max(warm)), "calls": len(secs), "errors": sum(not r.ok for r in results),
                "error_cards": sum(r.error_cards > 0 for r in results),
                "note_figures": sum(r.note_figures > 0 for r in results),
                "first_error": next((f"{r.status} {r.error}" for r in results if not r.ok), None),
                "needs_data": name in NEEDS_DATA,
            }
            s = out[name]
            print(f"  {name:<34} cold {s['cold_s']:7.3f}  p50 {s['p50_s']:7.3f}  p95 {s['p95_s']:7.3f}  "
                  f"max {s['max_s']:7.3f}" + (f"  errors {s['errors']}" if s["errors"] else "")
                  + (f"  error cards {s['error_cards']}" if s["error_cards"] else ""), flush=True)
        return out

    def map_ready(self, method: str = "tsne", timeout: float = 900.0) -> dict:
        """Seconds until a map whose projection is not cached is drawn: the first request
        starts it in the background and returns at once; the page polls every 2 s."""
        key = callback_key(self.callback_map, MAP_OUTPUTS)
        values = {f"{ids.MP_ARGS}.data": {"run": self.run_id}, f"{ids.MP_METHOD}.value": method,
                  f"{ids.MP_EPOCH}.value": None, f"{ids.MP_CLASSES}.value": [0, 1], f"{ids.MP_COLOUR}.value": "effect",
                  f"{ids.LIVE_VERSION}.data": self.version, f"{ids.MP_POLL}.n_intervals": None}
        t0, polls, first = time.perf_counter(), 0, None
        while time.perf_counter() - t0 < timeout:
            r = post(self.session, self.base, "map ready", payload(self.callback_map, key, values), keep=True)
            first = r.seconds if first is None else first
            if not r.ok:
                return {"error": r.error, "seconds": time.perf_counter() - t0}
            if r.response.get(ids.MP_POLL, {}).get("disabled"):
                return {"method": method, "seconds": time.perf_counter() - t0, "polls": polls,
                        "first_answer_s": first}
            polls += 1
            time.sleep(2.0)
        return {"method": method, "seconds": None, "polls": polls, "first_answer_s": first}

    def image_route(self, calls: int) -> dict:
        secs, statuses = [], {}
        rng = random.Random(1)
        for _ in range(calls):
            sid = self.pick_sample(rng)
            t = time.perf_counter()
            r = self.session.get(self.base + IMAGE_ROUTE, params={"run": self.run_id, "sample": sid,
                                                                  "size": rng.choice([48, 96, 224])}, timeout=60)
            secs.append(time.perf_counter() - t)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        warm = secs[1:] or secs
        return {"cold_s": secs[0], "p50_s": float(np.percentile(warm, 50)), "p95_s": float(np.percentile(warm, 95)),
                "max_s": float(max(warm)), "calls": calls, "statuses": {str(k): v for k, v in statuses.items()},
                "needs_data": True}

    # -------------------------------------------------------------- 3. load test
    def load_test(self, clients: int, seconds: float, names: list[str]) -> dict:
        specs = self.specs_cache
        records: list[list[Result]] = [[] for _ in range(clients)]
        start = threading.Barrier(clients + 1)
        deadline = [0.0]

        def client(i):
            rng = random.Random(1000 + i)
            session = self.requests.Session()
            start.wait()
            while time.perf_counter() < deadline[0]:
                name = rng.choice(names)
                records[i].append(self.call(name, specs[name], rng, session))

        import psutil

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        server_proc = psutil.Process(self.server.proc.pid)
        cpu0_server, cpu0_client = sum(server_proc.cpu_times()[:2]), sum(os.times()[:2])
        deadline[0] = time.perf_counter() + seconds
        t0 = time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu_server = sum(server_proc.cpu_times()[:2]) - cpu0_server
        cpu_client = sum(os.times()[:2]) - cpu0_client
        flat = [r for rec in records for r in rec]
        secs = [r.seconds for r in flat]
        errors = [r for r in flat if not r.ok]
        per = {}
        for name in names:
            s = [r.seconds for r in flat if r.name == name]
            if s:
                per[name] = {"n": len(s), "p50_s": float(np.percentile(s, 50)), "p95_s": float(np.percentile(s, 95))}
        return {"clients": clients, "seconds": wall, "requests": len(flat), "rps": len(flat) / wall,
                "p50_s": float(np.percentile(secs, 50)) if secs else None,
                "p95_s": float(np.percentile(secs, 95)) if secs else None,
                "max_s": float(max(secs)) if secs else None, "errors": len(errors),
                "error_samples": [f"{r.name}: {r.status} {r.error}" for r in errors[:5]],
                "error_cards": sum(r.error_cards > 0 for r in flat), "mix": names, "per_callback": per,
                "server_cpu_cores": cpu_server / wall, "client_cpu_cores": cpu_client / wall,
                "cpu_cores_available": os.cpu_count()}


# ---------------------------------------------------------------------- profiling (in process)
def profile(root: Path, bench: Bench, names: list[str], out_dir: Path) -> dict:
    """cProfile the named callbacks in this process (Flask test client, same payloads):
    one cold call (fresh app) and one warm call each; the top functions by cumulative time."""
    import cProfile
    import io
    import pstats

    from relabscope.dashboard import create_app

    app = create_app([root], refresh_seconds=5)
    client = app.server.test_client()
    specs = bench.specs_cache
    report = {}
    for name in names:
        rng = random.Random(7)
        key, values, changed = specs[name](rng)
        body = payload(bench.callback_map, key, values, changed)
        entry = {}
        for phase in ("cold", "warm"):
            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.enable()
            status, _ = post_test_client(client, body)
            prof.disable()
            entry[phase + "_s"] = time.perf_counter() - t
            entry[phase + "_status"] = status
            prof.dump_stats(out_dir / f"profile-{re.sub(r'[^a-z0-9]+', '-', name.lower())}-{phase}.prof")
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            stats.sort_stats("cumulative").print_stats(r"relabscope/", 18)   # where in relabscope
            stats.sort_stats("tottime").print_stats(10)                      # what burns the time
            text = "\n".join(line for line in buf.getvalue().splitlines()
                              if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced")))
            entry[phase + "_top"] = text
        report[name] = entry
        print(f"\n=== profile: {name}  (cold {entry['cold_s']:.2f} s, warm {entry['warm_s']:.2f} s)")
        print(entry["warm_top"])
    return report


# ---------------------------------------------------------------------- output
def fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def print_report(res: dict) -> None:
    g = GOALS
    print("\n" + "=" * 96)
    print(f"dashboard load benchmark — {res['log']} ({res['samples']:,} samples, {res['epochs']} epochs); "
          f"server: {res['server']}")
    print("=" * 96)
    fl = res["first_load"]
    print(f"{'first page load (overview)':<44}{'seconds':>10}   goal")
    print(f"{'  server start to listening':<44}{res['startup_s']:>10.3f}")
    for label, d in (("cold", fl["cold"]), ("warm (median of repeats)", fl["warm"])):
        ok = d["total_s"] < g["first_load_s"]
        print(f"{'  ' + label + ': shell + routing callback':<44}{d['shell_and_routing_s']:>10.3f}")
        print(f"{'  ' + label + ': + page callbacks (content shown)':<44}{d['total_s']:>10.3f}   "
              f"< {g['first_load_s']:g} s  {'MET' if ok else 'NOT MET'}")
    print("  cold breakdown: " + ", ".join(f"{k.strip()} {v:.2f}" for k, v in fl["cold"]["parts"].items()))
    print(f"\n{'callback (sequential, one client)':<36}{'cold':>8}{'p50':>8}{'p95':>8}{'max':>8}{'n':>4}  "
          f"goal p95 < {g['callback_p95_s']:g} s")
    for name, s in res["callbacks"].items():
        flag = "excluded (needs images/model)" if s["needs_data"] else ("ok" if s["p95_s"] < g["callback_p95_s"]
                                                                         else "NOT MET")
        extra = ""
        if s.get("errors"):
            extra += f"  {s['errors']} HTTP errors"
        if s.get("error_cards"):
            extra += f"  {s['error_cards']} error cards"
        if "statuses" in s:
            extra += f"  HTTP {s['statuses']}"
        print(f"{name[:35]:<36}{s['cold_s']:>8.3f}{s['p50_s']:>8.3f}{s['p95_s']:>8.3f}{s['max_s']:>8.3f}"
              f"{s['calls']:>4}  {flag}{extra}")
    mr = res.get("map_ready") or {}
    if mr.get("seconds") is not None:
        print(f"\nembedding map from an uncached {mr['method']} projection: drawn after {mr['seconds']:.1f} s "
              f"({mr['polls']} polls; the first answer, its PCA preview, took {mr['first_answer_s']:.3f} s)")
    lt = res["load_test"]
    print(f"\nload test: {lt['clients']} clients for {lt['seconds']:.0f} s, {len(lt['mix'])} callbacks in the mix")
    print(f"  requests {lt['requests']}, {lt['rps']:.1f} req/s, p50 {fmt_s(lt['p50_s'])} s, p95 {fmt_s(lt['p95_s'])} s, "
          f"max {fmt_s(lt['max_s'])} s, errors {lt['errors']} (goal 0: {'MET' if lt['errors'] == 0 else 'NOT MET'})")
    print(f"  CPU: server {lt['server_cpu_cores']:.2f} cores, load-test client {lt['client_cpu_cores']:.2f} cores "
          f"(of {lt['cpu_cores_available']} shared); wall includes requests still in flight at the deadline")
    for e in lt["error_samples"]:
        print("   ", e)
    slow = sorted(lt["per_callback"].items(), key=lambda kv: -kv[1]["p95_s"])[:6]
    print("  slowest under load (p50/p95 s): " + ", ".join(f"{k} {v['p50_s']:.2f}/{v['p95_s']:.2f}" for k, v in slow))
    m = res["memory"]
    print(f"\n{'server peak RSS (VmHWM)':<44}{m['peak_gib']:>10.2f} GiB   < {g['memory_gib']:g}  "
          f"{'MET' if m['peak_gib'] < g['memory_gib'] else 'NOT MET'}")
    print(f"  after first load {m['after_first_load_gib']:.2f}, after per-callback {m['after_callbacks_gib']:.2f}, "
          f"after load test {m['after_load_gib']:.2f} GiB (peak); RSS at end {m['end_rss_gib']:.2f} GiB")
    print("\ngoals: " + "; ".join(f"{k} {'MET' if v else 'NOT MET'}" for k, v in res["goals_met"].items()))
    if res.get("skipped"):
        print("not timed: " + "; ".join(f"{k} ({why})" for k, why in res["skipped"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=Path("/work/bench/affectnet-scale.h5"),
                    help="the run log (run.h5) to serve; hard-linked into <its folder>/runs/<name>/")
    ap.add_argument("--root", type=Path, help="serve this folder of runs instead (the first run found is used)")
    ap.add_argument("--against", type=Path,
                    help="a second run log, linked beside --log: the run the compare page compares with")
    ap.add_argument("--run", help="run id to benchmark (default: the --log run, or the newest under --root)")
    ap.add_argument("--quick", action="store_true", help="a small generated log, fewer calls, 5 s load test")
    ap.add_argument("--quick-samples", type=int, default=5000)
    ap.add_argument("--quick-epochs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=None, help="load test length (default 30; 5 with --quick)")
    ap.add_argument("--calls", type=int, default=None, help="calls per callback (default 20; 6 with --quick)")
    ap.add_argument("--warm-loads", type=int, default=3, help="warm first-page-load repeats")
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="cProfile the K slowest callbacks in-process afterwards")
    ap.add_argument("--exclude", default="", metavar="NAME,...",
                    help="callbacks (names as printed) to leave out of the load-test mix, e.g. to isolate one")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dashboard_load.json")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 30.0)
    calls = args.calls if args.calls is not None else (6 if args.quick else 20)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory(prefix="relabscope-dashload-")
        root = Path(tmp.name) / "runs"
        args.log = make_quick_log(root, "quick", args.quick_samples, args.quick_epochs, seed=0)
        make_quick_log(root, "quick-b", args.quick_samples, args.quick_epochs, seed=1)
    elif args.root:
        root = args.root.resolve()
    else:
        root = serving_root(args.log, args.against)

    # the app in this process only to read callback_map (and find the run id)
    import relabscope as rs
    from relabscope.dashboard import create_app
    from relabscope.dashboard import app as app_module

    app = create_app([root], refresh_seconds=5)
    registry = app.relabscope.registry
    run_id = args.run or (registry.newest() if args.root else run_id_of(registry, args.log))
    if run_id is None:
        raise SystemExit(f"no run under {root}")
    log_path = registry.entry(run_id).log_path
    with rs.open_run(log_path) as run:
        split = run.samples["split"].to_numpy()
        info = {"n": len(split), "n_train": int((split == "train").sum()), "num_epochs": run.num_epochs,
                "class_names": list(run.class_names), "embed_epochs": list(run.embedding_epochs())}
    pages = list(app_module.PAGES)
    print(f"run {run_id!r} under {root}: {info['n']:,} samples ({info['n_train']:,} train), {info['num_epochs']} epochs;"
          f" pages {pages}; {len(app.callback_map)} callbacks")

    server = Server(root, free_port(), args.out.parent / "dashboard_load-server.log")
    others = [i for i in registry.ids() if i != run_id]
    result: dict[str, Any] = {"log": str(log_path), "root": str(root), "run": run_id, "other_runs": others,
                              "samples": info["n"],
                              "epochs": info["num_epochs"], "quick": args.quick, "startup_s": server.startup_s,
                              "server": "relabscope.dashboard.app.serve (waitress), as `relabscope serve`",
                              "machine_note": "2 shared CPU cores, OMP_NUM_THREADS=1, other jobs running: pessimistic",
                              "goals": GOALS}
    try:
        bench = Bench(server, app.callback_map, run_id, info)
        bench.specs_cache = bench.specs()
        print("first page load (cold) ...", flush=True)
        cold = bench.page_load(bench.requests.Session())
        hwm_first = server.hwm()
        warms = [bench.page_load(bench.requests.Session()) for _ in range(args.warm_loads)]
        warm = sorted(warms, key=lambda d: d["total_s"])[len(warms) // 2]
        print(f"  cold {cold['total_s']:.2f} s, warm {warm['total_s']:.2f} s", flush=True)
        result["first_load"] = {"cold": cold, "warm": warm, "warm_all_s": [w["total_s"] for w in warms]}

        bench.discover(pages)
        bench.specs_cache = bench.specs()  # now with the generic callbacks of every page's layout
        result["skipped"] = bench.generic_skipped
        print(f"per-callback latency, {calls} calls each ...", flush=True)
        result["callbacks"] = bench.per_callback(calls)
        result["callbacks"]["image route"] = bench.image_route(calls)
        print("map drawn from an uncached projection (background + polling) ...", flush=True)
        result["map_ready"] = bench.map_ready()
        hwm_cb = server.hwm()

        excluded = {n.strip() for n in args.exclude.split(",") if n.strip()}
        mix = [n for n in bench.specs_cache if n not in NEEDS_DATA and n not in excluded]
        print(f"load test: {args.clients} clients, {seconds:.0f} s ...", flush=True)
        result["load_test"] = bench.load_test(args.clients, seconds, mix)
        hwm_load = server.hwm()
        result["memory"] = {"peak_gib": hwm_load / 2**30, "after_first_load_gib": hwm_first / 2**30,
                            "after_callbacks_gib": hwm_cb / 2**30, "after_load_gib": hwm_load / 2**30,
                            "end_rss_gib": server.rss() / 2**30,
                            "sampled_max_rss_gib": max(server.rss_samples, default=0) / 2**30}
        if server.proc.poll() is not None:
            raise SystemExit("the server died during the benchmark")
    finally:
        server.stop()

    timed = {k: v for k, v in result["callbacks"].items() if not v["needs_data"]}
    result["goals_met"] = {
        "first load < 3 s (cold)": result["first_load"]["cold"]["total_s"] < GOALS["first_load_s"],
        "first load < 3 s (warm)": result["first_load"]["warm"]["total_s"] < GOALS["first_load_s"],
        "every callback p95 < 1 s": all(v["p95_s"] < GOALS["callback_p95_s"] for v in timed.values()),
        "memory < 3 GiB": result["memory"]["peak_gib"] < GOALS["memory_gib"],
        "load test zero errors": result["load_test"]["errors"] == 0,
    }
    slow = sorted(timed, key=lambda k: -timed[k]["p95_s"])
    result["slowest"] = [(k, timed[k]["p95_s"]) for k in slow[:6]]
    print_report(result)
    if args.profile:
        result["profile"] = profile(root, bench, slow[:args.profile], args.out.parent)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
