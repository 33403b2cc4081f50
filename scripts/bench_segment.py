"""Benchmark of the segmentation model: Dice on held-out synthetic cases and on real-spine
vertebral bodies, inference time and peak memory per study.

    .venv/bin/python scripts/bench_segment.py --model models/modicseg-unet-v1 --synthetic 8 --timing 5

Held-out synthetic cases come from another seed (7777) and other generator settings than the
training validation set (more degeneration, two lesions per case, T1 on its own grid). Timing
runs in a child process (model loaded once, then one study after another; peak RSS of that
process) and once end to end through ``modicseg segment``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modicseg.analysis.config import LesionConfig  # noqa: E402

#: tolerance of the normalised surface Dice on real-spine: two 1 mm voxels, about the cortical shell
#: that the real masks leave out and the model's bodies include.
SURFACE_TOLERANCE_MM = 2.0
#: real-spine volumes of one subject on one grid: (T1 case, T2 or TIRM case)
SAME_GRID_PAIRS = (("vb1_10", "vb1_11"), ("vb1_02", "vb1_03"), ("vb1_06", "vb1_07"))
#: lesion parts on real scans are counted from the analysis's smallest reported part (lesions.min_volume_mm3)
LESION_MIN_PART_MM3 = LesionConfig().min_volume_mm3
HELD_OUT_OPTIONS = {"degeneration": 1.5, "lesion_count": 2, "separate_t1_grid": True}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _lesion_parts(row: dict) -> str:
    if "modic_lesion_unannotated_parts" not in row:
        return "-"
    return f"{row['modic_lesion_unannotated_parts']:.0f} ({row['modic_lesion_unannotated_mm3']:.0f})"


def _named(row: dict) -> str:
    return f"{row['levels_named_right']}/{row['levels_reference']}" if "levels_reference" in row else "-"


def dice_sections(model: Path, n_synth: int, seed: int, real: Path | None, device: str, precision: str) -> dict:
    from modicseg.evaluation.segmentation import evaluate_cases
    from modicseg.model.cases import load_labelled_cases, same_grid_pair
    from modicseg.model.inference import Segmenter
    from modicseg.model.synth_adapter import synth_validation_cases

    seg = Segmenter.load(model, device=device, precision=precision)
    out: dict = {"model": seg.describe()}
    if n_synth:
        cases = synth_validation_cases(n_synth, seed, **HELD_OUT_OPTIONS)
        for contrasts in (["T1", "T2"], ["T2"], ["T1"]):
            summary, rows = evaluate_cases(seg, cases, contrasts, level_names=True)
            out[f"synthetic_{'+'.join(contrasts)}"] = {"summary": summary, "cases": rows}
    if real is not None and real.is_dir():
        cases = load_labelled_cases(real)
        summary, rows = evaluate_cases(seg, cases, surface_tolerance_mm=SURFACE_TOLERANCE_MM,
                                       annotated_levels=True, level_names=True,
                                       unannotated_min_part_mm3=LESION_MIN_PART_MM3, overlap=True)
        for row, case in zip(rows, cases, strict=True):
            row["sequence"] = case.info.get("sequence")
        by_name = {c.name: c for c in cases}
        pairs = []
        for t1_name, t2_name in SAME_GRID_PAIRS:  # one subject, T1 and T2 (or TIRM) on one grid
            if t1_name in by_name and t2_name in by_name:
                pair = same_grid_pair(by_name[t1_name], by_name[t2_name])
                _, pair_rows = evaluate_cases(seg, [pair], level_names=True,
                                              unannotated_min_part_mm3=LESION_MIN_PART_MM3)
                pairs.append(pair_rows[0] | {"analysis": pair_analysis(seg, pair)})
        if pairs:
            out["real_spine_pairs"] = pairs
        by_seq = {}
        for sequence in sorted({r["sequence"] for r in rows}):
            vals = [r["dice_vertebral_body"] for r in rows if r["sequence"] == sequence]
            by_seq[sequence] = float(np.mean(vals))
        out["real_spine"] = {"summary": summary, "by_sequence": by_seq, "cases": rows}
    return out


def pair_analysis(seg, pair) -> dict:
    """``modicseg analyze``'s lesions and eligibility on a real subject with T1 and T2."""
    from modicseg.analysis.pipeline import analyze_images

    report = analyze_images(seg.segment(t1=pair.t1, t2=pair.t2), pair.t1, pair.t2)
    lesions = [f"{les.level} {les.endplate} type {les.type}, {les.volume_mm3:.0f} mm3, height {les.height_fraction:.0%}"
               for les in report.lesions]
    qualifying = [les for les in report.lesions if les.id in report.eligibility.qualifying_lesions]
    return {"lesions": len(report.lesions), "lesion_list": lesions, "eligible": report.eligibility.eligible,
            "qualifying": [f"{les.level} {les.endplate} type {les.type}" for les in qualifying],
            "eligibility_reason": report.eligibility.reasons[0] if report.eligibility.reasons else None,
            "warnings": report.warnings}


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process image. Linux carries ``ru_maxrss`` across fork and exec
    (a child started by a large parent reports the parent's size), so read the high-water mark of
    the current address space (``VmHWM``) where there is one."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timing_child(model: str, files: list[str], device: str, precision: str, threads: int) -> None:
    """(child process) load the model once, segment each study, print JSON timings + peak RSS."""
    import torch

    torch.set_num_threads(threads)
    from modicseg.io.nifti_input import load_nifti_image
    from modicseg.model.inference import Segmenter

    started = time.perf_counter()
    seg = Segmenter.load(model, device=device, precision=precision)
    load_s = time.perf_counter() - started
    warmup_s = seg.warmup()
    rows = []
    for pair in files:
        t1_path, t2_path = pair.split(",")
        t0 = time.perf_counter()
        t1, t2 = load_nifti_image(t1_path, "T1"), load_nifti_image(t2_path, "T2")
        t_read = time.perf_counter() - t0
        res = seg.segment_detailed(t1=t1, t2=t2)
        if device == "cuda":
            torch.cuda.synchronize()
        rows.append({"shape": list(t2.shape), "read_s": t_read, **res.timings_s})
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    print(json.dumps({"load_model_s": load_s, "warmup_s": warmup_s, "studies": rows, "device": str(seg.device),
                      "autocast": str(seg.dtype), "threads": threads,
                      "peak_rss_mb": own_peak_rss_mb(),
                      "peak_gpu_mb": peak_gpu}))


def timing_section(model: Path, n: int, device: str, precision: str, threads: int) -> dict:
    from modicseg.core.convert import save_nifti
    from modicseg.model.synth_adapter import synth_validation_cases

    tmp = Path(tempfile.mkdtemp(prefix="bench-segment-"))
    cases = synth_validation_cases(n, 4242, **HELD_OUT_OPTIONS)
    pairs = []
    for c in cases:
        save_nifti(c.t1, str(tmp / f"{c.name}_T1w.nii.gz"))
        save_nifti(c.t2, str(tmp / f"{c.name}_T2w.nii.gz"))
        pairs.append(f"{tmp / f'{c.name}_T1w.nii.gz'},{tmp / f'{c.name}_T2w.nii.gz'}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    child = subprocess.run([sys.executable, __file__, "_time", str(model), device, precision, str(threads), *pairs],
                           capture_output=True, text=True, env=env, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    # end to end: the CLI on the first study (interpreter start, imports, reading, writing)
    t1, t2 = pairs[0].split(",")
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "modicseg", "segment", "--t1", t1, "--t2", t2, "-o",
                          str(tmp / "out"), "--model", str(model), "--device", device, "--precision", precision],
                         capture_output=True, text=True, env=env)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cli_s"] = time.perf_counter() - t0
    result["cli_ok"] = cli.returncode == 0
    result["children_peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _heights_line(what: str, summary: dict, reference: str) -> str:
    """Mean over cases of the analysis's height on the prediction minus on the reference."""
    return (f"- Vertebral height on the prediction minus on {reference} ({what}, levels named right, mean "
            f"over cases): S1 {_fmt(summary.get('height_diff_mm_S1'), 1)} mm, other levels (median per case) "
            f"{_fmt(summary.get('height_diff_mm_other_median'), 1)} mm")


def _overlap(row: dict) -> str:
    """Precision / recall of the predicted bodies against a mask."""
    return f"{_fmt(row.get('precision_vertebral_body'))} / {_fmt(row.get('recall_vertebral_body'))}"


def markdown(res: dict) -> str:
    lines = []
    labels = ("vertebral_body", "disc", "modic_lesion")
    syn = [k for k in res if k.startswith("synthetic_")]
    if syn:
        lines += ["| held-out synthetic | cases | Dice body | Dice disc | Dice lesion | lesions found | "
                  "false lesions | levels named like the exact labels |", "|---|---|---|---|---|---|---|---|"]
        for k in syn:
            s = res[k]["summary"]
            rows = res[k]["cases"]
            found = sum(r.get("modic_lesion_detected", 0) for r in rows)
            total = sum(r.get("modic_lesion_truth", 0) for r in rows)
            false = sum(r.get("modic_lesion_false", 0) for r in rows)
            lines.append(f"| {k.removeprefix('synthetic_')} | {len(rows)} | "
                         + " | ".join(_fmt(s.get(f"dice_{c}")) for c in labels)
                         + f" | {found}/{total} | {false} | {_named(s)} |")
        lines.append("")
        for k in syn:
            lines.append(_heights_line(f"held-out synthetic, {k.removeprefix('synthetic_')}", res[k]["summary"],
                                       "the exact labels"))
        lines.append("")
    if "real_spine" in res:
        r = res["real_spine"]
        lines += [f"| real-spine case | sequence (channel) | Dice vertebral body | precision / recall | "
                  f"Dice, annotated levels only | "
                  f"surface Dice at {SURFACE_TOLERANCE_MM:g} mm | levels named like the mask | wrong names | "
                  f"lesion parts >= {LESION_MIN_PART_MM3:g} mm³ (all lesion voxels, mm³) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in r["cases"]:
            lines.append(f"| {row['case']} | {row['sequence']} ({row['contrasts']}) | "
                         f"{_fmt(row.get('dice_vertebral_body'))} | {_overlap(row)} | "
                         f"{_fmt(row.get('dice_vertebral_body_annotated_levels'))} | "
                         f"{_fmt(row.get('nsd_vertebral_body'))} | {_named(row)} | {row.get('levels_wrong') or ''} | "
                         f"{_lesion_parts(row)} |")
        lines.append(f"| **mean ({len(r['cases'])} single-contrast cases)** | | "
                     f"**{_fmt(r['summary'].get('dice_vertebral_body'))}** | **{_overlap(r['summary'])}** | "
                     f"**{_fmt(r['summary'].get('dice_vertebral_body_annotated_levels'))}** | "
                     f"**{_fmt(r['summary'].get('nsd_vertebral_body'))}** | **{_named(r['summary'])}** | | "
                     f"**{_lesion_parts(r['summary'])}** |")
        for p in res.get("real_spine_pairs", []):
            lines.append(f"| {p['case']} (mask of {p['case'].split('+')[1]}) | T1+T2 | "
                         f"{_fmt(p.get('dice_vertebral_body'))} | | | | {_named(p)} | {p.get('levels_wrong') or ''} | "
                         f"{_lesion_parts(p)} |")
        lines.append("")
        for p in res.get("real_spine_pairs", []):
            a = p["analysis"]
            verdict = {True: "yes", False: "no", None: "undecided"}[a["eligible"]]
            lines.append(f"- `modicseg analyze` on {p['case']}: {a['lesions']} lesions, eligible: {verdict}"
                         + (f" ({'; '.join(a['qualifying'])})" if a["qualifying"] else "")
                         + (f" ({a['eligibility_reason'].removeprefix('undecided: ')})"
                            if a["eligible"] is None and a.get("eligibility_reason") else ""))
        lines.append("")
        lines.append("By sequence: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["by_sequence"].items()))
        lines.append("")
        lines.append(_heights_line("real-spine, 11 single-contrast volumes", r["summary"], "the mask"))
        lines.append("")
    if "timing" in res:
        t = res["timing"]
        tot = [s["total_s"] for s in t["studies"]]
        net = [s["network_s"] for s in t["studies"]]
        shapes = ", ".join("x".join(map(str, s["shape"])) for s in t["studies"])
        lines += ["| timing | value |", "|---|---|",
                  f"| device / autocast / threads | {t['device']} / {t['autocast']} / {t['threads']} |",
                  f"| studies (T2 shape) | {len(tot)} ({shapes}) |",
                  f"| segment per study, median (max) | {np.median(tot):.2f} s ({max(tot):.2f} s) |",
                  f"| of which network, median | {np.median(net):.2f} s |",
                  f"| model load + warm-up (once per process) | {t['load_model_s']:.2f} s + "
                  f"{t['warmup_s']:.2f} s |",
                  f"| peak RSS (model + all studies) | {t['peak_rss_mb']:.0f} MB |",
                  f"| `modicseg segment` CLI end to end, one study | {t['cli_s']:.2f} s |"]
        if t.get("peak_gpu_mb") is not None:
            lines.append(f"| peak GPU memory | {t['peak_gpu_mb']:.0f} MB |")
        lines.append(f"| load average at start | {res.get('load_average', '-')} |")
        lines.append(f"| load average at end | {res.get('load_average_end', '-')} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_time":
        timing_child(sys.argv[2], sys.argv[6:], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "modicseg-unet-v1")
    parser.add_argument("--synthetic", type=int, default=8, help="held-out synthetic cases (0: skip)")
    parser.add_argument("--seed", type=int, default=7777)
    parser.add_argument("--real", type=Path, default=Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared"))
                        / "real-spine")
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--timing", type=int, default=5, help="studies to time (0: skip)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    res: dict = {"load_average": ", ".join(f"{v:.1f}" for v in os.getloadavg())}
    res.update(dice_sections(args.model, args.synthetic, args.seed, None if args.no_real else args.real,
                             args.device, args.precision))
    if args.timing:
        res["timing"] = timing_section(args.model, args.timing, args.device, args.precision, args.threads)
        if torch.cuda.is_available() and args.device == "cpu":
            res["timing_cuda"] = timing_section(args.model, args.timing, "cuda", "auto", args.threads)
    res["load_average_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text = markdown(res)
    if "timing_cuda" in res:
        text += "\n\nCUDA:\n\n" + markdown({"timing": res["timing_cuda"]})
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
