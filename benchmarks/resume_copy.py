"""What a resume costs now that it copies the log: ``RunLogWriter.resume`` reads every kept
row against its checksum and writes it into a new file, which then replaces the old one
(docs/run-log.md, "Damage, full disks and resumes"). Also times ``relabscope check`` (the
same reads, no writes) on the same log.

The log is written by ``benchmarks/analysis_scale.py``'s generator (the writer training
uses; the default is AffectNet's size: 287,651 + 3,999 samples, 8 classes, 40 epochs,
embeddings kept at 4 epochs, about 1.9 GiB).

    python benchmarks/resume_copy.py                       # AffectNet size (writes ~2 GiB first)
    python benchmarks/resume_copy.py --samples 50000       # smaller

Prints a table and writes ``benchmarks/results/resume_copy.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_scale import write_log  # noqa: E402  (the benchmark folder is not a package)

RESULTS = Path(__file__).resolve().parent / "results" / "resume_copy.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=287_651)
    ap.add_argument("--test", type=int, default=3_999)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()

    from relabscope.runlog import RunLogWriter
    from relabscope.runlog.check import check_log

    embed_at = {int(args.epochs * q) - 1 for q in (0.25, 0.5, 0.75, 1.0)}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "run.h5"
        written = write_log(log, args.samples, args.test, args.epochs, args.classes, args.dim, embed_at, seed=0)
        t = time.perf_counter()
        found = check_log(log)
        check_s = time.perf_counter() - t
        assert found.ok, found.report()
        t = time.perf_counter()
        RunLogWriter.resume(log, keep_epochs=args.epochs).close("finished")
        resume_s = time.perf_counter() - t
        after = log.stat().st_size
    rows = {
        "log": f"{args.samples:,} + {args.test:,} samples, {args.epochs} epochs, {len(embed_at)} kept embeddings",
        "file_bytes": written["file_bytes"], "write_seconds": round(written["write_seconds"], 1),
        "check_seconds": round(check_s, 2), "resume_copy_seconds": round(resume_s, 2), "file_bytes_after": after,
        "copy_mb_per_s": round(written["file_bytes"] / 1e6 / resume_s, 1),
    }
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:,}" if isinstance(value, (int, float)) else f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
