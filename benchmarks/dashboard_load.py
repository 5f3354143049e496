"""The dashboard at AffectNet scale: first page load, per-callback latency, a load test.

Starts the dashboard in a child process the way ``relabscope serve`` does (the same
``relabscope.dashboard.app.serve`` function: Dash's ``app.run``, i.e. Flask's threaded
development server, debug off) on 127.0.0.1 with a free port, then drives it over HTTP
exactly as the browser does (``/_dash-update-component`` POSTs whose payloads are built
from the app's ``callback_map``):

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

HERE = Path(__file__).resolve().parent
GOALS = {"first_load_s": 3.0, "callback_p95_s": 1.0, "memory_gib": 3.0}
#: callbacks that need the run's images/model: timed, but outside the goals and the load test
NEEDS_DATA = ("sm gradcam (compute)", "image route")


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
def key_outputs(key: str) -> list[str]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [p.split("@")[0] for p in parts]


def is_pattern(key: str) -> bool:
    return "{" in key


class Callbacks:
    """Payload building from the app's ``callback_map`` (as tests/dashboard/conftest.py's
    ``dash_call`` does)."""

    def __init__(self, callback_map: dict):
        self.map = callback_map
        self.by_first = {key_outputs(k)[0]: k for k in callback_map if not is_pattern(k)}

    def key(self, first_output: str) -> str | None:
        return self.by_first.get(first_output)

    def payload(self, key: str, values: dict[str, Any], changed: list[str] | None = None) -> dict:
        cb = self.map[key]

        def spec(items):
            return [{**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in items]

        parts = key.strip(".").split("...") if key.startswith("..") else [key]
        outs = [{"id": p.split(".")[0], "property": p.split(".", 1)[1].split("@")[0]} for p in parts]
        inputs = spec(cb["inputs"])
        return {"output": key, "outputs": outs if key.startswith("..") else outs[0], "inputs": inputs,
                "state": spec(cb["state"]),
                "changedPropIds": changed if changed is not None else [f"{i['id']}.{i['property']}" for i in inputs]}


class Result:
    __slots__ = ("name", "seconds", "status", "ok", "error", "body", "error_cards", "note_figures")

    def __init__(self, name, seconds, status, ok, error=None, body=None, error_cards=0, note_figures=0):
        self.name, self.seconds, self.status, self.ok, self.error = name, seconds, status, ok, error
        self.body, self.error_cards, self.note_figures = body, error_cards, note_figures


def post(session, base: str, name: str, payload: dict, timeout: float = 60.0, keep: bool = False) -> Result:
    t = time.perf_counter()
    try:
        r = session.post(base + "/_dash-update-component", data=json.dumps(payload),
                         headers={"Content-Type": "application/json"}, timeout=timeout)
        text = r.text
        dt = time.perf_counter() - t
    except Exception as exc:  # connection refused/reset, timeout
        return Result(name, time.perf_counter() - t, 0, False, f"{type(exc).__name__}: {exc}"[:300])
    if r.status_code == 204:  # PreventUpdate / nothing to update: a valid answer
        return Result(name, dt, 204, True)
    if r.status_code != 200:
        return Result(name, dt, r.status_code, False, text[:300])
    try:
        body = json.loads(text)
    except ValueError:
        return Result(name, dt, 200, False, "not JSON: " + text[:200])
    if not isinstance(body, dict) or "response" not in body or "error" in body:
        return Result(name, dt, 200, False, "no Dash response: " + text[:200])
    return Result(name, dt, 200, True, None, body if keep else None, text.count("error-card"),
                  text.count('"meta": {"note"') + text.count('"meta":{"note"'))


# ---------------------------------------------------------------------- the layout, walked
def components(tree: Any) -> dict[str, dict]:
    """{id: {"type": ..., **props}} of every component with a string id under ``tree``."""
    found: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            if "type" in node and "props" in node and isinstance(node["props"], dict):
                cid = node["props"].get("id")
                if isinstance(cid, str):
                    found[cid] = {"type": node["type"], **node["props"]}
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return found


def vary(comp: dict | None, prop: str, rng: random.Random, pick_sample: Callable[[], int]) -> Any:
    """A plausible value for ``comp.prop``: another option of a dropdown/radio/checklist, a
    point of a slider, another sample id in a store; else the layout's own value."""
    if comp is None:
        return None
    value = comp.get(prop)
    if prop == "value" and comp.get("options"):
        opts = [o["value"] if isinstance(o, dict) else o for o in comp["options"]]
        opts = [o for o in opts if not (isinstance(o, dict) and "value" not in o)]
        if comp.get("multi") or comp["type"] == "Checklist":
            k = rng.randint(1, min(4, len(opts)))
            return sorted(rng.sample(opts, k), key=str)
        return rng.choice(opts)
    if prop == "value" and comp["type"] in ("Slider", "RangeSlider") and "min" in comp and "max" in comp:
        lo, hi = comp["min"], comp["max"]
        step = comp.get("step") or 1
        pts = [lo + i * step for i in range(int((hi - lo) / step) + 1)] or [lo]
        if comp["type"] == "RangeSlider":
            a, b = sorted(rng.sample(pts, 2)) if len(pts) > 1 else (lo, hi)
            return [a, b]
        return rng.choice(pts)
    if prop == "data" and isinstance(value, dict) and "sample" in value:
        return {**value, "sample": pick_sample()}
    if prop == "value" and comp["type"] == "Input" and comp.get("inputMode") == "numeric":
        return str(pick_sample())  # a sample-id box (e.g. the compare page's)
    return value


