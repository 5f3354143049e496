"""The review path at AffectNet's size: ``run.suspects()``, the review page's first load, and
an import of 20,000 Label Studio decisions (one journal append, one fsync, one CSV).

The log is written by ``benchmarks/analysis_scale.py``'s generator (the writer training
uses; default AffectNet's size: 287,651 + 3,999 samples, 8 classes, 40 epochs), or reused
with ``--log``. Each timing runs in a fresh process, as a user meets it:

- ``suspects``: ``rs.open_run(log).suspects()`` (goal with the page's first load: < 3 s);
- ``review page``: the dashboard app over the run, the review page's route and its grid of
  the first 24 tiles, called as the browser calls them (``dashboard.harness``), suspects
  included (goal < 3 s);
- ``import``: a Label Studio full-JSON export of ``--tasks`` tasks (one annotation each,
  about the most suspect samples) read, settled and written (goal < 10 s for 20,000).

    python benchmarks/review_scale.py                      # writes the ~2 GiB log first
    python benchmarks/review_scale.py --samples 50000 --epochs 20

Prints a table and writes ``benchmarks/results/review_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_scale import write_log  # noqa: E402  (the benchmark folder is not a package)

RESULTS = Path(__file__).resolve().parent / "results" / "review_scale.json"
GOALS = {"suspects": 3.0, "review_page": 3.0, "import": 10.0}

SUSPECTS = """
import sys, time
t = time.perf_counter()
import relabscope as rs
run = rs.open_run(sys.argv[1])
table = run.suspects()
print(time.perf_counter() - t, len(table))
"""

PAGE = """
import sys, time
t = time.perf_counter()
from relabscope.dashboard import create_app, ids
from relabscope.dashboard.harness import ROUTER, dash_call, find
app = create_app([sys.argv[1]], refresh_seconds=0, host="127.0.0.1")
client = app.server.test_client()
run_id = app.relabscope.registry.ids()[0]
page = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": "/review", f"{ids.URL}.search": f"?run={run_id}"})
grid = dash_call(app, client, [f"{ids.RV_GRID}.children", f"{ids.RV_COUNT}.children", f"{ids.RV_PAGE}.data"],
                 {f"{ids.RV_ARGS}.data": {"run": run_id}, f"{ids.RV_GIVEN}.value": None,
                  f"{ids.RV_SUGGESTED}.value": None, f"{ids.RV_SIGNAL}.value": "all", f"{ids.RV_STATE}.value": "all",
                  f"{ids.RV_PREV}.n_clicks": 0, f"{ids.RV_NEXT}.n_clicks": 0, f"{ids.LIVE_VERSION}.data": None},
                 {f"{ids.RV_PAGE}.data": 0}, changed=[f"{ids.RV_ARGS}.data"])
tiles = find(grid[ids.RV_GRID]["children"], lambda c: "rv-tile" in str(c["props"].get("className", "")))
print(time.perf_counter() - t, len(tiles))
"""

IMPORT = """
import sys, time
import relabscope as rs
run = rs.open_run(sys.argv[1])
t = time.perf_counter()
done = rs.import_labelstudio(run, sys.argv[2])
print(time.perf_counter() - t, len(done.decisions))
"""


def export_for(run_dir: Path, out: Path, tasks: int) -> None:
    """A Label Studio full-JSON export: ``tasks`` of the most suspect training samples, one
    annotation each (every fifth relabelled to the suggestion, the rest kept)."""
    import relabscope as rs

    with rs.open_run(run_dir) as run:
        top = run.suspects().head(tasks)
        names = run.class_names
        records = []
        for i, row in enumerate(top.itertuples()):
            given, suggested = names[row.given_label], names[row.suggested_label]
            choice = suggested if i % 5 == 0 else given
            records.append({"id": 1000 + i, "data": {"sample_id": int(row.sample_id), "key": row.key, "given": given,
                                                     "suggested": suggested, "score": float(row.score)},
                            "annotations": [{"id": 5000 + i, "completed_by": 10 + i % 3, "was_cancelled": False,
                                             "ground_truth": False, "created_at": "2026-12-01T10:00:00Z",
                                             "updated_at": "2026-12-01T10:00:00Z", "result": [{
                                                 "from_name": "label", "to_name": "image", "type": "choices",
                                                 "value": {"choices": [choice]}}]}]})
    out.write_text(json.dumps(records))


def _timed(script: str, *args: str) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    seconds, count = done.stdout.split()[-2:]
    return float(seconds), int(count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=287_651)
    ap.add_argument("--test", type=int, default=3_999)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--log", type=Path, help="reuse the run folder at this path (or keep the one written there)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.log or Path(tmp) / "runs" / "scale").resolve()
        if not (root / "run.h5").exists():
            root.mkdir(parents=True, exist_ok=True)
            embed_at = {int(args.epochs * q) - 1 for q in (0.25, 0.5, 0.75, 1.0)}
            write_log(root / "run.h5", args.samples, args.test, args.epochs, 8, 512, embed_at, seed=0)
        for name in ("corrections.journal", "corrections.csv"):
            (root / name).unlink(missing_ok=True)  # a fresh review (the benchmark's own run folder)
        results: dict[str, dict[str, float | int]] = {}
        seconds, rows = _timed(SUSPECTS, str(root))
        results["suspects"] = {"seconds": round(seconds, 2), "rows": rows}
        seconds, tiles = _timed(PAGE, str(root.parent))
        results["review_page"] = {"seconds": round(seconds, 2), "tiles": tiles}
        export = Path(tmp) / "export.json"
        export_for(root, export, args.tasks)
        seconds, decided = _timed(IMPORT, str(root), str(export))
        results["import"] = {"seconds": round(seconds, 2), "decisions": decided}
    print(f"log: {args.samples:,} + {args.test:,} samples, {args.epochs} epochs")
    print(f"{'what':<14}{'seconds':>9}{'goal':>7}  count")
    for name, row in results.items():
        count = next(v for k, v in row.items() if k != "seconds")
        print(f"{name:<14}{row['seconds']:>9.2f}{GOALS[name]:>7.0f}  {count:,}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"samples": args.samples, "test": args.test, "epochs": args.epochs,
                                   "tasks": args.tasks, "results": results, "goals": GOALS}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
