"""The comparison result: rows per lesion, the subject summary, registration (``writers.write_change``
writes its files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modicseg.core.jsonable import json_ready
from modicseg.core.version import __version__
from modicseg.longitudinal.registration import Registration
from modicseg.longitudinal.timepoint import Timepoint

SCHEMA_VERSION = "modicseg-change/1"
CHANGE_JSON, CHANGE_CSV, QC_PNG = "change.json", "change.csv", "qc.png"


@dataclass
class ChangeReport:
    """Everything ``modicseg compare`` reports."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    registration: Registration
    baseline: Timepoint
    followup: Timepoint
    same_patient: bool | None
    subject: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The content of change.json."""
        return json_ready({
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "modicseg", "version": __version__},
            "subject": self.subject,
            "identity": {"same_patient": self.same_patient,
                         "method": "DICOM PatientID of both studies compared as keyed hashes in memory "
                                   "(never stored); null when either study has no DICOM PatientID"},
            "baseline": _timepoint_summary(self.baseline),
            "followup": _timepoint_summary(self.followup),
            "registration": self.registration.to_dict(),
            "summary": self.summary,
            "lesions": self.rows,
            "definitions": {
                "status": "same type | type change | regressed (no follow-up lesion) | new (no baseline lesion)",
                "type1_volume": "lesion volume x share of its voxels typed 1",
                "type1_to_type2": "baseline lesion with a type-1 component whose follow-up is primarily type 2 "
                                  "(a 2/1 baseline counts only when no type 1 is left)",
                "size_change": "volume change beyond +-20 %: grown / shrunk, else stable",
            },
            "warnings": self.warnings,
        })


def _timepoint_summary(tp: Timepoint) -> dict[str, Any]:
    provenance = tp.report.provenance
    return {
        "analysis": tp.source,
        "lesions": len(tp.lesions),
        "vertebrae": len(tp.vertebrae),
        "levels": [v.level for v in tp.vertebrae],
        "analysis_version": provenance.version,
        "segmentation": provenance.segmentation.source,
        "eligible": tp.report.eligibility.eligible,
    }


