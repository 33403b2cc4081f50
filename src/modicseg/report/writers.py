"""Write a report's files into a folder, all or nothing.

``report_dict(report)`` is the content of report.json; ``write_report(report, folder)`` writes
report.json, lesions.csv, vertebrae.csv, labels.nii.gz, types.nii.gz, t1.nii.gz and t2.nii.gz (the
images analysed, on the same reference grid: what ``review pack`` shows a reader), labels_seg.dcm
(when the reference series came from DICOM), uncertainty.nii.gz (the network's per-voxel uncertainty,
when it ran with confidence) and qc.png.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modicseg.analysis.config import EXTENT_DEFINITIONS
from modicseg.core.convert import save_nifti
from modicseg.core.jsonable import json_ready
from modicseg.core.labels import ENDPLATES, MODIC_TYPES
from modicseg.io.atomic import atomic_output_dir
from modicseg.report.models import SCHEMA_VERSION, ReportDocument

if TYPE_CHECKING:
    from modicseg.analysis.result import Report

log = logging.getLogger(__name__)

LESION_COLUMNS = ["id", "level", "endplate", "type", "primary_type", "secondary_type", "fraction_type1",
                  "fraction_type2", "fraction_type3", "unclassified_fraction", "volume_mm3",
                  "fraction_of_vertebral_volume", "craniocaudal_extent_mm", "height_fraction", "ap_depth_mm",
                  "ap_depth_fraction", "extent_grade", "qualifies_for_trial", "vertebra", "voxels",
                  "extent_of_change_mm", "extent_from_endplate_mm", "height_fraction_uncertainty", "borderline",
                  "confidence"]
VERTEBRA_COLUMNS = ["label", "level", "height_mm", "volume_mm3", "ap_depth_mm", "truncated", "axis_method",
                    "reference_t1", "reference_t2", "reference_voxels", "reference_method", "lesions"]


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else round(value, 4)
    return value


def write_csv(path: Path, columns: list[str] | tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Rows as CSV in a fixed column order: None and non-finite floats empty, floats rounded to 4 places."""
    columns = list(columns)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(row.get(c)) for c in columns})


