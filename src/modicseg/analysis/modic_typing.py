"""Modic typing from T1 and T2 signal relative to normal marrow of the same vertebra.

"T2" here is the fluid-sensitive image: a T2 (bands ``typing.bands``), or a fat-suppressed image
such as a STIR, on which normal marrow is dark and fat is suppressed (``typing.stir_bands``).

Reference: the median T1 and T2 of the vertebra's body voxels that lie at least
``reference_erosion_mm`` inside the body (away from cortex and field-of-view edges) and at least
``reference_lesion_margin_mm`` from any lesion.  Each lesion voxel's T1 and T2 ratios to that
reference fall in a configured band (type 1, 2 or 3) or in none (unclassified).  A lesion's type
is its most frequent voxel type, plus a secondary type when that type forms a spatially coherent
component (:func:`lesion_type`): a connected region of at least ``secondary_min_volume_mm3``, or
regions covering at least ``secondary_min_footprint_fraction`` of the lesion's endplate footprint
(a thin band of oedema against the endplate), or holding ``secondary_min_fraction`` of the typed
voxels; regions under ``secondary_noise_floor_mm3`` never count.  Mixed types are written primary
first ("2/1").

Voxels at the body's surface (``rim_mm``) can mix the lesion with cortex and disc (partial
volume); they take the type of the nearest deeper lesion voxel when such a mix explains their
signal (:func:`partial_volume_explains`), and keep their own type when it does not (oedema's low
T1 under fat cannot come from fat, dark cortex and at most half a voxel of disc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import TypeBand, TypingConfig
from modicseg.analysis.vertebrae import VertebraSet
from modicseg.core.labels import MIXED_TYPES, MODIC_TYPES, UNCLASSIFIED, UNCLASSIFIED_CODE

#: Mixed types that exist (primary, secondary).
MIXED_PAIRS = {tuple(name.split("/")) for name in MIXED_TYPES}


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


def classify_ratios(r1: np.ndarray, r2: np.ndarray, config: TypingConfig,
                    bands: dict[str, TypeBand] | None = None) -> np.ndarray:
    """Per-voxel codes: 1, 2, 3 by band (first match in type order), UNCLASSIFIED_CODE otherwise.

    ``bands``: the band set to use (default ``config.bands``, the T2 bands; ``config.stir_bands``
    for a STIR or other fat-suppressed fluid-sensitive image).
    """
    bands = config.bands if bands is None else bands
    codes = np.full(np.shape(r1), UNCLASSIFIED_CODE, dtype=np.uint8)
    for name in MODIC_TYPES:
        band = bands.get(name)
        if band is None:
            continue
        hit = band.contains(r1, r2) & (codes == UNCLASSIFIED_CODE)
        codes[hit] = int(name)
    return codes


@dataclass
class Component:
    """How coherent the voxels of one type are within a lesion."""

    largest_region_mm3: float  # largest connected region (26-connectivity)
    footprint_fraction: float  # share of the lesion's endplate footprint its regions above the floor cover
    coherent_fraction: float  # share of the lesion's typed voxels in regions above the floor


#: Connectivity of a type's regions: 26 (a thin band on a tilted endplate is a staircase of voxels).
_REGION_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


def footprint_cells(ijk: np.ndarray, affine: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Cell keys of voxels projected along the vertebra's ``axis`` onto the endplate plane, on a grid
    of the finest voxel size (the lesion's endplate footprint is the set of its voxels' cells)."""
    axis = geo.unit(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = geo.unit(np.cross(axis, helper))
    e2 = np.cross(axis, e1)
    points = geo.world_points(affine, ijk)
    fine = float(geo.spacing_of(affine).min())
    cells = np.round(np.stack([points @ e1, points @ e2], axis=1) / fine).astype(np.int64)
    return cells[:, 0] * 1_000_003 + cells[:, 1]


def type_components(codes: np.ndarray, ijk: np.ndarray, affine: np.ndarray, axis: np.ndarray,
                    config: TypingConfig) -> dict[str, Component]:
    """Connected regions of each type among a lesion's voxels, measured in mm³ and as endplate cover."""
    from scipy import ndimage

    ijk = np.asarray(ijk)
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))
    low = ijk.min(axis=0)
    local = ijk - low
    shape = tuple(int(v) + 1 for v in local.max(axis=0))
    cells = footprint_cells(ijk, affine, axis)
    footprint = len(np.unique(cells))
    typed = int(np.count_nonzero(np.isin(codes, [int(n) for n in MODIC_TYPES])))
    out = {}
    for name in MODIC_TYPES:
        mine = codes == int(name)
        if not mine.any():
            out[name] = Component(0.0, 0.0, 0.0)
            continue
        grid = np.zeros(shape, dtype=bool)
        grid[tuple(local[mine].T)] = True
        regions, _ = ndimage.label(grid, structure=_REGION_STRUCTURE)
        region_of = regions[tuple(local[mine].T)]
        sizes = np.bincount(region_of) * voxel_mm3
        kept = sizes[region_of] >= config.secondary_noise_floor_mm3
        covered = len(np.unique(cells[mine][kept]))
        out[name] = Component(largest_region_mm3=float(sizes.max()),
                              footprint_fraction=covered / footprint if footprint else 0.0,
                              coherent_fraction=int(kept.sum()) / typed if typed else 0.0)
    return out


