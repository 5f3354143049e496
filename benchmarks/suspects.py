"""How well ``Run.suspects()`` finds wrong labels, against every single signal and the plain
"low probability of the given label" baseline, all on the same runs.

Trains small runs on the synthetic faces (known clean labels) with symmetric noise (each
label to a uniformly random other class) and with class-dependent noise (fear <-> surprise,
disgust <-> anger, sadness <-> neutral, happiness kept: ``--noise-matrix``, each paired
class flipping to its partner with probability 7/6 of the overall rate, so that the
overall rate matches), at 10, 20 and 30 %, and scores each with
``Run.suspect_quality()``: ROC AUC and average precision (AP; a random ranking's AP is the
noise rate) of the score, of each signal, of the confident-learning flag and of the
baseline. Also reports the flag's precision and recall and how often the suggested label
is the clean one on the noisy samples. Runs given with ``--run`` are scored too (those
without clean labels get the suspects' counts only).

    python benchmarks/suspects.py --quick          # 6 runs of ~40 s each on 2 idle CPU cores
    python benchmarks/suspects.py                  # larger runs, ~8 min each (a GPU: --device cuda)
    python benchmarks/suspects.py --quick --rates 0.3 --seeds 5   # the paired comparison over seeds
    python benchmarks/suspects.py --run runs/scn-rafdb --kinds none   # given runs only

With ``--canaries F[,F...]`` each run also plants that fraction of canaries
(``relabscope.data.canaries``), and the canary estimate of each ranking's AUROC and AP
(``suspect_quality(truth="canaries")``: no clean labels needed) is printed beside the truth
it estimates, the same figure against the clean labels on the samples that are not
canaries; a fraction of 0 among them gives the runs that measure what canaries cost in
test accuracy.

    python benchmarks/suspects.py --quick --rates 0.2 --canaries 0,0.02,0.05 --seeds 2

Prints a table of AUROC and one of AP (rows: scorers; columns: noise kind and rate) and
writes JSON under benchmarks/results/, rewritten after every run. With ``--seeds N``
(training and noise seeds ``--seed`` .. ``--seed + N - 1``) the tables are of the first
seed's runs, followed by the score's paired AUROC difference from each baseline per
column over the seeds: mean, sample SD and in how many seeds the score was higher.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from relabscope.atomic import atomic_write

PAIRS = [("fear", "surprise"), ("disgust", "anger"), ("sadness", "neutral")]
SIZES = {  # (training samples, test samples, epochs, image size)
    "quick": (1000, 200, 8, 16),
    "full": (3000, 500, 12, 32),
}


def paired_matrix(class_names: list[str], rate: float) -> np.ndarray:
    """The class-dependent noise matrix whose overall flip rate over balanced classes is
    ``rate``: each class of :data:`PAIRS` becomes its partner with ``rate * K / paired``."""
    lower = [c.lower() for c in class_names]
    paired = {lower.index(a): lower.index(b) for a, b in PAIRS} | {lower.index(b): lower.index(a) for a, b in PAIRS}
    p = rate * len(class_names) / len(paired)
    if p > 1:
        raise SystemExit(f"rate {rate} needs a pair flip probability {p:.2f} > 1")
    m = np.eye(len(class_names))
    for i, j in paired.items():
        m[i, i], m[i, j] = 1 - p, p
    return m


def train_run(out: Path, kind: str, rate: float, args: argparse.Namespace, canaries: float = 0.0) -> Path:
    from relabscope.data.synthetic import CLASS_NAMES
    from relabscope.training.runner import train

    n_train, n_test, epochs, image_size = SIZES["quick" if args.quick else "full"]
    epochs = args.epochs or epochs
    settings: dict[str, Any] = {
        "dataset": "synthetic", "dataset_options": {"num_train": n_train, "num_test": n_test, "size": 32},
        "image_size": image_size, "epochs": epochs, "relabel_epoch": max(2, epochs // 2), "method": args.method,
        "seed": args.seed, "embed_every": epochs, "workers": 0, "device": args.device, "out": str(out),
        "canaries": canaries, **({"canary_matrix": str(args.canary_matrix)} if canaries and args.canary_matrix else {}),
    }
    if kind == "symmetric":
        settings["noise"] = rate
    else:
        matrix = out.parent / f"{out.name}-matrix.csv"
        np.savetxt(matrix, paired_matrix(list(CLASS_NAMES), rate), delimiter=",", fmt="%.6f")
        settings["noise_matrix"] = str(matrix)
    train(settings, overwrite=True, progress=False, log=lambda line: None)
    return out


def finished(path: Path) -> bool:
    """Whether ``path`` holds a finished run (one cut off is trained again)."""
    import relabscope as rs

    if not (path / "run.h5").is_file():
        return False
    with rs.open_run(path) as run:
        return run.status == "finished"


def score_run(path: Path) -> dict[str, Any]:
    import relabscope as rs

    with rs.open_run(path) as run:
        table = run.suspects()
        out: dict[str, Any] = {
            "run": str(path), "method": run.method, "epochs": run.num_epochs, "train_samples": len(table),
            "test_acc": float(run.metrics()["test_acc"].iloc[-1]),
            "signals_used": table.attrs["signals"], "window": table.attrs["window"],
            "flagged": int(table["flag"].sum()),
        }
        if run.clean_labels is None:
            return out
        clean = run.clean_labels[table["sample_id"].to_numpy()]
        noisy = table["given_label"].to_numpy() != clean
        flag = table["flag"].to_numpy()
        confident = table["confident_label"].to_numpy()
        other = (confident >= 0) & (confident != table["given_label"].to_numpy())
        out.update(
            noise_rate=float(noisy.mean()),
            quality=run.suspect_quality(truth="clean").to_dict(orient="records"),
            flag_precision=float(noisy[flag].mean()) if flag.any() else float("nan"),
            flag_recall=float(flag[noisy].mean()) if noisy.any() else float("nan"),
            # the flag before prune by noise rate: a confident class other than the given one
            old_flag_precision=float(noisy[other].mean()) if other.any() else float("nan"),
            old_flag_recall=float(other[noisy].mean()) if noisy.any() else float("nan"),
            suggestion_accuracy=float((table["suggested_label"].to_numpy() == clean)[noisy].mean())
            if noisy.any() else float("nan"),
        )
        if run.has_canaries:
            out.update(canaries=int((run.canary_labels >= 0).sum()),
                       canary_estimate=run.suspect_quality(truth="canaries").to_dict(orient="records"),
                       truth_without_canaries=quality_without_canaries(run, table),
                       candidates=candidate_quality(run, table))
            if run.relabels_at_all:
                out["recovery"] = recovery_against_truth(run)
    return out


def quality_without_canaries(run: Any, table: Any) -> list[dict[str, Any]]:
    """What the canary estimate estimates: each ranking against the clean labels, over the
    training samples that are not canaries (the natural noise a user wants found)."""
    import pandas as pd

    from relabscope.analysis.suspects import suspect_quality

    ids = table["sample_id"].to_numpy()
    noisy = pd.array(run.given_labels[ids] != run.clean_labels[ids], dtype="boolean")
    noisy[run.canary_labels[ids] >= 0] = pd.NA  # left out
    return suspect_quality(table, noisy).to_dict(orient="records")


#: the single signals the candidate rankings combine, each oriented so that high = suspect
CANDIDATE_SIGNALS = ("aum", "distance_ratio", "out_of_class", "forgetting", "low_p_given")
#: fixed combinations (mean of percentile ranks) tried as the default ranking
CANDIDATE_MIXES = {
    "score": ("aum", "distance_ratio"),
    "p_given+distance": ("low_p_given", "distance_ratio"),
    "aum+p_given+distance": ("aum", "low_p_given", "distance_ratio"),
    "all five": CANDIDATE_SIGNALS,
}


def candidate_quality(run: Any, table: Any) -> list[dict[str, Any]]:
    """Rankings the default could be, each scored against the clean labels on the samples
    that are not canaries (AUROC, AP), and by the canaries alone (AUROC): every single
    signal, the fixed mixes of :data:`CANDIDATE_MIXES`, and two that the canaries choose
    per run: ``canary-weighted`` (percentile ranks weighted by each signal's canary AUROC
    above 0.5) and ``canary-best`` (the single signal or mix with the best canary AUROC)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from relabscope.analysis.suspects import SIGNALS, percentile_ranks

    ids = table["sample_id"].to_numpy()
    canary = run.canary_labels[ids] >= 0
    noisy = run.given_labels[ids] != run.clean_labels[ids]
    ranks = {}
    for name in CANDIDATE_SIGNALS:
        direction = "high" if name == "low_p_given" else SIGNALS[name].direction
        ranks[name] = np.nan_to_num(percentile_ranks(table[name].to_numpy(dtype=np.float64), direction), nan=0.0)

    def auroc(score: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
        return float(roc_auc_score(truth[rows], score[rows])) if 0 < truth[rows].sum() < rows.sum() else float("nan")

    everyone = np.ones(len(ids), bool)
    candidates = dict(ranks)
    candidates.update({name: np.mean([ranks[s] for s in mix], axis=0) for name, mix in CANDIDATE_MIXES.items()})
    by_canaries = {name: auroc(score, canary, everyone) for name, score in candidates.items()}
    weights = {s: max(0.0, by_canaries[s] - 0.5) for s in CANDIDATE_SIGNALS}
    if sum(weights.values()) > 0:
        candidates["canary-weighted"] = sum(w * ranks[s] for s, w in weights.items()) / sum(weights.values())
    best = max(by_canaries, key=lambda k: by_canaries[k])
    candidates["canary-best"] = candidates[best]
    rows = ~canary
    out = []
    for name, score in candidates.items():
        out.append({"candidate": name, "auroc": auroc(score, noisy, rows),
                    "ap": float(average_precision_score(noisy[rows], score[rows])) if noisy[rows].any() else float("nan"),
                    "canary_auroc": auroc(score, canary, everyone), **({"chose": best} if name == "canary-best" else {})})
    return out


def recovery_against_truth(run: Any) -> list[dict[str, Any]]:
    """Per epoch, what the canaries say relabelling did beside what it did (clean labels,
    the samples that are not canaries): canaries_back against noisy_corrected, others_away
    against clean_corrupted (and the share of the others that are noisy, which
    others_away also counts when relabelling moves them)."""
    from relabscope.analysis import dynamics

    mask = run.train_mask
    clean = np.where(run.canary_labels >= 0, -1, run.clean_labels)  # canaries: no clean label to judge
    truth = dynamics.noise_recovery(run._train_columns(run.labels()), run.final_labels()[mask], run._events(),
                                    run.given_labels, clean, mask)
    canaries = run.canary_recovery()
    return [{"epoch": int(e), "canaries_back": float(cb), "noisy_corrected": float(nc), "others_away": float(oa),
             "clean_corrupted": float(cc)}
            for e, cb, nc, oa, cc in zip(truth["epoch"], canaries["canaries_back"], truth["noisy_corrected"],
                                         canaries["others_away"], truth["clean_corrupted"])]


def print_recovery(results: list[dict[str, Any]]) -> None:
    """The last epoch's canary figures beside the truth they stand for, per run."""
    rows = [r for r in results if r.get("recovery")]
    if not rows:
        return
    print("\nis relabelling helping? the canaries' answer (last epoch) beside the truth (clean labels, non-canaries)")
    print(f"{'run':<40}{'canaries back':>15}{'noisy corrected':>17}{'others away':>13}{'clean corrupted':>17}")
    for r in rows:
        last = r["recovery"][-1]
        print(f"{r['name']:<40}{last['canaries_back']:>15.3f}{last['noisy_corrected']:>17.3f}"
              f"{last['others_away']:>13.3f}{last['clean_corrupted']:>17.3f}")


def print_candidates(results: list[dict[str, Any]]) -> None:
    """Per cell (method, noise, length; mean over seeds): each candidate's AUROC and AP
    against the truth, and its paired AP difference from low_p_given (mean, wins)."""
    with_candidates = [r for r in results if "candidates" in r]
    if not with_candidates:
        return
    cells: dict[str, list[dict[str, Any]]] = {}
    for r in with_candidates:
        cells.setdefault(r["label"], []).append(r)
    names = [c["candidate"] for c in with_candidates[0]["candidates"]]
    for metric in ("auroc", "ap"):
        print(f"\ncandidate default rankings: {metric.upper()} against clean labels (samples not canaries), "
              "mean over seeds (in brackets: seeds where it beat low_p_given)")
        print(f"{'':<22}" + "".join(f"{label:>20}" for label in cells))
        for name in names:
            row = []
            for runs in cells.values():
                mine = [next(c[metric] for c in r["candidates"] if c["candidate"] == name) for r in runs]
                base = [next(c[metric] for c in r["candidates"] if c["candidate"] == "low_p_given") for r in runs]
                wins = sum(m > b for m, b in zip(mine, base))
                row.append(f"{np.mean(mine):.3f} ({wins}/{len(runs)})")
            print(f"{name:<22}" + "".join(f"{c:>20}" for c in row))


def print_canaries(results: list[dict[str, Any]]) -> None:
    """The canary estimate beside the truth it estimates, per run, for the score and the
    baselines; then what canaries cost in test accuracy (runs without them, same seed)."""
    with_canaries = [r for r in results if "canary_estimate" in r]
    if not with_canaries:
        return
    print("\ncanary estimate of ROC AUC vs the truth (clean labels, samples that are not canaries)")
    print(f"{'run':<26}{'scorer':<14}{'estimate':>10}{'95% interval':>18}{'truth':>8}{'est - truth':>13}")
    for r in with_canaries:
        truth = {q["scorer"]: q for q in r["truth_without_canaries"]}
        for q in r["canary_estimate"]:
            if q["scorer"] in ("score", "low_p_given", "low_p_last", "aum", "distance_ratio"):
                t = truth[q["scorer"]]["auroc"]
                interval = f"[{q['auroc_low']:.3f}, {q['auroc_high']:.3f}]"
                print(f"{r.get('name', r['label']):<26}{q['scorer']:<14}{q['auroc']:>10.3f}{interval:>18}{t:>8.3f}"
                      f"{q['auroc'] - t:>+13.3f}")
    def cell(r: dict[str, Any]) -> tuple:
        return r["kind"], r.get("rate"), r.get("seed")

    base = {cell(r): r["test_acc"] for r in results if r.get("canary_fraction") == 0}
    costs = [(r, base.get(cell(r))) for r in with_canaries if "canary_fraction" in r]
    if any(b is not None for _, b in costs):
        print("\nwhat canaries cost: test accuracy with them minus without (same noise, seed)")
        for r, b in costs:
            if b is not None:
                print(f"{r['name']:<26}{r['canary_fraction']:>6.0%} canaries: {r['test_acc']:.3f} vs {b:.3f} "
                      f"({r['test_acc'] - b:+.3f})")


def paired_differences(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per column (noise kind and rate) and baseline, the score's AUROC minus the
    baseline's over the seeds: mean, sample SD (NaN for one seed), wins, seeds."""
    from relabscope.analysis.suspects import BASELINES

    by_column: dict[str, list[dict[str, float]]] = {}
    for r in results:
        if "quality" in r and r["kind"] in ("symmetric", "class"):
            by_column.setdefault(r["label"], []).append({q["scorer"]: q["auroc"] for q in r["quality"]})
    out = []
    for label, runs in by_column.items():
        for baseline in BASELINES:
            d = np.array([q["score"] - q[baseline] for q in runs])
            out.append({"column": label, "baseline": baseline, "seeds": len(d), "mean": float(d.mean()),
                        "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"), "wins": int((d > 0).sum()),
                        "score_mean": float(np.mean([q["score"] for q in runs])),
                        "baseline_mean": float(np.mean([q[baseline] for q in runs]))})
    return out


def print_paired(rows: list[dict[str, Any]]) -> None:
    print("\nscore's ROC AUC minus each baseline's, over seeds (mean ± SD, seeds where the score is higher)")
    for r in rows:
        print(f"{r['column']:<14}{r['baseline']:<13} score {r['score_mean']:.3f} vs {r['baseline_mean']:.3f}: "
              f"{r['mean']:+.4f} ± {r['sd']:.4f}, higher in {r['wins']} of {r['seeds']}")


def print_tables(results: list[dict[str, Any]]) -> None:
    scored = [r for r in results if "quality" in r]
    if scored:
        heads = [r["label"] for r in scored]
        scorers = [q["scorer"] for q in scored[0]["quality"]]
        for metric, name in (("auroc", "ROC AUC"), ("average_precision", "average precision")):
            print(f"\n{name} (higher finds more noisy labels; AP of a random ranking = the noise rate)")
            print(f"{'':<16}" + "".join(f"{h:>13}" for h in heads))
            for s in scorers:
                cells = []
                for r in scored:
                    value = next(q[metric] for q in r["quality"] if q["scorer"] == s)
                    cells.append("-" if value != value else f"{value:.3f}")
                print(f"{s:<16}" + "".join(f"{c:>13}" for c in cells))
        print()
        for key, name in (("test_acc", "test accuracy"), ("noise_rate", "noise rate"), ("flagged", "flagged"),
                          ("flag_precision", "flag precision"), ("flag_recall", "flag recall"),
                          ("old_flag_precision", "old flag prec."), ("old_flag_recall", "old flag recall"),
                          ("suggestion_accuracy", "suggested = clean")):
            print(f"{name:<16}" + "".join(f"{r[key]:>13.3f}" if isinstance(r[key], float) else f"{r[key]:>13}"
                                           for r in scored))
    for r in results:
        if "quality" not in r:
            print(f"{r['run']}: no clean labels; {r['flagged']} of {r['train_samples']} training samples flagged, "
                  f"score over {', '.join(r['signals_used'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller, shorter runs: %s" % (SIZES["quick"],))
    ap.add_argument("--kinds", default="symmetric,class", help="noise kinds to train: symmetric, class, or none")
    ap.add_argument("--rates", default="0.1,0.2,0.3")
    ap.add_argument("--methods", default="scn", help="methods to train, e.g. scn,scn-c,baseline")
    ap.add_argument("--epochs", default="", help="training lengths to train, e.g. 4,16 (default: the size's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="train each run with seeds --seed .. --seed + N - 1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run", action="append", type=Path, default=[], help="also score this run (repeatable)")
    ap.add_argument("--keep", type=Path, help="train the runs into this folder (and reuse those already there)")
    ap.add_argument("--canaries", default="0", help="canary fractions to train each run with (e.g. 0,0.02,0.05)")
    ap.add_argument("--canary-matrix", type=Path, help="where canaries go (run.noise_matrix_estimate() of an "
                    "earlier run, as CSV): canaries like the data's own errors")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "suspects.json")
    args = ap.parse_args()
    fractions = [float(c) for c in args.canaries.split(",")]
    kinds = [k for k in args.kinds.split(",") if k and k != "none"]
    rates = [float(r) for r in args.rates.split(",")]
    tmp = None if args.keep else tempfile.TemporaryDirectory()
    root = args.keep or Path(tmp.name)  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    methods = [m for m in args.methods.split(",") if m]
    lengths: list[int | None] = [int(e) for e in args.epochs.split(",") if e] or [None]
    report: dict[str, Any] = {"quick": args.quick, "methods": methods, "seed": args.seed, "seeds": args.seeds,
                              "sizes": SIZES["quick" if args.quick else "full"], "platform": platform.platform(),
                              "runs": results, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        with atomic_write(args.out) as fh:
            fh.write(json.dumps(report, indent=2, default=float).encode())

    first_seed = args.seed
    cells = [(seed, method, length, kind, rate, fraction) for seed in range(first_seed, first_seed + args.seeds)
             for method in methods for length in lengths for kind in kinds for rate in rates for fraction in fractions]
    for seed, method, length, kind, rate, fraction in cells:
        args.seed, args.method, args.epochs = seed, method, length
        name = (f"{method}-{kind}-{rate:g}" + (f"-e{length}" if length else "")
                + (f"-canaries{fraction:g}" if fraction else "") + ("-like" if fraction and args.canary_matrix else "")
                + (f"-seed{seed}" if seed else ""))
        out = root / name
        t = time.perf_counter()
        reused = finished(out)
        if not reused:
            train_run(out, kind, rate, args, canaries=fraction)
        trained = None if reused else time.perf_counter() - t
        label = ((f"{method} " if len(methods) > 1 else "") + f"{kind[:3]} {rate:.0%}"
                 + (f" e{length}" if len(lengths) > 1 else "") + (f" c{fraction:.0%}" if fraction else ""))
        result = {"label": label, "name": name, "kind": kind, "rate": rate, "seed": seed,
                  "canary_fraction": fraction, "train_seconds": trained, **score_run(out)}
        results.append(result)
        how = f"reused {out}" if trained is None else f"trained in {trained:.0f} s"
        print(f"{result['label']}, seed {seed}: {how}, test acc {result['test_acc']:.3f}", flush=True)
        save()
    args.seed = first_seed
    for path in args.run:
        results.append({"label": path.name[:12], "kind": "given", **score_run(path)})
        save()
    print_tables([r for r in results if r.get("seed", first_seed) == first_seed])
    print_canaries(results)
    print_candidates(results)
    print_recovery(results)
    if args.seeds > 1:
        report["paired"] = paired_differences(results)
        print_paired(report["paired"])
    report["complete"] = True
    save()
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
