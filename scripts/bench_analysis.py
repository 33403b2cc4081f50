"""Benchmark the analysis stage against synthetic ground truth (no network).

    .venv/bin/python scripts/bench_analysis.py [--cases 40] [--seed 1000] [--json out.json] [--keep DIR]

For each case, ``modicseg.synth.case.generate_case`` draws a spine with lesions; its T1 and T2 are
written as a DICOM study (canary identifiers) and its ground-truth label map as NIfTI; then the
whole ``analyze`` runs on them -- DICOM loading, T1 onto the T2 grid, analysis -- and writes every
output (report.json, CSVs, NIfTI maps, DICOM SEG, qc.png).  This isolates post-processing from
segmentation.  Reported:

* per-lesion type accuracy: reported type string == truth type, over all truth lesions (a missed
  lesion counts as wrong); lesions are matched by vertebra (majority of the truth instance map
  under the lesion) and endplate, so level naming does not enter;
* median |volume error| (%), median |height-fraction error| (percentage points), over matched lesions;
* eligibility agreement: per case decided automatically, reported ``eligible`` == truth (some
  lesion with ``trial_eligible``); cases whose decision is "borderline: review" (a type-1 lesion
  within one voxel of 10 % and none clear of it) are counted apart (``borderline_cases``);
* median |vertebral height error| (mm) over bodies not cut by the field of view, and the level
  naming accuracy (transitional spines with 4 or 6 lumbar vertebrae are named as if they had 5);
* wall time of ``analyze`` (load + analysis) and of writing the outputs, per study.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TARGETS = {"type_accuracy": 0.95, "median_volume_error": 0.10, "median_height_fraction_error": 0.03,
           "eligibility_agreement": 0.97, "median_height_error_mm": 1.0, "analyze_s": 15.0}


def write_study(case, folder: Path) -> Path:
    """T1 and T2 of a synthetic case as one DICOM study with canary identifiers."""
    from modicseg.io.dicom_write import SeriesSpec, StudySpec, write_mr_series

    study = StudySpec(patient_name="CANARY^BENCH", patient_id="CANARY-BENCH", patient_birth_date="19450101")
    acq = case.truth["parameters"]["sequences"]
    for number, (name, image) in enumerate((("T1", case.t1), ("T2", case.t2)), start=3):
        seq = acq[name]
        spec = SeriesSpec(series_number=number, description=seq["series_description"],
                          repetition_time=seq["repetition_time_ms"], echo_time=seq["echo_time_ms"],
                          slice_thickness=case.truth["parameters"]["acquisition"]["slice_thickness_mm"])
        write_mr_series(image, folder / name, spec, study)
    return folder


def majority(values: np.ndarray) -> int:
    values = values[values > 0]
    return int(np.bincount(values).argmax()) if values.size else 0


def compare(case, report) -> dict:
    """Per-lesion, per-vertebra and per-case comparisons of one report with its truth."""
    truth = case.truth
    truth_instances = np.asarray(case.instances.array)
    by_label = {v["instance_label"]: v for v in truth["vertebrae"]}
    by_level = {v["level"]: v for v in truth["vertebrae"]}
    vertebrae = []
    for v in report.vertebrae:
        label = majority(truth_instances[report.instances == v.label])
        tv = by_label.get(label)
        if tv is None:
            continue
        vertebrae.append({"level": v.level, "truth_level": tv["level"], "truncated": v.truncated,
                          "height": v.height_mm, "truth_height": tv["height_mm"],
                          "volume": v.volume_mm3, "truth_volume": tv["volume_mm3"]})
    found = {}
    for les in report.lesions:
        label = majority(truth_instances[report.lesion_map == les.id])
        tv = by_label.get(label)
        if tv is not None:
            found.setdefault((tv["level"], les.endplate), []).append(les)
    lesions = []
    for tl in truth["lesions"]:
        if tl["volume_mm3"] <= 0:  # drawn but empty (no voxel in the label map): nothing to find
            continue
        candidates = found.get((tl["level"], tl["endplate"]), [])
        m = max(candidates, key=lambda les: les.volume_mm3) if candidates else None
        row = {"truth_level": tl["level"], "endplate": tl["endplate"], "truth_type": tl["type"],
               "truth_volume": tl["volume_mm3"], "truth_height_fraction": tl["height_fraction"],
               "truth_eligible": tl["trial_eligible"], "truth_height": by_level[tl["level"]]["height_mm"],
               "found": m is not None}
        if m is not None:
            row.update({"type": m.type, "volume": m.volume_mm3, "height_fraction": m.height_fraction,
                        "level": m.level, "unclassified_fraction": m.unclassified_fraction,
                        "type_fractions": m.type_fractions, "truth_type_fractions": tl["type_fractions"]})
        lesions.append(row)
    matched = {id(les) for rows in found.values() for les in rows}
    extra = [les for les in report.lesions if id(les) not in matched]
    truth_eligible = any(tl["trial_eligible"] and tl["volume_mm3"] > 0 for tl in truth["lesions"])
    return {"case": case.case_id, "vertebrae": vertebrae, "lesions": lesions, "extra_lesions": len(extra)
            + sum(len(rows) - 1 for rows in found.values()),
            "eligible": report.eligibility.eligible, "eligibility_status": report.eligibility.status,
            "truth_eligible": truth_eligible,
            "lumbar_count": truth["parameters"]["lumbar_count"],
            "empty_truth_lesions": sum(tl["volume_mm3"] <= 0 for tl in truth["lesions"])}


def summarise(results: list[dict]) -> dict:
    lesions = [row for r in results for row in r["lesions"]]
    matched = [row for row in lesions if row["found"]]
    vertebrae = [v for r in results for v in r["vertebrae"] if not v["truncated"]]
    summary = {
        "cases": len(results),
        "truth_lesions": len(lesions),
        "empty_truth_lesions_skipped": sum(r["empty_truth_lesions"] for r in results),
        "matched_lesions": len(matched),
        "extra_lesions": sum(r["extra_lesions"] for r in results),
        "type_accuracy": sum(row["found"] and row["type"] == row["truth_type"] for row in lesions)
        / max(len(lesions), 1),
        "median_volume_error": statistics.median(abs(row["volume"] / row["truth_volume"] - 1) for row in matched),
        "p90_volume_error": float(np.percentile([abs(row["volume"] / row["truth_volume"] - 1) for row in matched], 90)),
        "median_height_fraction_error": statistics.median(
            abs(row["height_fraction"] - row["truth_height_fraction"]) for row in matched),
        "p90_height_fraction_error": float(np.percentile(
            [abs(row["height_fraction"] - row["truth_height_fraction"]) for row in matched], 90)),
        # over the cases decided automatically; borderline cases (a height within one voxel of 10 %) go
        # to a reader and are counted apart
        "eligibility_agreement": sum(r["eligible"] == r["truth_eligible"] for r in results if r["eligible"] is not None)
        / max(sum(r["eligible"] is not None for r in results), 1),
        "borderline_cases": sum(r.get("eligibility_status") == "borderline" for r in results),
        "eligible_cases_truth": sum(r["truth_eligible"] for r in results),
        "median_height_error_mm": statistics.median(abs(v["height"] - v["truth_height"]) for v in vertebrae),
        "p90_height_error_mm": float(np.percentile([abs(v["height"] - v["truth_height"]) for v in vertebrae], 90)),
        "vertebrae_compared": len(vertebrae),
        "vertebrae_cut_by_fov": sum(v["truncated"] for r in results for v in r["vertebrae"]),
        "level_naming_accuracy": sum(v["level"] == v["truth_level"] for r in results for v in r["vertebrae"])
        / max(sum(len(r["vertebrae"]) for r in results), 1),
        "level_naming_accuracy_5_lumbar": _naming(results, 5),
        "transitional_cases": sum(r["lumbar_count"] != 5 for r in results),
    }
    times = [r["analyze_s"] for r in results]
    writes = [r["write_s"] for r in results]
    cpu = [r["analyze_cpu_s"] + r["write_cpu_s"] for r in results]
    summary.update({"median_analyze_s": statistics.median(times), "max_analyze_s": max(times),
                    "median_write_s": statistics.median(writes),
                    "median_total_s": statistics.median(t + w for t, w in zip(times, writes, strict=True)),
                    "max_total_s": max(t + w for t, w in zip(times, writes, strict=True)),
                    "median_total_cpu_s": statistics.median(cpu), "max_total_cpu_s": max(cpu)})
    return summary


def _naming(results: list[dict], lumbar: int) -> float:
    rows = [v for r in results if r["lumbar_count"] == lumbar for v in r["vertebrae"]]
    return sum(v["level"] == v["truth_level"] for v in rows) / max(len(rows), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first case (then +1 per case)")
    parser.add_argument("--json", type=Path, help="write per-case results and the summary here")
    parser.add_argument("--keep", type=Path, help="keep studies and outputs in this folder")
    args = parser.parse_args(argv)

    from modicseg.core.convert import save_nifti
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report
    from modicseg.synth.case import generate_case

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    results = []
    try:
        for n in range(args.cases):
            seed = args.seed + n
            case = generate_case(seed, case_id=f"bench{seed}")
            folder = root / case.case_id
            study = write_study(case, folder / "study")
            labels = folder / "labels.nii.gz"
            save_nifti(case.labels, str(labels))
            started, cpu_started = time.perf_counter(), time.process_time()
            report = analyze(study, labels=labels)
            analysed, cpu_analysed = time.perf_counter(), time.process_time()
            write_report(report, folder / "out")
            written, cpu_written = time.perf_counter(), time.process_time()
            result = compare(case, report)
            result.update({"seed": seed, "analyze_s": analysed - started, "write_s": written - analysed,
                           "analyze_cpu_s": cpu_analysed - cpu_started, "write_cpu_s": cpu_written - cpu_analysed,
                           "shape": list(report.labels.shape)})
            results.append(result)
            wrong = [f"{row['truth_level']} {row['endplate']} {row['truth_type']}->{row.get('type')}"
                     for row in result["lesions"] if not row["found"] or row["type"] != row["truth_type"]]
            print(f"case {seed}: {len(result['lesions'])} lesions, eligible {report.eligibility.eligible} "
                  f"(truth {result['truth_eligible']}), analyze {result['analyze_s']:.1f} s + write "
                  f"{result['write_s']:.1f} s (CPU {result['analyze_cpu_s'] + result['write_cpu_s']:.1f} s)"
                  + (f"; type errors: {', '.join(wrong)}" if wrong else ""), flush=True)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    summary = summarise(results)
    print(json.dumps(summary, indent=2))
    for key, target in TARGETS.items():
        value = summary.get(key, summary.get("max_total_s") if key == "analyze_s" else None)
        better = value <= target if key != "type_accuracy" and key != "eligibility_agreement" else value >= target
        print(f"{key:32s} {value:8.4f}  target {target}  {'met' if better else 'NOT MET'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