def is_component(component: Component, config: TypingConfig) -> bool:
    """Whether a type's regions are coherent enough to name it as a lesion's secondary type.

    Regions under ``secondary_noise_floor_mm3`` (scattered voxels) never count; otherwise a region of
    ``secondary_min_volume_mm3``, regions covering ``secondary_min_footprint_fraction`` of the
    endplate footprint (a thin layer against the endplate), or ``secondary_min_fraction`` of the
    typed voxels make a component.
    """
    if component.largest_region_mm3 < config.secondary_noise_floor_mm3:
        return False
    return (component.largest_region_mm3 >= config.secondary_min_volume_mm3
            or component.footprint_fraction >= config.secondary_min_footprint_fraction
            or component.coherent_fraction >= config.secondary_min_fraction)


def lesion_type(codes: np.ndarray, config: TypingConfig, ijk: np.ndarray | None = None,
                affine: np.ndarray | None = None, axis: np.ndarray | None = None) -> LesionType:
    """Primary (and secondary) type of a lesion from its voxel codes.

    The primary type is the most frequent typed class.  With the voxels' positions (``ijk``,
    ``affine``) and the vertebra's ``axis``, a second type that forms a known mix is named when it
    is a spatially coherent component (:func:`is_component`).  Without them (codes only), the bare
    share of the typed voxels decides (``secondary_min_fraction``).
    """
    codes = np.asarray(codes)
    total = len(codes)
    counts = {name: int(np.count_nonzero(codes == int(name))) for name in MODIC_TYPES}
    typed = sum(counts.values())
    unclassified_fraction = 1.0 - typed / total if total else 1.0
    if typed == 0:
        return LesionType(UNCLASSIFIED, None, None, dict.fromkeys(MODIC_TYPES, 0.0), unclassified_fraction)
    fractions = {name: counts[name] / typed for name in MODIC_TYPES}
    ranked = sorted(MODIC_TYPES, key=lambda n: (-counts[n], n))
    primary = ranked[0]
    candidates = [name for name in ranked[1:] if (primary, name) in MIXED_PAIRS and counts[name]]
    secondary = None
    if candidates and ijk is not None and affine is not None and axis is not None:
        components = type_components(codes, ijk, affine, axis, config)
        named = [name for name in candidates if is_component(components[name], config)]
        if named:
            secondary = max(named, key=lambda n: (components[n].coherent_fraction, -int(n)))
    else:
        secondary = next((name for name in candidates if fractions[name] >= config.secondary_min_fraction), None)
    text = primary if secondary is None else f"{primary}/{secondary}"
    return LesionType(text, primary, secondary, fractions, unclassified_fraction)


def unclassified_type() -> LesionType:
    """The type of a lesion when typing is not possible."""
    return LesionType(UNCLASSIFIED, None, None, dict.fromkeys(MODIC_TYPES, 0.0), 1.0)


