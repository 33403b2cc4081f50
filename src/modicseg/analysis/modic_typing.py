"""Modic typing from T1 and T2 signal relative to normal marrow of the same vertebra.

Reference: the median T1 and T2 of the vertebra's body voxels that lie at least
``reference_erosion_mm`` inside the body (away from cortex and field-of-view edges) and at least
``reference_lesion_margin_mm`` from any lesion.  Each lesion voxel's T1 and T2 ratios to that
reference fall in a configured band (type 1, 2 or 3) or in none (unclassified).  A lesion's type
is its most frequent voxel type, plus a secondary type when that type's share of the typed
voxels reaches ``secondary_min_fraction``; mixed types are written primary first ("2/1").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import MODIC_TYPES, TypingConfig
from modicseg.analysis.vertebrae import VertebraSet

#: Code of a lesion voxel that no band claims, in the per-voxel type map.
UNCLASSIFIED_CODE = 4
#: Mixed types that exist (primary, secondary).
MIXED_TYPES = {("1", "2"), ("2", "1"), ("2", "3"), ("3", "2")}
UNCLASSIFIED = "unclassified"


@dataclass
class MarrowReference:
    """Normal-appearing marrow signal of one vertebra."""

    t1: float | None
    t2: float | None
    voxels: int
    method: str  # how it was obtained


@dataclass
class LesionType:
    """Type of one lesion from its voxels."""

    type: str  # "1", "2", "3", "1/2", "2/1", "2/3", "3/2" or "unclassified"
    primary_type: str | None
    secondary_type: str | None
    type_fractions: dict[str, float]  # share of the typed voxels, per type
    unclassified_fraction: float  # share of all voxels that no band claims


def reference_marrow(t1: np.ndarray | None, t2: np.ndarray | None, vset: VertebraSet, lesion_mask: np.ndarray,
                     affine: np.ndarray, config: TypingConfig) -> dict[int, MarrowReference]:
    """Reference per vertebra label; relaxes the erosion, then borrows from neighbours when too few voxels."""
    spacing = geo.spacing_of(affine)
    refs: dict[int, MarrowReference] = {}
    for vertebra in vset.vertebrae:
        body = vset.instances == vertebra.label
        box = geo.bounding_box(body, pad=int(np.ceil(config.reference_lesion_margin_mm / spacing.min())) + 1)
        body_box = body[box]
        inside = geo.distance_inside_mm(body_box, spacing)
        far_from_lesion = geo.distance_to_mm(lesion_mask[box], spacing)
        ref = MarrowReference(None, None, 0, "none")
        for erosion, margin, method in (
                (config.reference_erosion_mm, config.reference_lesion_margin_mm, "eroded"),
                (config.reference_erosion_mm / 2, config.reference_lesion_margin_mm / 2, "relaxed erosion"),
                (0.0, 0.0, "whole body")):
            selected = body_box & (inside > erosion) & (far_from_lesion > margin)
            count = int(selected.sum())
            if count >= config.min_reference_voxels:
                ref = MarrowReference(
                    t1=None if t1 is None else float(np.median(t1[box][selected])),
                    t2=None if t2 is None else float(np.median(t2[box][selected])),
                    voxels=count, method=method)
                break
        refs[vertebra.label] = ref
    for label, ref in refs.items():
        if ref.voxels == 0:
            neighbours = [refs[n] for n in (label - 1, label + 1) if n in refs and refs[n].voxels > 0]
            if neighbours:
                refs[label] = MarrowReference(
                    t1=None if t1 is None else float(np.mean([n.t1 for n in neighbours])),
                    t2=None if t2 is None else float(np.mean([n.t2 for n in neighbours])),
                    voxels=0, method="neighbouring vertebrae")
    return refs


def classify_ratios(r1: np.ndarray, r2: np.ndarray, config: TypingConfig) -> np.ndarray:
    """Per-voxel codes: 1, 2, 3 by band (first match in type order), UNCLASSIFIED_CODE otherwise."""
    codes = np.full(np.shape(r1), UNCLASSIFIED_CODE, dtype=np.uint8)
    for name in MODIC_TYPES:
        band = config.bands.get(name)
        if band is None:
            continue
        hit = band.contains(r1, r2) & (codes == UNCLASSIFIED_CODE)
        codes[hit] = int(name)
    return codes


def lesion_type(codes: np.ndarray, config: TypingConfig) -> LesionType:
    """Primary (and secondary) type of a lesion from its voxel codes."""
    total = len(codes)
    counts = {name: int(np.count_nonzero(codes == int(name))) for name in MODIC_TYPES}
    typed = sum(counts.values())
    unclassified_fraction = 1.0 - typed / total if total else 1.0
    if typed == 0:
        return LesionType(UNCLASSIFIED, None, None, dict.fromkeys(MODIC_TYPES, 0.0), unclassified_fraction)
    fractions = {name: counts[name] / typed for name in MODIC_TYPES}
    ranked = sorted(MODIC_TYPES, key=lambda n: (-counts[n], n))
    primary = ranked[0]
    secondary = None
    for name in ranked[1:]:
        if (primary, name) in MIXED_TYPES and fractions[name] >= config.secondary_min_fraction:
            secondary = name
            break
    text = primary if secondary is None else f"{primary}/{secondary}"
    return LesionType(text, primary, secondary, fractions, unclassified_fraction)


def unclassified_type() -> LesionType:
    """The type of a lesion when typing is not possible."""
    return LesionType(UNCLASSIFIED, None, None, dict.fromkeys(MODIC_TYPES, 0.0), 1.0)


def type_lesion_voxels(t1: np.ndarray, t2: np.ndarray, ijk: np.ndarray, ref: MarrowReference,
                       config: TypingConfig, depth_mm: np.ndarray | None = None,
                       affine: np.ndarray | None = None) -> np.ndarray:
    """Voxel codes of one lesion given its vertebra's reference.

    ``depth_mm``: each voxel's distance inside its body.  Voxels within ``config.rim_mm`` of the
    surface mix lesion signal with disc or cortex (partial volume); they take the code of the
    nearest deeper lesion voxel when enough of the lesion lies deeper.
    """
    if ref.t1 is None or ref.t2 is None or ref.t1 <= 0 or ref.t2 <= 0:
        return np.full(len(ijk), UNCLASSIFIED_CODE, dtype=np.uint8)
    index = tuple(ijk.T)
    r1 = t1[index] / ref.t1
    r2 = t2[index] / ref.t2
    codes = classify_ratios(r1, r2, config)
    if depth_mm is None or affine is None or config.rim_mm <= 0:
        return codes
    rim = depth_mm <= config.rim_mm
    core = ~rim
    if rim.any() and core.sum() >= max(3, config.min_core_fraction * len(codes)):
        from scipy.spatial import cKDTree

        points = geo.world_points(affine, ijk)
        _, nearest = cKDTree(points[core]).query(points[rim])
        codes[rim] = codes[core][nearest]
    return codes
