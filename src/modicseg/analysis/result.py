"""The result of the analysis: per-vertebra and per-lesion records, eligibility, images, provenance.

A plain data object: turning it into report.json and files is the report stage's job (``modicseg.report.writers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # since schema 1.3.0: probability that the lesion is real (analysis.confidence) and what it was computed from
    confidence: float | None = None
    confidence_inputs: dict[str, float] | None = None


@dataclass
class Report:
    """Everything ``modicseg analyze`` reports (``report.writers``: ``report_dict(report)`` is report.json,
    ``write_report(report, folder)`` writes the files)."""

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
    uncertainty: ScalarImage | None = field(default=None, repr=False)  # the network's per-voxel uncertainty (0..1)
    unreported_lesion_evidence: float | None = None  # analysis.confidence.unreported_lesion_evidence (with the network)
    reference_stack: Any = field(default=None, repr=False)  # io.stacks.Stack of the reference series
    dicom_seg: dict[str, Any] = field(default_factory=lambda: {"written": False, "reason": "not written yet"})
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def lesion(self, level: str, endplate: str) -> list[LesionRecord]:
        """Lesions at one level and endplate."""
        return [les for les in self.lesions if les.level == level and les.endplate == endplate]
