"""Flip one byte of a run log at a time and read the whole log back: is every flip either
harmless (the same numbers) or reported in one line, and none a silent wrong number, a
hang or a crash?

For each offset (every ``--step``-th byte of the file, or of its HDF5 structures alone with
``--structures``) the byte is inverted in a copy and a child process reads every dataset,
the relabel events, the embeddings, the samples and the strings through ``RunLogReader``,
hashing what it got. Outcomes:

- ``same``: the read succeeded and returned exactly the original numbers (the byte was
  free space, padding, or a field HDF5 does not use);
- ``detected``: one ``RelabscopeError`` line (a checksum, a structure HDF5 refused);
- ``SILENT``: the read succeeded with different numbers (what checksums must prevent);
- ``HANG``: no answer within ``--deadline`` seconds; ``CRASH``: the child died;
  ``RAW``: any other exception (a traceback a user would see).

The log is ``relabscope.examples.example_run`` (80 samples, 5 epochs, written by the same
writer training uses). Prints a table and writes ``benchmarks/results/damage_sweep.json``.

    python benchmarks/damage_sweep.py --step 13            # about 3,000 offsets, a few minutes
    python benchmarks/damage_sweep.py --structures --step 1  # every byte outside the data chunks
"""

from __future__ import annotations

import argparse
import json
import selectors
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "damage_sweep.json"

WORKER = r'''
import hashlib, json, os, sys
import numpy as np
from relabscope.errors import RelabscopeError
from relabscope.runlog.reader import RunLogReader

def digest(path):
    with RunLogReader(path) as r:
        h = hashlib.sha256()
        names = ["label", "pred", "prob", "loss", "distance", "class_mean", "class_count", "embed_source",
                 "test_acc", "class_acc", "confusion", "train_loss", "train_acc", "lr", "seconds", "unreadable",
                 "relabel_end", *(["center"] if r.has_centers else []), *["field/" + f for f in r.fields]]
        h.update(repr(r.vetoes()).encode())
        for name in names:
            h.update(name.encode()); h.update(np.ascontiguousarray(r.epoch_array(name)).tobytes())
        h.update(r.relabels().tobytes())
        for e in r.embedding_epochs():
            h.update(r.embeddings(int(e)).tobytes())
        for k, v in r.samples.items():
            h.update(k.encode()); h.update(repr(list(v)).encode() if v.dtype == object else v.tobytes())
        h.update(json.dumps([r.config, r.class_names, r.skipped, r.status, r.num_epochs], sort_keys=True).encode())
        h.update(json.dumps({k: str(v) for k, v in r.meta.items()}, sort_keys=True).encode())
        return h.hexdigest()

src, scratch = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
reference = digest(src)
for offset in map(int, sys.argv[3].split(",")):
    flipped = bytearray(data); flipped[offset] ^= 0xFF
    path = os.path.join(scratch, f"{offset}.h5")
    open(path, "wb").write(flipped)
    print("start", offset, flush=True)
    try:
        outcome = "same" if digest(path) == reference else "SILENT"
    except RelabscopeError as exc:
        outcome = "detected " + str(exc).replace(path, "LOG").splitlines()[0][:200]
    except Exception as exc:
        outcome = f"RAW {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    os.unlink(path)
    print("result", offset, outcome, flush=True)
'''


def structure_offsets(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the file outside every dataset's raw data (chunks, contiguous data):
    HDF5's own structures, the strings' heap and free space."""
    import h5py

    ranges = []
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if not isinstance(obj, h5py.Dataset):
                return
            if obj.chunks:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    ranges.append((info.byte_offset, info.byte_offset + info.size))
            elif obj.id.get_offset() is not None:
                ranges.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))
        f.visititems(visit)
    gaps, at = [], 0
    for start, end in sorted(ranges):
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    gaps.append((at, path.stat().st_size))
    return gaps


def sweep(log: Path, offsets: list[int], deadline: float, jobs: int, batch: int = 100) -> dict[int, str]:
    """Each offset's outcome. ``jobs`` child processes run at once (a damaged read mostly
    sleeps in HDF5's bounded retries), each reading a batch of offsets; one that stops
    answering for ``deadline`` seconds is killed and its offset recorded as a hang."""
    results: dict[int, str] = {}
    batches = [offsets[i:i + batch] for i in range(0, len(offsets), batch)]
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(jobs) as pool:
        for done, found in enumerate(pool.map(lambda b: _batch(log, b, scratch, deadline), batches), start=1):
            results.update(found)
            print(f"  {done}/{len(batches)} batches", flush=True)
    return results


def _batch(log: Path, offsets: list[int], scratch: str, deadline: float) -> dict[int, str]:
    results: dict[int, str] = {}
    todo = list(offsets)
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(log), scratch, ",".join(map(str, todo))],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current, since = None, time.monotonic()
        while True:
            if sel.select(timeout=0.5):
                line = proc.stdout.readline()
                if not line:
                    break
                kind, offset, *rest = line.rstrip("\n").split(" ", 2)
                if kind == "start":
                    current, since = int(offset), time.monotonic()
                else:
                    results[int(offset)], current = rest[0] if rest else "", None
            if current is not None and time.monotonic() - since > deadline:
                proc.kill()
                results[current] = "HANG"
                break
        proc.wait()
        if current is not None and current not in results:
            results[current] = f"CRASH rc={proc.returncode}"
        todo = [o for o in todo if o not in results]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=13, help="flip every STEP-th byte")
    parser.add_argument("--structures", action="store_true", help="only bytes outside the datasets' raw data")
    parser.add_argument("--deadline", type=float, default=20.0, help="seconds one read may take")
    parser.add_argument("--jobs", type=int, default=6, help="reading processes at once (they mostly sleep)")
    parser.add_argument("--offsets", help="flip only these bytes (comma-separated), e.g. to recheck a finding")
    args = parser.parse_args()

    import relabscope as rs

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(rs.example_run(Path(tmp) / "example")) / "run.h5"
        size = log.stat().st_size
        spans = structure_offsets(log) if args.structures else [(0, size)]
        offsets = [int(o) for o in args.offsets.split(",")] if args.offsets else \
            [o for start, end in spans for o in range(start, end, args.step)]
        started = time.perf_counter()
        results = sweep(log, offsets, args.deadline, args.jobs)
        seconds = time.perf_counter() - started
    counts = Counter(v.split(" ")[0] for v in results.values())
    bad = {o: v for o, v in sorted(results.items()) if not v.startswith(("same", "detected"))}
    print(f"log: {size:,} bytes; {len(offsets):,} offsets flipped "
          f"({'structures only' if args.structures else 'whole file'}, every {args.step}), {seconds:.0f} s")
    print(f"{'outcome':<10}{'offsets':>10}")
    for outcome in ("same", "detected", "SILENT", "HANG", "CRASH", "RAW"):
        print(f"{outcome:<10}{counts.get(outcome, 0):>10,}")
    for offset, outcome in list(bad.items())[:20]:
        print(f"  byte {offset}: {outcome}")
    messages = Counter(v.split(" (")[0] for v in results.values() if v.startswith("detected"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"log_bytes": size, "step": args.step, "structures_only": args.structures,
                                   "offsets": len(offsets), "seconds": seconds, "counts": dict(counts),
                                   "not_same_or_detected": {str(k): v for k, v in bad.items()},
                                   "detected_messages": dict(messages.most_common(20))}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