# ---------------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, server: Server, callbacks: Callbacks, run_id: str, info: dict, seed: int = 0):
        import requests

        self.requests = requests
        self.server = server
        self.base = server.base
        self.cbs = callbacks
        self.run_id = run_id
        self.info = info  # n, n_train, num_epochs, class_names, embed_epochs
        self.rng = random.Random(seed)
        self.session = requests.Session()
        self.version = None
        self.layouts: dict[str, dict[str, dict]] = {}   # page path -> components by id
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
        return {"url.pathname": path, "url.search": search}

    def specs(self) -> dict[str, Callable[[random.Random], tuple[str, dict, list | None]]]:
        """name -> make(rng) -> (callback key, values, changedPropIds)."""
        k = self.cbs.key
        rid = self.run_id
        out: dict[str, Callable] = {}
        classes = list(range(len(self.info["class_names"])))
        epochs = self.info["num_epochs"]

        def add(name, first_output, make):
            key = k(first_output)
            if key is not None:
                out[name] = lambda rng, key=key, make=make: (key, *make(rng))

        live = lambda: {"live-version.data": self.version}  # noqa: E731
        add("route /", "page.children", lambda rng: (self.route_values("/", self.search()), None))
        add("route /flipflops", "page.children",
            lambda rng: (self.route_values("/flipflops", self.search(mode=rng.choice(["flipflopping", "all"]))), None))
        add("route /sample", "page.children",
            lambda rng: (self.route_values("/sample", self.search(sample=self.pick_sample(rng))), None))
        add("runs-nav", "runs-nav.children",
            lambda rng: ({"url.pathname": rng.choice(["/", "/flipflops", "/sample"]), "url.search": self.search(),
                          "tick.n_intervals": rng.randrange(100)}, None))
        add("tick", "live-version.data",
            lambda rng: ({"tick.n_intervals": rng.randrange(1, 100), "url.search": self.search(), **live()}, None))
        ov = {"ov-args.data": {"run": rid}}
        add("ov summary", "ov-head.children", lambda rng: ({**ov, **live()}, None))
        for w in ("accuracy", "relabels", "recovery", "consistency"):
            add(f"ov {w}", f"ov-{w}.children", lambda rng: ({**ov, **live()}, None))
        ff = {"ff-args.data": {"run": rid}}
        add("ff figures", "ff-heatmap.figure", lambda rng: ({**ff, **live()}, None))

        def table(rng):
            from_filter = rng.random() < 0.5
            mode = rng.choice(["flipflopping", "relabelled", "all"])
            sort_cols = ["flipflops", "changes", "sample_id", "labels_visited", "last_relabel_epoch", "given"]
            sort_by = [{"column_id": c, "direction": rng.choice(["asc", "desc"])}
                       for c in rng.sample(sort_cols, rng.randint(1, 2))]
            values = {**ff, **live(), "ff-mode.value": mode,
                      "ff-given.value": rng.choice([None, None] + classes),
                      "ff-final.value": rng.choice([None, None] + classes),
                      "ff-cell.data": list(rng.sample(classes, 2)) if rng.random() < 0.2 else None,
                      "ff-table.page_current": 0 if from_filter else rng.choice([0, 1, 2, 5, 50, 500, 5000]),
                      "ff-table.sort_by": sort_by}
            changed = [rng.choice(["ff-mode.value", "ff-given.value", "ff-final.value", "ff-cell.data"])] if from_filter \
                else [rng.choice(["ff-table.page_current", "ff-table.sort_by"])]
            return values, changed

        add("ff table", "ff-table.data", table)

        def row_click(rng):
            rows = self.table_rows or [{"sample_id": 0}]
            r = rng.randrange(len(rows))
            return ({"ff-table.active_cell": {"row": r, "column": 1, "column_id": "sample_id"},
                     "ff-bars.clickData": None, "ff-table.data": rows}, ["ff-table.active_cell"])

        add("ff row click", "ff-selected.data", row_click)
        add("ff detail", "ff-detail.children",
            lambda rng: ({"ff-selected.data": self.pick_sample(rng), **ff, **live()}, None))
        names = self.info["class_names"]
        add("ff matrix click", "ff-cell.data",
            lambda rng: ({"ff-heatmap.clickData": {"points": [{"x": names[a], "y": names[b]} for a, b in
                                                              [rng.sample(classes, 2)]]},
                          "ff-clear.n_clicks": 0, **ff}, ["ff-heatmap.clickData"]))
        add("ff cycle chip", "ff-cell-chip.children",
            lambda rng: ({"ff-cell.data": rng.choice([None, rng.sample(classes, 2)]), **ff}, None))

        def sm(rng):
            return {"sm-args.data": {"run": rid, "sample": self.pick_sample(rng)}, **live()}

        add("sm facts+timeline+probs", "sm-facts.children", lambda rng: (sm(rng), None))

        def distances(rng):
            pool = self.info["embed_epochs"] or list(range(epochs))
            chosen = None if rng.random() < 0.3 else sorted(rng.sample(pool, rng.randint(1, min(3, len(pool)))))
            return {**sm(rng), "sm-epochs.value": chosen}, None

        add("sm distances", "sm-distances.children", distances)
        add("sm gradcam (not asked)", "sm-gradcam.children",
            lambda rng: ({**sm(rng), "sm-gradcam-go.n_clicks": 0}, None))
        add("sm gradcam (compute)", "sm-gradcam.children",
            lambda rng: ({**sm(rng), "sm-gradcam-go.n_clicks": 1}, ["sm-gradcam-go.n_clicks"]))
        add("sm open", "url.search",
            lambda rng: ({"sm-open.n_clicks": 1, "sm-input.n_submit": None, "sm-input.value": self.pick_sample(rng),
                          "url.search": self.search()}, ["sm-open.n_clicks"]))
        # everything else the app registers (pages added later: map, compactness, compare, ...)
        known = {k(o) for o in ("page.children", "runs-nav.children", "live-version.data", "ov-head.children",
                                "ov-accuracy.children", "ov-relabels.children", "ov-recovery.children",
                                "ov-consistency.children", "ff-heatmap.figure", "ff-table.data", "ff-selected.data",
                                "ff-detail.children", "ff-cell.data", "ff-cell-chip.children", "sm-facts.children",
                                "sm-distances.children", "sm-gradcam.children", "url.search")}
        self.generic_skipped = []
        for key, cb in self.cbs.map.items():
            if key in known:
                continue
            if is_pattern(key):
                self.generic_skipped.append((key[:80], "pattern-matching ids"))
                continue
            ids = {i["id"] for i in cb["inputs"] + cb["state"]}
            page = next((p for p, comps in self.layouts.items() if ids & set(comps)), None)
            if page is None:
                self.generic_skipped.append((key[:80], "inputs on no page layout"))
                continue
            comps = {**self.layouts[page], "live-version": {"type": "Store", "data": self.version}}

            def make(rng, cb=cb, comps=comps, page=page):
                values = {}
                for item in cb["inputs"] + cb["state"]:
                    name, cid, prop = f"{item['id']}.{item['property']}", item["id"], item["property"]
                    if cid == "url":
                        values[name] = page.split("?")[0] if prop == "pathname" else self.search()
                    else:
                        values[name] = vary(comps.get(cid), prop, rng, lambda: self.pick_sample(rng))
                return values, None

            out[f"{page.strip('/') or 'overview'}: {','.join(key_outputs(key))}"[:60]] = \
                lambda rng, key=key, make=make: (key, *make(rng))
        return out

    def call(self, name: str, make: Callable, rng: random.Random, session=None, keep=False) -> Result:
        key, values, changed = make(rng)
        return post(session or self.session, self.base, name, self.cbs.payload(key, values, changed), keep=keep)

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
        if not res.ok:
            raise SystemExit(f"routing callback failed: {res.status} {res.error}")
        self.version = res.body["response"].get("live-version", {}).get("data", self.version)
        shell_s = time.perf_counter() - t0
        t = time.perf_counter()
        names = ["runs-nav", "ov summary", "ov accuracy", "ov relabels", "ov recovery", "ov consistency"]
        names = [n for n in names if n in specs]
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
        values, table rows and flip-flopping sample ids."""
        specs = self.specs_cache
        for page in pages:
            path = "/" + page
            key = self.cbs.key("page.children")
            search = self.search(sample=0) if page == "sample" else self.search()
            res = post(self.session, self.base, "route", self.cbs.payload(key, self.route_values(path, search)),
                       keep=True)
            if res.ok and res.body:
                self.layouts[path] = components(res.body["response"].get("page", {}).get("children"))
        if "ff table" in specs:
            values, _ = specs["ff table"](random.Random(0))[1:]
            values.update({"ff-mode.value": "flipflopping", "ff-given.value": None, "ff-final.value": None,
                           "ff-cell.data": None, "ff-table.page_current": 0, "ff-table.sort_by": None})
            res = post(self.session, self.base, "ff table",
                       self.cbs.payload(self.cbs.key("ff-table.data"), values), keep=True)
            if res.ok and res.body:
                self.table_rows = res.body["response"]["ff-table"]["data"]
                self.flip_ids = [int(r["sample_id"]) for r in self.table_rows]
            # a few more pages of flip-floppers for the sample pool
            for page in (1, 2, 3):
                values["ff-table.page_current"] = page
                res = post(self.session, self.base, "ff table",
                           self.cbs.payload(self.cbs.key("ff-table.data"), values, ["ff-table.page_current"]),
                           keep=True)
                if res.ok and res.body:
                    self.flip_ids += [int(r["sample_id"]) for r in res.body["response"]["ff-table"]["data"]]

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
        key = self.cbs.key("mp-graph.figure")
        if key is None:
            return {}
        values = {"mp-args.data": {"run": self.run_id}, "mp-method.value": method, "mp-epoch.value": None,
                  "mp-classes.value": [0, 1], "mp-colour.value": "effect", "live-version.data": self.version,
                  "mp-poll.n_intervals": None}
        t0, polls, first = time.perf_counter(), 0, None
        while time.perf_counter() - t0 < timeout:
            r = post(self.session, self.base, "map ready", self.cbs.payload(key, values), keep=True)
            first = r.seconds if first is None else first
            if not r.ok:
                return {"error": r.error, "seconds": time.perf_counter() - t0}
            if r.body["response"].get("mp-poll", {}).get("disabled"):
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
            r = self.session.get(f"{self.base}/_relabscope/image", params={"run": self.run_id, "sample": sid,
                                                                         "size": rng.choice([48, 96, 224])},
                                 timeout=60)
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
        body = json.dumps(bench.cbs.payload(key, values, changed))
        entry = {}
        for phase in ("cold", "warm"):
            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.enable()
            resp = client.post("/_dash-update-component", data=body, content_type="application/json")
            prof.disable()
            entry[phase + "_s"] = time.perf_counter() - t
            entry[phase + "_status"] = resp.status_code
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
              f"({mr['polls']} polls; the first answer, a 'computing' note, took {mr['first_answer_s']:.3f} s)")
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
    callbacks = Callbacks(app.callback_map)
    print(f"run {run_id!r} under {root}: {info['n']:,} samples ({info['n_train']:,} train), {info['num_epochs']} epochs;"
          f" pages {pages}; {len(app.callback_map)} callbacks")

    server = Server(root, free_port(), args.out.parent / "dashboard_load-server.log")
    others = [i for i in registry.ids() if i != run_id]
    result: dict[str, Any] = {"log": str(log_path), "root": str(root), "run": run_id, "other_runs": others,
                              "samples": info["n"],
                              "epochs": info["num_epochs"], "quick": args.quick, "startup_s": server.startup_s,
                              "server": "relabscope.dashboard.app.serve (Dash app.run = Flask threaded dev server, "
                                        "debug off), as `relabscope serve`",
                              "machine_note": "2 shared CPU cores, OMP_NUM_THREADS=1, other jobs running: pessimistic",
                              "goals": GOALS}
    try:
        bench = Bench(server, callbacks, run_id, info)
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
