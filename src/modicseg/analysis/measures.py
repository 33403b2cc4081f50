"""Per-lesion measures relative to its vertebra, and the Udby extent grade."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import GradingConfig
from modicseg.analysis.lesions import Lesion
from modicseg.analysis.vertebrae import Vertebra


@dataclass
class LesionMeasures:
    """Size of a lesion in mm / mm³ and as fractions of its vertebral body."""

    volume_mm3: float
    fraction_of_vertebral_volume: float
    craniocaudal_extent_mm: float  # along the vertebra's own axis, by ``grading.extent_definition``
    height_fraction: float  # extent / vertebral height
    extent_of_change_mm: float  # the signal change's own span
    extent_from_endplate_mm: float  # from the body's outer surface at the endplate (cortical endplate included)
    height_fraction_uncertainty: float | None  # one voxel along the vertebra's axis / vertebral height
    ap_depth_mm: float
    ap_depth_fraction: float  # AP extent / vertebral AP depth
    extent_grade: str  # Udby A / B / C


def extent_grade(height_fraction: float, config: GradingConfig) -> str:
    """Udby grade: A below 25 %, B from 25 % to 50 %, C above 50 % of vertebral height (defaults)."""
    if height_fraction < config.grade_a_below:
        return "A"
    if height_fraction > config.grade_c_above:
        return "C"
    return "B"


def _ratio(value: float, reference: float) -> float:
    return float(min(value / reference, 1.0)) if reference > 0 else float("nan")


def measure_lesion(lesion: Lesion, vertebra: Vertebra, config: GradingConfig,
                   affine: np.ndarray | None = None) -> LesionMeasures:
    """Measures of one lesion on its vertebra.

    The cranio-caudal extent is the lesion's span along the vertebra's axis (sub-voxel, see
    ``lesions.craniocaudal_extents``): of the signal change itself, or from the endplate's outer
    surface, as ``config.extent_definition`` says; the AP depth is the span of its voxels (each a
    box, not a point) projected on the vertebra's AP axis.  With the grid's ``affine``, the height
    fraction's uncertainty is one voxel along the vertebra's axis over its height.
    """
    extent = lesion.change_extent_mm if config.extent_definition == "change" else lesion.craniocaudal_extent_mm
    depth = lesion.ap_range_mm[1] - lesion.ap_range_mm[0]
    height_fraction = _ratio(extent, vertebra.height_mm)
    uncertainty = None
    if affine is not None and vertebra.height_mm > 0:
        uncertainty = 2 * geo.half_extent_along(affine, vertebra.axis_ras) / vertebra.height_mm
    return LesionMeasures(
        volume_mm3=lesion.volume_mm3,
        fraction_of_vertebral_volume=_ratio(lesion.volume_mm3, vertebra.volume_mm3),
        craniocaudal_extent_mm=float(extent),
        height_fraction=height_fraction,
        extent_of_change_mm=float(lesion.change_extent_mm),
        extent_from_endplate_mm=float(lesion.craniocaudal_extent_mm),
        height_fraction_uncertainty=uncertainty,
        ap_depth_mm=float(depth),
        ap_depth_fraction=_ratio(depth, vertebra.ap_depth_mm),
        extent_grade=extent_grade(height_fraction, config),
    )
