"""Lesion confidence on held-out real scans: calibration (leave one subject out), AUROC, ECE, reliability
diagram, and how many verdict errors the most doubtful 20 % of cases catch.

    .venv/bin/python scripts/bench_confidence.py --json docs/benchmarks/confidence_v2.0.0.json \\
        --figure docs/benchmarks/confidence_reliability_v2.0.0.png \\
        --write-calibration models/modicseg-unet-v1          # the shipped confidence.json (all subjects)
    .venv/bin/python scripts/bench_confidence.py --quick      # 2 Dixon volumes + the pair, 1 variant
    .venv/bin/python scripts/bench_confidence.py --from-json docs/benchmarks/confidence_v2.0.0.json \
        --write-calibration models/modicseg-unet-v1          # refit from a run's saved samples, no network

Only held-out subjects of ``configs/splits.yaml`` are used (``modicseg.evaluation.confidence`` says how
samples are labelled). Every figure printed is cross-fitted: a lesion's confidence comes from a
calibrator fitted without its subject.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modicseg.analysis.confidence import CALIBRATION_FILE, FEATURES, fit_calibrator  # noqa: E402
from modicseg.analysis.config import AnalysisConfig  # noqa: E402
from modicseg.evaluation.confidence import (  # noqa: E402
    auroc,
    caught_by_doubt,
    collect,
    collect_verdicts,
    cross_fitted,
    matrix,
    reliability,
    subject_of,
    verdict_doubts,
)
from modicseg.evaluation.generalisation import load_sets  # noqa: E402
from modicseg.model.sources import read_splits  # noqa: E402

TARGETS = {"auroc": 0.90, "ece": 0.05, "doubt_caught": 0.80}


def figure(path: Path, table_cal: list[dict], table_raw: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for table, name, marker in ((table_raw, "uncalibrated (mean lesion probability)", "s"),
                                (table_cal, "confidence (cross-fitted)", "o")):
        rows = [r for r in table if r["n"]]
        ax.plot([r["mean_confidence"] for r in rows], [r["share_real"] for r in rows], marker=marker, label=name)
        for r in rows:
            ax.annotate(str(r["n"]), (r["mean_confidence"], r["share_real"]), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("share of lesions that are real")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Lesion confidence, held-out real scans", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_calibration(directory: Path, x: np.ndarray, y: np.ndarray, subjects: list[str], l2: float, seed: int,
                      cross_fitted: dict, checkpoint_sha256: str | None, features: tuple[str, ...] = FEATURES) -> Path:
    summary = (f"{len(y)} lesions ({int(y.sum())} real) on {len(subjects)} held-out subjects "
               f"(healthy scans and lesions painted by the independent painter), seed {seed}")
    calibrator = fit_calibrator(x, y, features=features, l2=l2, fitted_on={
        "summary": summary, "subjects": subjects, "samples": int(len(y)), "real": int(y.sum()),
        "cross_fitted_auroc": round(cross_fitted["auroc"], 4), "cross_fitted_ece": round(cross_fitted["ece"], 4),
        "checkpoint_sha256": checkpoint_sha256,
        "command": "scripts/bench_confidence.py " + ("" if tuple(features) == FEATURES else
                                                     f"--features {','.join(features)} ") + "--write-calibration"})
    out = directory / CALIBRATION_FILE
    out.write_text(json.dumps(calibrator.to_dict(), indent=1) + "\n")
    return out


def refit(args: argparse.Namespace) -> int:
    """--from-json: fit the shipped calibrator on a saved run's samples."""
    from modicseg.model.checkpoint import file_sha256

    if args.write_calibration is None:
        print("--from-json needs --write-calibration DIR", file=sys.stderr)
        return 2
    run = json.loads(args.from_json.read_text())
    rows = run["samples_list"]
    features = tuple(run.get("features", FEATURES))
    x = np.array([[row["inputs"][f] for f in features] for row in rows], dtype=np.float64).reshape(-1, len(features))
    y = np.array([row["real"] for row in rows], dtype=np.float64)
    subjects = sorted({row["subject"] for row in rows})
    sha = file_sha256(args.write_calibration / "model.pt")
    out = write_calibration(args.write_calibration, x, y, subjects, run.get("l2", args.l2), run.get("seed", 0),
                            run["cross_fitted"], sha, features)
    print(f"wrote {out} ({len(y)} lesions, {int(y.sum())} real, from {args.from_json})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "modicseg-unet-v1")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared")))
    parser.add_argument("--splits", type=Path, default=REPO / "configs" / "splits.yaml")
    parser.add_argument("--variants", type=int, default=3, help="paintings per held-out case")
    parser.add_argument("--verdicts", type=int, default=24, help="painted variants of the T1+T2 pair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--features", default=",".join(FEATURES),
                        help=f"calibrator inputs, comma-separated, of: {', '.join(FEATURES)} (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--write-calibration", type=Path, metavar="CHECKPOINT_DIR",
                        help=f"write {CALIBRATION_FILE} (fitted on every sample) into this checkpoint folder")
    parser.add_argument("--from-json", type=Path, metavar="RUN_JSON",
                        help="with --write-calibration: fit on the samples a saved run (--json) holds, without "
                             "running the network")
    args = parser.parse_args()
    if args.from_json is not None:
        return refit(args)
    features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    if not features or set(features) - set(FEATURES):
        print(f"--features: choose from {', '.join(FEATURES)}", file=sys.stderr)
        return 2

    from modicseg.model.runtime import load_segmenter

    started = time.perf_counter()
    segmenter = load_segmenter(args.model, device="cpu")
    config = AnalysisConfig()
    splits = read_splits(args.splits)
    sets, healthy = load_sets(args.shared, splits, quick=args.quick)
    if not sets:
        print(f"no held-out data found under {args.shared}", file=sys.stderr)
        return 2
    variants = 1 if args.quick else args.variants
    verdict_count = 4 if args.quick else args.verdicts
    roots = {"dixon": args.shared / "real-spine-dixon", "real_spine": args.shared / "real-spine",
             "real_spine_pairs": args.shared / "real-spine"}
    where = {}
    cases = []
    for set_name in ("dixon", "real_spine"):
        for case in sets.get(set_name, []):
            where[case.name] = roots[set_name]
            cases.append((case, case.name in healthy))
    log = lambda message: print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)  # noqa: E731
    samples = collect(segmenter, cases, variants, args.seed, config, lambda c: where.get(c.name), progress=log)
    verdict_cases = []
    for pair in sets.get("real_spine_pairs", []):
        subject = subject_of(pair, roots["real_spine_pairs"])
        found, more = collect_verdicts(segmenter, pair, verdict_count, args.seed, config, subject, progress=log)
        verdict_cases += found
        samples += more

    x, y = matrix(samples)
    subjects = sorted({s.subject for s in samples})
    oof, folds = cross_fitted(samples, l2=args.l2, features=features)
    raw = x[:, FEATURES.index("probability")]
    ece_cal, table_cal = reliability(oof, y)
    ece_raw, table_raw = reliability(raw, y)
    big = np.array([s.volume_mm3 >= 100 for s in samples])
    verdict_rows = verdict_doubts(verdict_cases, folds, config)
    caught = caught_by_doubt(verdict_rows, 0.2, seed=args.seed)
    result = {
        "model": str(args.model), "seed": args.seed, "l2": args.l2, "features": list(features), "variants": variants,
        "verdict_variants": verdict_count,
        "subjects": subjects, "samples": len(samples), "real": int(y.sum()), "false": int(len(y) - y.sum()),
        "cross_fitted": {"auroc": auroc(oof, y), "ece": ece_cal, "brier": float(np.mean((oof - y) ** 2)),
                         "auroc_100mm3": auroc(oof[big], y[big]), "reliability": table_cal},
        "uncalibrated_probability": {"auroc": auroc(raw, y), "ece": ece_raw,
                                     "brier": float(np.mean((raw - y) ** 2)), "reliability": table_raw},
        "per_feature_auroc": {f: auroc(x[:, i], y) for i, f in enumerate(FEATURES)},
        "verdicts": {"rows": verdict_rows, "doubt_first_20pct": caught},
        "targets": TARGETS, "elapsed_s": round(time.perf_counter() - started, 1),
        "samples_list": [vars(s) | {"confidence_cross_fitted": round(float(c), 4)} for s, c in zip(samples, oof,
                                                                                                     strict=True)],
    }
    cf = result["cross_fitted"]
    print(f"\n{len(samples)} lesions ({int(y.sum())} real, {int(len(y) - y.sum())} false) from {len(subjects)} "
          f"held-out subjects")
    print(f"cross-fitted confidence: AUROC {cf['auroc']:.3f} (target >= {TARGETS['auroc']}), "
          f"ECE {cf['ece']:.3f} (target <= {TARGETS['ece']}), Brier {cf['brier']:.3f}; lesions >= 100 mm³: "
          f"AUROC {cf['auroc_100mm3']:.3f}")
    un = result["uncalibrated_probability"]
    print(f"uncalibrated mean lesion probability: AUROC {un['auroc']:.3f}, ECE {un['ece']:.3f}")
    print("per input AUROC: " + ", ".join(f"{k} {v:.2f}" for k, v in result["per_feature_auroc"].items()))
    print(f"verdicts: {caught['cases']} T1+T2 variants, {caught['errors']} not right (wrong or left undecided); "
          f"the {caught['read_first']} most doubtful hold {caught['caught']}"
          + ("" if caught["share_caught"] is None else f" ({100 * caught['share_caught']:.0f} %, target 80 %)"))
    for row in table_cal:
        print(f"  {row['bin']}: n {row['n']:3d}" + (f", mean confidence {row['mean_confidence']:.2f}, real "
                                                     f"{row['share_real']:.2f}" if row["n"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    if args.figure:
        figure(args.figure, table_cal, table_raw)
    if args.write_calibration:
        out = write_calibration(args.write_calibration, matrix(samples, features)[0], y, subjects, args.l2,
                                args.seed, cf, segmenter.checkpoint_sha256, features)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
