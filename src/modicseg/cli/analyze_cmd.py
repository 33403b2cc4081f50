"""``modicseg analyze STUDY -o OUT``: levels, Modic lesions, types, measures, grades and trial eligibility.

Writes OUT/report.json, lesions.csv, vertebrae.csv, labels.nii.gz, types.nii.gz, t1.nii.gz and
t2.nii.gz (the images on the label grid: ``review pack OUT`` needs nothing else), labels_seg.dcm
(DICOM input) and qc.png, all or nothing.  ``--labels FILE`` analyses a given label map
(0 background, 1 vertebral body, 2 disc, 3 lesion) instead of running the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modicseg.cli.common import add_study_arguments, study_request


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="find, type and measure Modic changes; trial eligibility",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="label map (NIfTI: 0 background, 1 body, 2 disc, 3 lesion) to analyse instead "
                             "of segmenting")
    parser.add_argument("--model", "--checkpoint", dest="model", type=Path, metavar="DIR",
                        help="segmentation model checkpoint folder (default: the shipped model)")
    parser.add_argument("--device", default="auto", help="network device: auto, cpu or cuda (default auto)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="analysis thresholds (YAML, see configs/analysis.yaml)")
    parser.add_argument("--lowest-level", metavar="LEVEL",
                        help="name of the lowest vertebra in view when it is not S1 (e.g. L5)")
    parser.add_argument("--lumbar-count", type=int, choices=[4, 5, 6], metavar="N",
                        help="lumbar vertebrae of this spine, 4, 5 or 6 (default 5): with 6 the body above S1 "
                             "is L6, with 4 it is L4")
    parser.add_argument("--thoracic-count", type=int, choices=[12, 13], metavar="N",
                        help="thoracic vertebrae of this spine, 12 or 13 (default 12): with 13 the body above L1 "
                             "is T13")
    parser.add_argument("--register", choices=["auto", "always", "never"], default="auto",
                        help="T1-to-T2 rigid registration (default: only for different frames of reference)")
    parser.add_argument("--no-confidence", action="store_true",
                        help="skip the lesion confidence and uncertainty.nii.gz (one network pass instead of two)")
    parser.add_argument("--no-qc", action="store_true", help="do not draw qc.png")
    parser.add_argument("--no-seg", action="store_true", help="do not write the DICOM SEG")
    parser.add_argument("--seg-keep-patient-identifiers", action="store_true",
                        help="copy these from the source images into the DICOM SEG: the patient's name, ID, "
                             "birth date and sex, the study date and time, the accession number, the study ID and "
                             "the referring physician's name (default: all empty); nothing else identifying is "
                             "ever copied, and no other output ever holds them")
    parser.set_defaults(func=run)


def summary(report) -> str:
    """A few lines for the terminal."""
    lines = ["vertebrae: " + "  ".join(f"{v.level or '?'} {v.height_mm:.1f} mm" for v in report.vertebrae)]
    if not report.lesions:
        lines.append("no Modic change found")
    for les in report.lesions:
        lines.append(f"  lesion {les.id}: {les.level or '?'} {les.endplate:<8} type {les.type:<12} "
                     f"{les.volume_mm3:8.0f} mm³  height {100 * les.height_fraction:4.0f} %  grade {les.extent_grade}"
                     f"{'' if les.confidence is None else f'  confidence {les.confidence:.2f}'}"
                     f"{'  (borderline: within one voxel of the trial threshold)' if les.borderline else ''}")
    verdict = {"eligible": "ELIGIBLE", "not eligible": "not eligible", "borderline": "BORDERLINE: review",
               "undecided": "undecided"}[report.eligibility.status]
    lines.append(f"eligibility: {verdict}")
    lines += [f"  - {reason}" for reason in report.eligibility.reasons]
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report

    report = analyze(study_request(args), labels=args.labels, config=args.config, lowest_level=args.lowest_level,
                     model=args.model, register=args.register, device=args.device, lumbar_count=args.lumbar_count,
                     thoracic_count=args.thoracic_count, confidence=not args.no_confidence)
    write_report(report, args.output, qc=not args.no_qc, dicom_seg=not args.no_seg,
                 seg_keeps_patient_identifiers=args.seg_keep_patient_identifiers)
    print(summary(report))
    if not report.dicom_seg.get("written"):
        print(f"DICOM SEG not written: {report.dicom_seg.get('reason')}")
    images = "".join(f", {r}.nii.gz" for r, image in (("t1", report.t1), ("t2", report.t2)) if image is not None)
    images += ", uncertainty.nii.gz" if report.uncertainty is not None else ""
    print(f"wrote {args.output}/ (report.json, lesions.csv, vertebrae.csv, labels.nii.gz, types.nii.gz{images}"
          f"{', labels_seg.dcm' if report.dicom_seg.get('written') else ''}{'' if args.no_qc else ', qc.png'})")
    return 0
