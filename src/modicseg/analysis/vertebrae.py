"""Vertebral bodies: instances, each with its own cranio-caudal axis, height and volume.

Instances are the connected components of the body label (body + lesion voxels); a component
that a disc cuts into two sizeable parts (touching bodies) is split by the disc's mid-plane.
Each body's cranio-caudal axis starts as its thinnest principal axis and is refined from planes
fitted to its superior and inferior endplate surfaces.  Height is the length of the chord along
that axis through the body's centroid, with sub-voxel crossings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import VertebraConfig
from modicseg.core.labels import BODY_VALUES, DISC

#: Gaussian smoothing (mm) of a body mask before its chords are measured (in-plane axes only).
CHORD_SMOOTHING_MM = 0.0
#: Height is the median chord over a central region of this radius (fraction of the AP depth).
CENTRAL_RADIUS_FRACTION = 0.15


@dataclass
class Disc:
    """One intervertebral disc component."""

    centre_ras: np.ndarray
    normal_ras: np.ndarray  # thinnest principal axis, pointing superior
    volume_mm3: float
    thickness_mm: float  # median thickness along the normal


@dataclass
class Vertebra:
    """One vertebral body."""

    label: int  # value in the instance map (1 = most superior)
    voxels: int
    volume_mm3: float
    centre_ras: np.ndarray
    axis_ras: np.ndarray  # cranio-caudal unit vector, pointing superior
    ap_axis_ras: np.ndarray  # antero-posterior unit vector perpendicular to the axis, pointing anterior
    height_mm: float
    superior_mm: float  # superior endplate along the axis from the centre (mm, > 0)
    inferior_mm: float  # inferior endplate along the axis from the centre (mm, < 0)
    ap_depth_mm: float
    anterior_mm: float  # anterior cortex along the AP axis from the centre
    posterior_mm: float
    truncated: bool  # touches the in-plane edge of the field of view
    axis_method: str  # "endplates" or "principal axes" or "spine tangent"
    level: str | None = None


@dataclass
class VertebraSet:
    """The instance map (0 = none, i = vertebra i) and the vertebrae, superior to inferior."""

    instances: np.ndarray
    vertebrae: list[Vertebra]
    discs: list[Disc]
    warnings: list[str] = field(default_factory=list)

    def by_label(self, label: int) -> Vertebra:
        return self.vertebrae[label - 1]


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask)  # 6-connectivity: bodies touching at a corner stay apart


def find_discs(labels: np.ndarray, affine: np.ndarray, config: VertebraConfig) -> list[Disc]:
    """Disc components above the minimum volume, with their centre and normal."""
    voxel_volume = abs(np.linalg.det(affine[:3, :3]))
    comp, _ = _components(labels == DISC)
    discs = []
    for index, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        ijk = np.argwhere(comp[sl] == index) + [s.start for s in sl]
        volume = len(ijk) * voxel_volume
        if volume < config.min_disc_volume_mm3 or len(ijk) < 4:
            continue
        points = geo.world_points(affine, ijk)
        _, axes = geo.principal_axes(points)
        normal = geo.orient(axes[:, 0], geo.SUPERIOR)
        centre = points.mean(axis=0)
        discs.append(Disc(centre, normal, volume, _thickness(points - centre, axes, affine)))
    return discs


def _thickness(rel: np.ndarray, axes: np.ndarray, affine: np.ndarray, cell_mm: float = 2.0) -> float:
    """Median extent along the thinnest axis over 2 mm cells of the disc's plane (voxel size included)."""
    d = rel @ axes[:, 0]
    cells = np.floor(np.stack([rel @ axes[:, 1], rel @ axes[:, 2]], axis=1) / cell_mm).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    top = np.full(inverse.max() + 1, -np.inf)
    bottom = np.full(inverse.max() + 1, np.inf)
    np.maximum.at(top, inverse, d)
    np.minimum.at(bottom, inverse, d)
    return float(np.median(top - bottom) + 2 * geo.half_extent_along(affine, axes[:, 0]))


def splitting_discs(discs: list[Disc], config: VertebraConfig) -> list[Disc]:
    """The discs large enough to split touching bodies: at least ``split_min_disc_fraction`` of the median.

    A network can label a few disc voxels inside a body (a degenerate or fractured body, a Schmorl
    node) or a rudimentary disc between fused sacral segments; cutting a body there splits it in two
    and shifts every level name counted up from S1.
    """
    if not discs:
        return []
    floor = config.split_min_disc_fraction * float(np.median([d.volume_mm3 for d in discs]))
    return [d for d in discs if d.volume_mm3 >= floor]


