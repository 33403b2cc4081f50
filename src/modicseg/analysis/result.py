"""The result of ``analyze``: per-vertebra and per-lesion records, eligibility, images, provenance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.eligibility import Eligibility
from modicseg.core.image import LabelImage, ScalarImage


@dataclass
class VertebraRecord:
    """One vertebral body as reported."""

    label: int  # 1 = most superior body found
    level: str | None
    height_mm: float
    volume_mm3: float
    ap_depth_mm: float
    centre_ras: list[float]
    axis_ras: list[float]
    truncated: bool
    axis_method: str
    reference_t1: float | None
    reference_t2: float | None
    reference_voxels: int
    reference_method: str


@dataclass
class LesionRecord:
    """One Modic change as reported."""

    id: int
    level: str | None
    vertebra: int  # label of its vertebra
    endplate: str
    type: str
    primary_type: str | None
    secondary_type: str | None
    type_fractions: dict[str, float]
    unclassified_fraction: float
    volume_mm3: float
    fraction_of_vertebral_volume: float
    craniocaudal_extent_mm: float
    height_fraction: float
    ap_depth_mm: float
    ap_depth_fraction: float
    extent_grade: str
    centre_ras: list[float]
    voxels: int
    # since schema 1.2.0: both extent definitions, the height fraction's uncertainty, the borderline flag
    extent_of_change_mm: float | None = None  # the signal change's own cranio-caudal span
    extent_from_endplate_mm: float | None = None  # from the body's outer surface (cortical endplate included)
    height_fraction_uncertainty: float | None = None  # one voxel along the vertebra's axis / its height
    borderline: bool = False  # height fraction within that uncertainty of the trial threshold


@dataclass
class Report:
    """Everything ``modicseg analyze`` reports; ``write(folder)`` writes the files."""

    vertebrae: list[VertebraRecord]
    lesions: list[LesionRecord]
    eligibility: Eligibility
    typing: dict[str, Any]
    provenance: dict[str, Any]
    config: AnalysisConfig
    labels: LabelImage  # 0 background, 1 body, 2 disc, 3 lesion, on the reference (T2) grid
    types: LabelImage  # 0 none, 1/2/3 Modic type, 4 unclassified lesion voxel
    lesion_map: np.ndarray = field(repr=False)  # 0 none, i = lesion id i
    instances: np.ndarray = field(repr=False)  # 0 none, i = vertebra label i
    t1: ScalarImage | None = field(default=None, repr=False)  # on the reference grid
    t2: ScalarImage | None = field(default=None, repr=False)
    reference_stack: Any = field(default=None, repr=False)  # io.stacks.Stack of the reference series
    dicom_seg: dict[str, Any] = field(default_factory=lambda: {"written": False, "reason": "not written yet"})
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def lesion(self, level: str, endplate: str) -> list[LesionRecord]:
        """Lesions at one level and endplate."""
        return [les for les in self.lesions if les.level == level and les.endplate == endplate]

    def to_dict(self) -> dict[str, Any]:
        """The content of report.json (see docs/report.md)."""
        from modicseg.analysis.config import EXTENT_DEFINITIONS
        from modicseg.report.schema import SCHEMA_VERSION

        definition = self.config.grading.extent_definition
        return _clean({
            "schema_version": SCHEMA_VERSION,
            "provenance": self.provenance,
            "typing": self.typing,
            "measures": {"extent_definition": definition, "extent": EXTENT_DEFINITIONS[definition],
                         "height_fraction": "craniocaudal_extent_mm / the vertebral body's height along its axis",
                         "height_fraction_uncertainty": "one voxel along the vertebra's axis / its height"},
            "vertebrae": [vars(v) for v in self.vertebrae],
            "lesions": [vars(les) for les in self.lesions],
            "eligibility": {"eligible": self.eligibility.eligible, "status": self.eligibility.status,
                            "reasons": self.eligibility.reasons,
                            "qualifying_lesions": self.eligibility.qualifying_lesions,
                            "borderline_lesions": self.eligibility.borderline_lesions,
                            "criteria": {"levels": list(self.config.eligibility.levels),
                                         "endplates": ["superior", "inferior"],
                                         "type": f"primary or secondary type {self.config.eligibility.required_type}",
                                         "min_height_fraction": self.config.eligibility.min_height_fraction,
                                         "extent_definition": definition,
                                         "borderline_voxels": self.config.eligibility.borderline_voxels}},
            "outputs": {"labels_seg": self.dicom_seg},
            "config": self.config.to_dict(),
            "warnings": self.warnings,
        })

    def write(self, folder: str | Path) -> list[Path]:
        """Write report.json, CSVs, NIfTI label/type maps, DICOM SEG and qc.png, all or nothing."""
        from modicseg.report.writers import write_report

        return write_report(self, Path(folder))


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, floats rounded, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if not math.isfinite(value) else round(value, 4)
    return value
