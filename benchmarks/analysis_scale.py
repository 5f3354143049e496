"""The analysis API on a run log at AffectNet scale, without training.

Step 1 writes a run log through ``RunLogWriter`` (the same code path training uses) for
287,651 training samples and 8 classes over 40 epochs, embeddings kept at 4 epochs.
Embeddings are drawn around class centers; a fraction of samples is mislabelled and a
relabel rule like SCN's moves some of them back and forth between two classes, so the
relabel table has the structure real runs have (about half a million events).

Step 2 runs in a fresh process (so its peak memory is its own) and times: ``open_run``,
``flipflops()``, ``compactness()``, ``consistency()`` (with its control group),
``consistency_by_lag()``, ``dynamics()``, and the embedding map
as the dashboard draws it, of its default 20,000 points and of every training sample:
first the PCA (the preview, with the plotly figure built and serialised as the page would
send it; "first drawing" is the sum from opening the run), then the UMAP of every sample (20,000 landmarks laid out, the rest placed from
them); it reports peak resident memory after each step.

    python benchmarks/analysis_scale.py                 # writes the log once, then times
    python benchmarks/analysis_scale.py --samples 20000 # a quicker, smaller variant
    python benchmarks/analysis_scale.py --log B.h5 --seed 1 --write-only   # a second log, not timed

Prints a table and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"open_run": 0.5, "map_tsne": 180.0, "flipflops": 2.0, "compactness": 2.0, "consistency": 3.0, "first_drawing_default": 2.0,
         "map_umap": 180.0}


def write_log(path: Path, n_train: int, n_test: int, epochs: int, k: int, d: int, embed_at: set[int], seed: int) -> dict:
    from relabscope.runlog import RunLogWriter, SampleTable

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    clean = rng.integers(0, k, n)
    given = clean.copy()
    noisy = rng.random(n_train) < 0.2
    given[:n_train][noisy] = (clean[:n_train][noisy] + rng.integers(1, k, noisy.sum())) % k
    samples = SampleTable(key=[f"img/{i:06d}.jpg" for i in range(n)], split=np.r_[np.zeros(n_train), np.ones(n_test)],
                          given_label=given, clean_label=clean)
    centers = rng.normal(0, 4, (k, d)).astype(np.float32)
    base = (centers[clean] + rng.normal(0, 3, (n, d))).astype(np.float32)
    effect = given[:n_train].copy()
    # ambiguous samples sit between their clean class and a second one: they flip
    other = (clean + rng.integers(1, k, n)) % k
    wobble = rng.random(n_train) < 0.15
    batch = 4096
    t0 = time.perf_counter()
    with RunLogWriter.create(path, samples, [f"class{c}" for c in range(k)], embed_dim=d,
                             fields={"weight": ()}, has_centers=True, embed_every=epochs + 1) as log:
        for e in range(epochs):
            drift = (e / epochs) * 0.5
            emb = base + rng.normal(0, 0.5 + drift, (n, d)).astype(np.float32)
            logits = rng.normal(0, 1, (n, k)).astype(np.float32)
            logits[np.arange(n), clean] += 2.0 + e * 0.1
            flip_to = np.where(rng.random(n_train) < 0.5, other[:n_train], clean[:n_train])
            for s in range(0, n_train, batch):
                ids = np.arange(s, min(s + batch, n_train))
                new = effect[ids].copy()
                w = wobble[ids] & (rng.random(len(ids)) < 0.4)
                new[w] = np.where(effect[ids][w] == flip_to[ids][w], clean[ids][w], flip_to[ids][w])
                log.log_batch(ids, effect[ids], logits[ids], emb[ids], loss=rng.random(len(ids)),
                              new_labels=new, fields={"weight": rng.random(len(ids))})
                effect[ids] = new
            ids = np.arange(n_train, n)
            log.log_batch(ids, given[ids], logits[ids], emb[ids], phase="test")
            log.end_epoch(centers=centers, lr=0.001, seconds=1.0, save_embeddings=e in embed_at)
            print(f"  wrote epoch {e + 1}/{epochs} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"write_seconds": time.perf_counter() - t0, "file_bytes": path.stat().st_size}


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_analysis(path: str, map_points: int | None, tsne: bool) -> dict:
    out: dict = {}
    t = time.perf_counter()  # from a bare interpreter, as a notebook's first cell
    import relabscope as rs

    run = rs.open_run(path)
    _ = (run.num_epochs, run.class_names, run.config)
    out["open_run"] = time.perf_counter() - t
    out["open_run_peak_gib"] = _peak_gib()
    for name, call in (
        ("flipflops", lambda: run.flipflops()),
        ("compactness", lambda: run.compactness()),
        ("consistency", lambda: run.consistency()),
        ("consistency_by_lag", lambda: run.consistency_by_lag()),
        ("dynamics", lambda: run.dynamics()),
    ):
        t = time.perf_counter()
        result = call()
        out[name] = time.perf_counter() - t
        out[name + "_rows"] = int(len(result))
        out[name + "_peak_gib"] = _peak_gib()
    from relabscope import plot
    from relabscope.analysis.projection import MAP_POINTS

    t = time.perf_counter()  # the dashboard's default map: MAP_POINTS, stratified
    default = run.project("pca", max_points=MAP_POINTS)
    out["map_pca_default"] = time.perf_counter() - t
    t = time.perf_counter()
    plot.projection_figure(default, run.class_names).to_json()
    out["figure_pca_default"] = time.perf_counter() - t
    out["first_drawing_default"] = out["open_run"] + out["map_pca_default"] + out["figure_pca_default"]
    out["default_points"] = int(len(default))
    t = time.perf_counter()
    pca = run.project("pca", max_points=map_points)
    out["map_pca"] = time.perf_counter() - t
    t = time.perf_counter()
    payload = plot.projection_figure(pca, run.class_names).to_json()
    out["figure_pca"] = time.perf_counter() - t
    out["figure_mib"] = len(payload) / 2**20
    out["first_drawing"] = out["open_run"] + out["map_pca"] + out["figure_pca"]
    out["map_pca_peak_gib"] = _peak_gib()
    t = time.perf_counter()
    proj = run.project("umap", max_points=map_points)
    out["map_umap"] = time.perf_counter() - t
    out["map_points"] = int(len(proj))
    t = time.perf_counter()
    run.project("umap", max_points=map_points)
    out["map_umap_cached"] = time.perf_counter() - t
    out["map_umap_peak_gib"] = _peak_gib()
    if tsne:
        t = time.perf_counter()
        run.project("tsne", max_points=map_points)
        out["map_tsne"] = time.perf_counter() - t
        out["map_tsne_peak_gib"] = _peak_gib()
    out["events"] = int(len(run.relabel_events()))
    out["peak_rss_gib"] = _peak_gib()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=287_651, help="training samples (AffectNet: 287,651)")
    ap.add_argument("--test", type=int, default=3_999)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--map-points", type=int, default=0,
                    help="points on the maps (a stratified subsample); 0: every training sample")
    ap.add_argument("--log", type=Path, help="reuse (or keep) the log at this path")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated log")
    ap.add_argument("--write-only", action="store_true",
                    help="write the log and stop (e.g. a second run for dashboard_load.py --against)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "analysis_scale.json")
    ap.add_argument("--tsne", action="store_true", help="also time the t-SNE of the map points (minutes)")
    ap.add_argument("--_time", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._time:  # the child process: time the analysis only
        print(json.dumps(time_analysis(args._time, args.map_points or None, args.tsne)))
        return

    tmp = None
    log = args.log
    if log is None:
        tmp = tempfile.TemporaryDirectory()
        log = Path(tmp.name) / "run.h5"
    written = {}
    if not log.exists():
        print(f"writing a {args.samples:,}-sample, {args.epochs}-epoch log to {log}")
        embed_at = {args.epochs // 4 - 1, args.epochs // 2 - 1, 3 * args.epochs // 4 - 1, args.epochs - 1}
        written = write_log(log, args.samples, args.test, args.epochs, args.classes, args.dim, embed_at, args.seed)
    if args.write_only:
        if args.log is None:
            raise SystemExit("--write-only needs --log (where to keep the log)")
        return
    from relabscope.analysis.projection import CACHE_DIR  # here: the timed child imports relabscope itself

    # maps cached by an earlier run next to the log would be read, not computed
    shutil.rmtree(log.parent / CACHE_DIR, ignore_errors=True)
    child = subprocess.run([sys.executable, __file__, "--_time", str(log), "--map-points", str(args.map_points),
                            *(["--tsne"] if args.tsne else [])],
                           capture_output=True, text=True, check=True)
    timings = json.loads(child.stdout.strip().splitlines()[-1])
    result = {"samples": args.samples, "test": args.test, "epochs": args.epochs, "classes": args.classes,
              **written, **timings}
    print()
    print(f"{'call':<22}{'seconds':>10}{'goal':>8}{'peak GiB so far':>17}")
    for name in ("open_run", "flipflops", "compactness", "consistency", "consistency_by_lag", "dynamics", "map_pca_default",
                 "figure_pca_default", "first_drawing_default", "map_pca", "figure_pca", "first_drawing",
                 "map_umap", "map_umap_cached", *(["map_tsne"] if args.tsne else [])):
        goal = GOALS.get(name)
        peak = timings.get(name + "_peak_gib")
        print(f"{name:<22}{timings[name]:>10.2f}{(f'< {goal:g}' if goal else ''):>8}"
              f"{(f'{peak:.2f}' if peak is not None else ''):>17}")
    print(f"{'peak memory (GiB)':<22}{timings['peak_rss_gib']:>10.2f}{'< 3':>8}")
    print(f"relabel events: {timings['events']:,}; map points: {timings['map_points']:,} "
          f"(default map: {timings['default_points']:,}); "
          f"PCA figure {timings['figure_mib']:.1f} MiB of JSON")
    if written:
        print(f"log written in {written['write_seconds']:.0f} s, {written['file_bytes'] / 2**30:.2f} GiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