def _split_by_discs(points: np.ndarray, discs: list[Disc], min_fraction: float,
                    max_distance_mm: float) -> list[np.ndarray]:
    """Index arrays of the parts of one component after cutting it by the discs inside it (those whose
    centre lies within ``max_distance_mm`` of the component and that leave ``min_fraction`` on each side)."""
    parts = [np.arange(len(points))]
    changed = True
    while changed:
        changed = False
        for disc in discs:
            new_parts: list[np.ndarray] = []
            for part in parts:
                if len(part) == 0:
                    continue
                side = (points[part] - disc.centre_ras) @ disc.normal_ras
                above = side > 0
                share = above.mean()
                near = np.min(np.linalg.norm(points[part] - disc.centre_ras, axis=1)) < max_distance_mm
                if near and min_fraction <= share <= 1 - min_fraction:
                    # voxels inside the disc's slab bridge the two bodies: they belong to neither
                    outside = np.abs(side) >= disc.thickness_mm / 2
                    new_parts.extend(p for p in (part[above & outside], part[~above & outside]) if len(p))
                    changed = True
                else:
                    new_parts.append(part)
            parts = new_parts
    return parts


def _fit_plane_normal(points: np.ndarray) -> np.ndarray | None:
    if len(points) < 10:
        return None
    centred = points - points.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    if singular[1] < 1e-6:
        return None  # collinear points: no plane
    return vt[2]


def _refine_axis(points: np.ndarray, surface: np.ndarray, centre: np.ndarray,
                 axis: np.ndarray) -> tuple[np.ndarray, bool]:
    """Axis from planes fitted to the central parts of the superior and inferior surfaces."""
    initial = axis
    refined = False
    for _ in range(3):
        ap = geo.perpendicular_in_plane(axis, geo.ANTERIOR)
        lr = np.cross(axis, ap)
        rel = points - centre
        t, u, v = rel @ axis, rel @ ap, rel @ lr
        reach_u = max(np.percentile(np.abs(u), 95), 1e-3)
        reach_v = max(np.percentile(np.abs(v), 95), 1e-3)
        central = (u / reach_u) ** 2 + (v / reach_v) ** 2 < 0.36
        top = _fit_plane_normal(points[surface & central & (t > 0)])
        bottom = _fit_plane_normal(points[surface & central & (t < 0)])
        if top is None or bottom is None:
            break
        candidate = geo.unit(geo.orient(top, axis) + geo.orient(bottom, axis))
        if np.degrees(np.arccos(np.clip(candidate @ initial, -1, 1))) > 30:
            break
        refined = True
        if np.allclose(candidate, axis, atol=1e-4):
            axis = candidate
            break
        axis = candidate
    return axis, refined


