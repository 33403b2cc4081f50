"""``modicseg compare BASELINE FOLLOWUP -o OUT``: what changed between two time points.

BASELINE and FOLLOWUP are studies (DICOM or BIDS-like NIfTI folders, analysed now) or finished
``modicseg analyze`` output folders (reused).  The follow-up is registered rigidly to the baseline
(vertebral bodies, then T2), lesions are paired by level and endplate (and overlap), and each is
classified: same type, type change (e.g. 1 -> 2), regressed, or new.  Writes OUT/change.json,
change.csv, qc.png, and OUT/baseline/, OUT/followup/ for the analyses run now, all or nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modicseg.io.atomic import atomic_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="baseline vs follow-up: lesion changes and type transitions",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, metavar="BASELINE", help="baseline study or analysis folder")
    parser.add_argument("followup", type=Path, metavar="FOLLOWUP", help="follow-up study or analysis folder")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--baseline-labels", type=Path, metavar="FILE",
                        help="label map of the baseline study (analysed instead of segmenting)")
    parser.add_argument("--followup-labels", type=Path, metavar="FILE",
                        help="label map of the follow-up study (analysed instead of segmenting)")
    parser.add_argument("--baseline-study", type=Path, metavar="DIR",
                        help="the study behind a reused baseline analysis (patient check, T2 for registration)")
    parser.add_argument("--followup-study", type=Path, metavar="DIR",
                        help="the study behind a reused follow-up analysis")
    parser.add_argument("--model", "--checkpoint", dest="model", type=Path, metavar="DIR",
                        help="segmentation model checkpoint folder (default: the shipped model)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="analysis thresholds (YAML)")
    parser.add_argument("--subject", metavar="NAME", help="pseudonymous subject name written into change.json")
    parser.add_argument("--allow-different-patients", action="store_true",
                        help="compare even when the DICOM patient IDs differ (a warning is recorded)")
    parser.add_argument("--no-refine", action="store_true",
                        help="register with vertebral-body landmarks only (no intensity refinement)")
    parser.add_argument("--no-qc", action="store_true", help="do not draw qc.png")
    parser.set_defaults(func=run)


def summary(change) -> str:
    """A few lines for the terminal."""
    reg = change.registration
    lines = [f"registration: {reg.method}; body Dice {reg.body_dice.get('chosen') or 0:.3f}"]
    for row in change.rows:
        volume = f"{row['volume_baseline_mm3']:.0f} -> {row['volume_followup_mm3']:.0f} mm³"
        lines.append(f"  {row['level'] or '?':>4} {row['endplate'] or '':<9} {row['status']:<12} "
                     f"{row['transition']:<12} {volume}")
    if not change.rows:
        lines.append("no lesion at either time point")
    s = change.summary
    lines.append(f"type-1 volume: {s['type1_volume_baseline_mm3']:.0f} -> {s['type1_volume_followup_mm3']:.0f} mm³; "
                 f"type 1 -> 2: {s['type1_to_type2']} of {s['baseline_type1_lesions']}")
    lines += [f"warning: {w}" for w in change.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from modicseg.longitudinal.pipeline import Side, compare, write_comparison

    change, analysed = compare(
        Side(args.baseline, study=args.baseline_study, labels=args.baseline_labels),
        Side(args.followup, study=args.followup_study, labels=args.followup_labels),
        config=args.config, model=args.model, subject=args.subject,
        allow_different_patients=args.allow_different_patients, refine=not args.no_refine)
    with atomic_output_dir(args.output) as tmp:
        write_comparison(change, analysed, tmp, figure=not args.no_qc)
    print(summary(change))
    print(f"wrote {args.output}/ (change.json, change.csv{'' if args.no_qc else ', qc.png'}"
          + "".join(f", {name}/" for name in analysed) + ")")
    return 0