#: Largest share of a voxel that lies outside the body when a label map puts the voxel in it
#: (centre-point rule, locally planar surface: the voxel's centre is inside, so at least half of it).
MAX_OUTSIDE_SHARE = 0.5


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    length2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    t = np.clip(((p - a) * ab).sum(axis=1) / length2, 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def partial_volume_explains(ratios: np.ndarray, core: np.ndarray, outside: np.ndarray,
                            tolerance: float) -> np.ndarray:
    """Whether each surface voxel's (T1, T2) ratios are a partial-volume mix of the deeper lesion
    tissue (``core``), dark cortical bone (signal 0) and at most MAX_OUTSIDE_SHARE of the tissue
    just outside the body (``outside``: disc, ligament), within ``tolerance`` (Euclidean, in ratio
    units).  All arrays (N, 2).  The mixes form the quadrilateral 0, core, (1-h) core + h outside,
    h outside (h = MAX_OUTSIDE_SHARE)."""
    ratios, core, outside = (np.asarray(a, dtype=np.float64) for a in (ratios, core, outside))
    h = MAX_OUTSIDE_SHARE
    det = core[:, 0] * outside[:, 1] - core[:, 1] * outside[:, 0]
    solvable = np.abs(det) > 1e-9
    safe = np.where(solvable, det, 1.0)
    a = (ratios[:, 0] * outside[:, 1] - ratios[:, 1] * outside[:, 0]) / safe
    b = (core[:, 0] * ratios[:, 1] - core[:, 1] * ratios[:, 0]) / safe
    inside = solvable & (a >= 0) & (b >= 0) & (b <= h) & (a + b <= 1)
    corners = [np.zeros_like(core), core, (1 - h) * core + h * outside, h * outside]
    distance = np.min([_segment_distance(ratios, corners[i], corners[(i + 1) % 4]) for i in range(4)], axis=0)
    return inside | (distance <= tolerance)


def type_lesion_voxels(t1: np.ndarray, t2: np.ndarray, ijk: np.ndarray, ref: MarrowReference,
                       config: TypingConfig, depth_mm: np.ndarray | None = None,
                       affine: np.ndarray | None = None, bands: dict[str, TypeBand] | None = None,
                       outside_ijk: np.ndarray | None = None) -> np.ndarray:
    """Voxel codes of one lesion given its vertebra's reference (``bands``: see :func:`classify_ratios`).

    ``depth_mm``: each voxel's distance inside its body.  Voxels within ``config.rim_mm`` of the
    surface may mix lesion signal with disc or cortex (partial volume); they take the code of the
    nearest deeper lesion voxel when enough of the lesion lies deeper and, given ``outside_ijk``
    (each voxel's nearest voxel outside its body), when such a mix explains their signal
    (:func:`partial_volume_explains`); a voxel whose signal no mix explains (a thin band of its own
    tissue against the endplate) keeps its code.  Voxels outside their body (depth 0) always do.
    """
    if ref.t1 is None or ref.t2 is None or ref.t1 <= 0 or ref.t2 <= 0:
        return np.full(len(ijk), UNCLASSIFIED_CODE, dtype=np.uint8)
    index = tuple(ijk.T)
    r1 = t1[index] / ref.t1
    r2 = t2[index] / ref.t2
    codes = classify_ratios(r1, r2, config, bands)
    if depth_mm is None or affine is None or config.rim_mm <= 0:
        return codes
    rim = depth_mm <= config.rim_mm
    core = ~rim
    if rim.any() and core.sum() >= max(3, config.min_core_fraction * len(codes)):
        from scipy.spatial import cKDTree

        points = geo.world_points(affine, ijk)
        _, nearest = cKDTree(points[core]).query(points[rim])
        rim_index = np.flatnonzero(rim)
        core_index = np.flatnonzero(core)[nearest]
        explained = np.ones(len(rim_index), dtype=bool)
        if outside_ijk is not None:
            out = tuple(np.asarray(outside_ijk)[rim_index].T)
            ratios = np.stack([r1, r2], axis=1)
            outside = np.stack([t1[out] / ref.t1, t2[out] / ref.t2], axis=1)
            explained = partial_volume_explains(ratios[rim_index], ratios[core_index], outside,
                                                config.partial_volume_tolerance)
            explained |= np.asarray(depth_mm)[rim_index] <= 0
        codes[rim_index[explained]] = codes[core_index[explained]]
    return codes