def save_scaled_uint8(image: Any, path: Path) -> None:
    """A 0..1 map as NIfTI stored in 8 bits with its scale factor (steps of 1/255; a quarter of float32's size)."""
    import nibabel as nib
    import numpy as np

    from modicseg.core.convert import to_nibabel

    steps = np.round(np.clip(np.asarray(image.array, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    nii = to_nibabel(image.with_array(steps))
    nii.header.set_slope_inter(1.0 / 255.0, 0.0)
    nib.save(nii, str(path))


def report_dict(report: Report) -> dict[str, Any]:
    """The content of report.json (see docs/report.md)."""
    definition = report.config.grading.extent_definition
    return json_ready({
        "schema_version": SCHEMA_VERSION,
        "provenance": report.provenance,
        "typing": report.typing,
        "measures": {"extent_definition": definition, "extent": EXTENT_DEFINITIONS[definition],
                     "height_fraction": "craniocaudal_extent_mm / the vertebral body's height along its axis",
                     "height_fraction_uncertainty": "one voxel along the vertebra's axis / its height"},
        "vertebrae": [vars(v) for v in report.vertebrae],
        "lesions": [vars(les) for les in report.lesions],
        "eligibility": {"eligible": report.eligibility.eligible, "status": report.eligibility.status,
                        "reasons": report.eligibility.reasons,
                        "qualifying_lesions": report.eligibility.qualifying_lesions,
                        "borderline_lesions": report.eligibility.borderline_lesions,
                        "verdict_confidence": report.eligibility.verdict_confidence,
                        "low_confidence_lesions": report.eligibility.low_confidence_lesions,
                        "criteria": {"levels": list(report.config.eligibility.levels),
                                     "endplates": list(ENDPLATES),
                                     "type": f"primary or secondary type {report.config.eligibility.required_type}",
                                     "min_height_fraction": report.config.eligibility.min_height_fraction,
                                     "extent_definition": definition,
                                     "borderline_voxels": report.config.eligibility.borderline_voxels,
                                     "min_confidence": report.config.eligibility.min_confidence}},
        "outputs": {"labels_seg": report.dicom_seg,
                    "uncertainty": "uncertainty.nii.gz" if report.uncertainty is not None else None},
        "config": report.config.to_dict(),
        "warnings": report.warnings,
    })


def report_document(report: Report) -> ReportDocument:
    """report.json as its typed model (:class:`modicseg.report.models.ReportDocument`)."""
    return ReportDocument.from_dict(report_dict(report), source="report.json")


def lesion_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for lesion in report.lesions:
        row = dict(vars(lesion))
        for name in MODIC_TYPES:
            row[f"fraction_type{name}"] = lesion.type_fractions.get(name, 0.0)
        row["qualifies_for_trial"] = lesion.id in report.eligibility.qualifying_lesions
        rows.append(row)
    return rows


def vertebra_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for vertebra in report.vertebrae:
        row = dict(vars(vertebra))
        row["lesions"] = sum(1 for les in report.lesions if les.vertebra == vertebra.label)
        rows.append(row)
    return rows


def write_report(report: Report, folder: str | Path, qc: bool = True, dicom_seg: bool = True,
                 seg_keeps_patient_identifiers: bool = False, images: bool = True) -> list[Path]:
    """Write every output file of ``report`` into ``folder`` (nothing is left there on failure).

    ``images``: also write the T1 and T2 (the fluid-sensitive image) on the label grid as
    t1.nii.gz / t2.nii.gz (voxels and affine only), so that ``review pack`` needs nothing else.

    ``seg_keeps_patient_identifiers``: the DICOM SEG keeps the source's patient name, ID, birth
    date and sex, study date and time, accession number, study ID and referring physician's name
    (``dicom_seg.SEG_PATIENT_STUDY_IDENTIFIERS``; only on explicit request; every other output never
    holds them).
    """
    from modicseg.report.dicom_seg import seg_unavailable_reason, write_dicom_seg

    folder = Path(folder)
    names = []
    with atomic_output_dir(folder) as tmp:
        save_nifti(report.labels, str(tmp / "labels.nii.gz"))
        save_nifti(report.types, str(tmp / "types.nii.gz"))
        names += ["labels.nii.gz", "types.nii.gz"]
        if report.uncertainty is not None:
            save_scaled_uint8(report.uncertainty, tmp / "uncertainty.nii.gz")
            names.append("uncertainty.nii.gz")
        for name, image in (("t1.nii.gz", report.t1), ("t2.nii.gz", report.t2)):
            if images and image is not None:
                save_nifti(image, str(tmp / name))
                names.append(name)
        write_csv(tmp / "lesions.csv", LESION_COLUMNS, lesion_rows(report))
        write_csv(tmp / "vertebrae.csv", VERTEBRA_COLUMNS, vertebra_rows(report))
        names += ["lesions.csv", "vertebrae.csv"]
        if dicom_seg:
            reason = seg_unavailable_reason(report.labels, report.reference_stack)
            if reason is None:
                try:
                    write_dicom_seg(report.labels, report.reference_stack, tmp / "labels_seg.dcm",
                                    keep_patient_identifiers=seg_keeps_patient_identifiers)
                    report.dicom_seg = {"written": True, "reason": None}
                    names.append("labels_seg.dcm")
                except Exception as exc:  # a SEG failure must not cost the user the whole report
                    message = f"DICOM SEG could not be written ({type(exc).__name__}: {exc})"
                    warnings.warn(message, stacklevel=2)
                    report.dicom_seg = {"written": False, "reason": message}
            else:
                report.dicom_seg = {"written": False, "reason": reason}
        else:
            report.dicom_seg = {"written": False, "reason": "not requested"}
        if qc:
            from modicseg.report.qc import render_qc

            render_qc(report, tmp / "qc.png")
            names.append("qc.png")
        data = report_dict(report)
        from modicseg.report.schema import validate_report, validating

        if validating():
            validate_report(data)
        (tmp / "report.json").write_text(ReportDocument.from_dict(data, source=folder / "report.json").to_json())
        names.append("report.json")
    return [folder / name for name in names]