def central_chord(values: np.ndarray, affine: np.ndarray, centre: np.ndarray, axis: np.ndarray, ap: np.ndarray,
                  radius_mm: float) -> tuple[float, float]:
    """Median (low, high) ends of chords along ``axis`` through a small disc around ``centre``.

    The disc (perpendicular to the axis, ``radius_mm`` across) makes the height robust to a notch
    or a hole in the mask right at the centre (e.g. a Schmorl node, a segmentation gap).
    """
    lr = np.cross(axis, ap)
    spacing = geo.spacing_of(affine)
    step = max(float(spacing.min()), 0.5)
    offsets_u = np.arange(-radius_mm, radius_mm + 1e-9, step) if radius_mm > step else np.zeros(1)
    offsets_v = np.unique([-radius_mm, 0.0, radius_mm]) if radius_mm > 0 else np.zeros(1)
    lows, highs = [], []
    for du in offsets_u:
        for dv in offsets_v:
            if (du / max(radius_mm, 1e-9)) ** 2 + (dv / max(radius_mm, 1e-9)) ** 2 > 1.0 + 1e-9:
                continue
            found = geo.chord(values, affine, centre + du * ap + dv * lr, axis)
            if found is not None:
                lows.append(found[0])
                highs.append(found[1])
    if not lows:
        return 0.0, 0.0
    lengths = np.array(highs) - np.array(lows)
    pick = int(np.argsort(lengths)[len(lengths) // 2])
    return float(lows[pick]), float(highs[pick])


def measure_vertebra(mask: np.ndarray, affine: np.ndarray, label: int,
                     tangent: np.ndarray | None = None) -> Vertebra:
    """Geometry of one body given as a boolean mask on the full grid."""
    box = geo.bounding_box(mask, pad=3)
    sub = mask[box]
    sub_affine = geo.box_affine(affine, box)
    ijk = np.argwhere(sub)
    points = geo.world_points(sub_affine, ijk)
    centre = points.mean(axis=0)
    voxel_volume = abs(np.linalg.det(affine[:3, :3]))

    _, axes = geo.principal_axes(points)
    axis = geo.orient(axes[:, 0], geo.SUPERIOR)
    method = "principal axes"
    if tangent is not None and abs(float(axis @ tangent)) < np.cos(np.radians(45)):
        axis, method = geo.orient(tangent, geo.SUPERIOR), "spine tangent"
    eroded = ndimage.binary_erosion(sub, border_value=1)
    surface = (sub & ~eroded)[sub]
    axis, refined = _refine_axis(points, surface, centre, axis)
    if refined:
        method = "endplates"
    ap = geo.perpendicular_in_plane(axis, geo.ANTERIOR)

    spacing = geo.spacing_of(affine)
    values = geo.smooth_mask(sub, spacing, CHORD_SMOOTHING_MM)
    depth_chord = geo.chord(values, sub_affine, centre, ap) or (0.0, 0.0)
    height_chord = central_chord(values, sub_affine, centre, axis, ap,
                                 radius_mm=CENTRAL_RADIUS_FRACTION * (depth_chord[1] - depth_chord[0]))

    full_ijk = ijk + [s.start for s in box]
    return Vertebra(
        label=label, voxels=len(points), volume_mm3=float(len(points) * voxel_volume), centre_ras=centre,
        axis_ras=axis, ap_axis_ras=ap, height_mm=float(height_chord[1] - height_chord[0]),
        superior_mm=float(height_chord[1]), inferior_mm=float(height_chord[0]),
        ap_depth_mm=float(depth_chord[1] - depth_chord[0]), anterior_mm=float(depth_chord[1]),
        posterior_mm=float(depth_chord[0]), truncated=_touches_in_plane_edge(full_ijk, mask.shape, affine),
        axis_method=method)


def _touches_in_plane_edge(ijk: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether voxels reach the edge of the field of view along an in-plane (not left-right) axis."""
    in_plane = np.abs(geo.RIGHT @ geo.axis_directions(affine)) < 0.7
    return bool((geo.axes_touched(ijk, shape) & in_plane).any())


def _drop_slivers(pieces: list[np.ndarray], shape: tuple[int, ...], affine: np.ndarray,
                  fraction: float) -> tuple[list[np.ndarray], int]:
    """Pieces without those under ``fraction`` of the median piece size that the field of view does not cut."""
    if len(pieces) < 3 or fraction <= 0:
        return pieces, 0
    floor = fraction * float(np.median([len(p) for p in pieces]))
    kept = [p for p in pieces if len(p) >= floor or _touches_in_plane_edge(p, shape, affine)]
    return kept, len(pieces) - len(kept)


#: A bone part under the lowest body without a disc between is not a vertebra only when it lies at
#: least this many times farther behind (or in front of) that body than below it.
AP_STEP_RATIO = 2.0


def disc_between(above: np.ndarray, below: np.ndarray, discs: list[Disc], max_offset_mm: float) -> bool:
    """Whether a disc centre lies between two body centres (RAS, mm): inside the middle 80 % of the segment
    joining them and within ``max_offset_mm`` of it."""
    step = below - above
    length2 = float(step @ step)
    if length2 < 1e-6:
        return False
    for disc in discs:
        rel = disc.centre_ras - above
        t = float(rel @ step) / length2
        if 0.1 < t < 0.9 and np.linalg.norm(rel - t * step) <= max_offset_mm:
            return True
    return False


def bodies_below_last_disc(centres: list[np.ndarray], discs: list[Disc], max_offset_mm: float) -> int:
    """How many of the lowest bodies (centres superior to inferior, RAS mm) are bone that is not a vertebra.

    Every lumbar body is separated from the next by a disc. The lowest bodies that no disc (of any
    size in ``discs``) separates from the body above, and of which the first lies at least
    ``AP_STEP_RATIO`` times farther behind (or in front of) that body than below it, are a bone part
    under S1 (a piece of the sacrum or of a posterior element): counted, it would become "S1" and
    shift every level name. A body below the one above without a disc between is kept otherwise:
    the segmentation may have missed a degenerate disc, and S1 itself lies well behind L5 in a
    lordotic spine. Only applied when discs separate the other bodies (all neighbouring pairs but at
    most one, and at least two), so masks that label bodies only keep every body. A disc separates two
    bodies when its centre lies within ``max_offset_mm`` of the segment joining theirs
    (``vertebrae.separating_disc_offset_mm``).
    """
    if len(centres) < 4 or len(discs) < 2:
        return 0
    first = len(centres)  # the first of the lowest bodies without a disc above them
    while first > 3 and not disc_between(centres[first - 2], centres[first - 1], discs, max_offset_mm):
        first -= 1
    if first == len(centres):
        return 0
    step = centres[first] - centres[first - 1]
    if abs(step[1]) < AP_STEP_RATIO * abs(step[2]):  # a vertebra under a missed disc, or S1 behind L5
        return 0
    rest = centres[:first]
    separated = sum(disc_between(a, b, discs, max_offset_mm) for a, b in itertools.pairwise(rest))
    return len(centres) - first if separated >= max(2, len(rest) - 2) else 0


def find_vertebrae(labels: np.ndarray, affine: np.ndarray, config: VertebraConfig) -> VertebraSet:
    """Vertebral-body instances, ordered superior to inferior, each measured."""
    affine = np.asarray(affine, dtype=np.float64)
    voxel_volume = abs(np.linalg.det(affine[:3, :3]))
    body = np.isin(labels, BODY_VALUES)
    discs = find_discs(labels, affine, config)
    cutting = splitting_discs(discs, config)
    comp, _ = _components(body)
    pieces: list[np.ndarray] = []  # voxel index arrays (N, 3)
    warnings: list[str] = []
    dropped = 0
    for index, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        ijk = np.argwhere(comp[sl] == index) + [s.start for s in sl]
        if len(ijk) * voxel_volume < config.min_volume_mm3:
            dropped += 1
            continue
        points = geo.world_points(affine, ijk)
        parts = _split_by_discs(points, cutting, config.split_min_side_fraction, config.split_max_disc_distance_mm)
        if len(parts) > 1:
            warnings.append(f"{len(parts)} touching vertebral bodies were split at the discs between them")
        for part in parts:
            # a cut can leave fragments: keep the connected pieces that are large enough
            part_mask = np.zeros(labels.shape, dtype=bool)
            part_mask[tuple(ijk[part].T)] = True
            sub_comp, _ = _components(part_mask)
            for j, sub_sl in enumerate(ndimage.find_objects(sub_comp), start=1):
                if sub_sl is None:
                    continue
                sub_ijk = np.argwhere(sub_comp[sub_sl] == j) + [s.start for s in sub_sl]
                if len(sub_ijk) * voxel_volume >= config.min_volume_mm3:
                    pieces.append(sub_ijk)
                else:
                    dropped += 1
    if dropped:
        warnings.append(f"{dropped} body fragment(s) under {config.min_volume_mm3:g} mm³ ignored")
    pieces, slivers = _drop_slivers(pieces, labels.shape, affine, config.min_volume_fraction)
    if slivers:
        warnings.append(f"{slivers} body fragment(s) under {config.min_volume_fraction:.0%} of the median body "
                        "volume ignored")
    centres = [geo.world_points(affine, p).mean(axis=0) for p in pieces]
    order = np.argsort([-c[2] for c in centres])  # superior first
    pieces = [pieces[i] for i in order]
    centres = [centres[i] for i in order]
    below_last_disc = bodies_below_last_disc(centres, discs, config.separating_disc_offset_mm)
    if below_last_disc:
        pieces, centres = pieces[:-below_last_disc], centres[:-below_last_disc]
        warnings.append(f"{below_last_disc} bone part(s) behind and below the lowest body, not separated from it "
                        "by a disc, were not counted as vertebrae: check the level names")
    instances = np.zeros(labels.shape, dtype=np.int16)
    for label, ijk in enumerate(pieces, start=1):
        instances[tuple(ijk.T)] = label
    vertebrae = []
    for label in range(1, len(pieces) + 1):
        above = centres[label - 2] if label > 1 else None
        below = centres[label] if label < len(pieces) else None
        tangent = None
        if above is not None or below is not None:
            a = above if above is not None else centres[label - 1]
            b = below if below is not None else centres[label - 1]
            if np.linalg.norm(a - b) > 1e-6:
                tangent = geo.unit(a - b)
        vertebrae.append(measure_vertebra(instances == label, affine, label, tangent))
    return VertebraSet(instances=instances, vertebrae=vertebrae, discs=discs, warnings=warnings)
