"""One correction round on the synthetic faces, a stand-in reviewer who knows the clean labels.

1. trains a run (SCN by default) at 30 % symmetric noise;
2. exports its ``--top`` suspects as Label Studio tasks (``rs.export_suspects``);
3. "annotates" them: each task gets the sample's clean label as the annotator's choice,
   as a Label Studio JSON export would carry it, and imports that export into the run's
   ``corrections.csv`` (``rs.import_labelstudio``);
4. trains the same settings again with ``corrections=`` that file;
5. compares: ``Comparison.summary`` (accuracy, relabels, flip-flops, classes emptied, noisy
   labels corrected / clean corrupted) and the correction round (per decision: trained on,
   relabelled again, ended under another label, noisy before / after).

    python benchmarks/correction_round.py --quick      # ~70 s on 2 idle CPU cores
    python benchmarks/correction_round.py --top 300

Prints both tables and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from relabscope.atomic import atomic_write

SIZES = {"quick": (1000, 200, 8, 16), "full": (3000, 500, 12, 32)}  # train, test, epochs, image size
SUMMARY_ROWS = ["test_acc", "relabel_events", "relabelled_samples", "flipflops", "closer_vs_control",
                "classes_emptied", "classes_below_half", "noisy_corrected", "clean_corrupted"]


def settings(out: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    n_train, n_test, epochs, image_size = SIZES["quick" if args.quick else "full"]
    return {"dataset": "synthetic", "dataset_options": {"num_train": n_train, "num_test": n_test, "size": 32},
            "image_size": image_size, "epochs": epochs, "relabel_epoch": max(2, epochs // 2), "method": args.method,
            "noise": args.noise, "seed": args.seed, "embed_every": epochs, "workers": 0, "device": args.device,
            "out": str(out), **extra}


def oracle_export(tasks_file: Path, export_file: Path, class_names: list[str], clean: Any) -> None:
    """What Label Studio's JSON export holds after an annotator chose every clean label."""
    tasks = json.loads(tasks_file.read_text())
    for i, task in enumerate(tasks):
        choice = class_names[int(clean[task["data"]["sample_id"]])]
        task["annotations"] = [{"id": i + 1, "completed_by": {"email": "clean-labels"},
                                "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                            "value": {"choices": [choice]}}]}]
    export_file.write_text(json.dumps(tasks))


def main() -> None:
    import relabscope as rs
    from relabscope.analysis.correction_round import correction_round
    from relabscope.training.runner import train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller, shorter runs: %s" % (SIZES["quick"],))
    ap.add_argument("--top", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--method", default="scn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "correction_round.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        train(settings(root / "before", args), progress=False, log=lambda line: None)
        with rs.open_run(root / "before") as before:
            top = before.suspects().head(args.top)
            clean = before.clean_labels
            noisy_in_top = int((top["given_label"].to_numpy() != clean[top["sample_id"].to_numpy()]).sum())
            rs.export_suspects(before, root / "tasks.json", top=args.top, format="labelstudio")
            oracle_export(root / "tasks.json", root / "export.json", before.class_names, clean)
            decisions = rs.import_labelstudio(before, root / "export.json").decisions
        train(settings(root / "after", args, corrections=str(root / "before" / "corrections.csv")),
              progress=False, log=lambda line: None)
        with rs.open_run(root / "before") as before, rs.open_run(root / "after") as after:
            summary = rs.compare(before, after).summary(warn=False)
            summary = summary.reindex([r for r in SUMMARY_ROWS if r in summary.index])
            rounds = correction_round(before, after)
        seconds = time.perf_counter() - started
    print(f"{args.method}, {args.noise:.0%} symmetric noise, {SIZES['quick' if args.quick else 'full']} "
          f"(train, test, epochs, px); top {args.top} suspects: {noisy_in_top} noisy; "
          f"decisions {decisions['decision'].value_counts().to_dict()}; {seconds:.0f} s\n")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    print(rounds.to_string(index=False))
    report = {"method": args.method, "noise": args.noise, "top": args.top, "noisy_in_top": noisy_in_top,
              "sizes": SIZES["quick" if args.quick else "full"], "seed": args.seed, "seconds": seconds,
              "platform": platform.platform(), "summary": json.loads(summary.to_json()),
              "correction_round": json.loads(rounds.to_json(orient="records"))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as fh:
        fh.write(json.dumps(report, indent=2).encode())
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
