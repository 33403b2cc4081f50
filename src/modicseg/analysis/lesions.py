"""Lesions: connected components of the lesion label, split per vertebra, each given an endplate.

A component is cut where it crosses from one vertebral body into another, so a change on both
sides of a disc gives two lesions.  Lesion voxels outside every body instance join the nearest
body when it is close (``max_distance_mm``); farther ones (on a body fragment that is not a
vertebra, in soft tissue) are not placed.  Parts below the configured minimum volume are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import LesionConfig
from modicseg.analysis.vertebrae import VertebraSet
from modicseg.core.labels import INFERIOR, LESION, SUPERIOR

#: Each line's endplate and deep-border positions are averaged with this many neighbouring lines
#: on each side along u before the extremes are taken (the staircase of a voxelised surface would
#: otherwise bias the maximum extent upwards by ~0.2 mm).
SMOOTH_HALF_WIDTH = 1


@dataclass
class Lesion:
    """One Modic change: where it is and its shape (typing and measures are added later)."""

    id: int
    vertebra: int  # label of its vertebra in the instance map
    endplate: str  # "superior" or "inferior"
    ijk: np.ndarray = field(repr=False)  # (N, 3) voxel indices
    volume_mm3: float = 0.0
    centre_ras: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axial_range_mm: tuple[float, float] = (0.0, 0.0)  # along the vertebra's axis from its centre, voxel edges
    ap_range_mm: tuple[float, float] = (0.0, 0.0)  # along its AP axis from its centre, voxel edges
    craniocaudal_extent_mm: float = 0.0  # span along the vertebra's axis from the body's outer surface at the
    #                                        endplate (the cortical endplate included), sub-voxel
    change_extent_mm: float = 0.0  # span of the signal change itself along the axis (its own borders), sub-voxel


@dataclass
class LesionSet:
    """Lesions ordered by vertebra (superior first), superior endplate first, then by volume."""

    lesions: list[Lesion]
    lesion_map: np.ndarray  # 0 = none, i = lesion id i
    warnings: list[str] = field(default_factory=list)


def _nearest_instance(instances: np.ndarray, spacing: np.ndarray, max_distance_mm: float) -> np.ndarray:
    """For every voxel, the instance label of the nearest body voxel (0 when none within ``max_distance_mm``)."""
    distance, nearest = ndimage.distance_transform_edt(instances == 0, sampling=spacing, return_indices=True)
    return np.where(distance <= max_distance_mm, instances[tuple(nearest)], 0)


def find_lesions(labels: np.ndarray, affine: np.ndarray, vset: VertebraSet, config: LesionConfig) -> LesionSet:
    """Lesion parts, each on one vertebra and one endplate."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = geo.spacing_of(affine)
    voxel_volume = abs(np.linalg.det(affine[:3, :3]))
    mask = labels == LESION
    warnings: list[str] = []
    empty = LesionSet([], np.zeros(labels.shape, dtype=np.int32), warnings)
    if not mask.any():
        return empty
    if not vset.vertebrae:
        warnings.append("lesion voxels found but no vertebral body: lesions cannot be placed or measured")
        return empty
    owner = vset.instances
    if (mask & (owner == 0)).any():
        owner = np.where(mask & (owner == 0), _nearest_instance(vset.instances, spacing, config.max_distance_mm),
                         owner)
        unplaced = int(np.count_nonzero(mask & (owner == 0)))
        if unplaced:
            warnings.append(f"{unplaced} lesion voxel(s) more than {config.max_distance_mm:g} mm from every "
                            "vertebral body (on bone that is not a vertebra, or soft tissue) were not placed")
            mask = mask & (owner > 0)
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    parts: list[tuple[int, np.ndarray]] = []
    dropped = 0
    for index, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        ijk = np.argwhere(comp[sl] == index) + [s.start for s in sl]
        owners = owner[tuple(ijk.T)]
        for vertebra in np.unique(owners):
            part = ijk[owners == vertebra]
            if len(part) * voxel_volume < config.min_volume_mm3:
                dropped += 1
                continue
            parts.append((int(vertebra), part))
    if dropped:
        warnings.append(f"{dropped} lesion component(s) under {config.min_volume_mm3:g} mm³ dropped")
    lesions = [_describe(vset, vertebra, part, affine) for vertebra, part in parts]
    if config.max_endplate_gap_mm is not None:
        near = [endplate_gap_mm(les, vset, affine) <= config.max_endplate_gap_mm for les in lesions]
        away = near.count(False)
        if away:
            lesions = [les for les, keep in zip(lesions, near, strict=True) if keep]
            warnings.append(f"{away} lesion part(s) more than {config.max_endplate_gap_mm:g} mm from both "
                            "endplates of their vertebra (a Modic change lies against an endplate: haemangioma, "
                            "fat island or vein) were not counted")
    for lesion in lesions:
        lesion.craniocaudal_extent_mm, lesion.change_extent_mm = craniocaudal_extents(lesion, vset, affine)
    lesions.sort(key=lambda les: (les.vertebra, les.endplate != SUPERIOR, -les.volume_mm3))
    return _numbered(lesions, labels.shape, warnings)


def _numbered(lesions: list[Lesion], shape: tuple[int, ...], warnings: list[str]) -> LesionSet:
    """The lesions numbered 1.. in their order (``Lesion.id``) with the lesion map of those numbers."""
    lesion_map = np.zeros(shape, dtype=np.int32)
    for number, lesion in enumerate(lesions, start=1):
        lesion.id = number
        lesion_map[tuple(lesion.ijk.T)] = number
    return LesionSet(lesions, lesion_map, warnings)


def endplate_gap_mm(lesion: Lesion, vset: VertebraSet, affine: np.ndarray, column_mm: float = 2.0) -> float:
    """Distance (mm, along the vertebra's axis) between the lesion and the nearer endplate of its
    vertebra, measured column by column (``column_mm`` bins across the axis), so that a wedge-shaped
    or concave body's endplate is where it really is: 0 when the lesion reaches an endplate."""
    vertebra = vset.by_label(lesion.vertebra)
    axis = vertebra.axis_ras
    ap = vertebra.ap_axis_ras
    lateral = np.cross(axis, ap)
    body = np.argwhere((vset.instances == lesion.vertebra) | (lesion_mask_of(lesion, vset.instances.shape)))

    def frame(ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = geo.world_points(affine, ijk) - vertebra.centre_ras
        cols = np.floor(np.stack([rel @ ap, rel @ lateral], axis=1) / column_mm).astype(np.int64)
        return rel @ axis, cols[:, 0] * 100_003 + cols[:, 1]

    t_body, key_body = frame(body)
    t_les, key_les = frame(lesion.ijk)
    order = np.argsort(key_body)
    keys, starts = np.unique(key_body[order], return_index=True)
    top = np.maximum.reduceat(t_body[order], starts)
    bottom = np.minimum.reduceat(t_body[order], starts)
    where = np.searchsorted(keys, key_les)
    gap = np.minimum(top[where] - t_les, t_les - bottom[where])
    return float(max(0.0, gap.min()))


def lesion_mask_of(lesion: Lesion, shape: tuple[int, ...]) -> np.ndarray:
    """The lesion's voxels as a boolean array of ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(lesion.ijk.T)] = True
    return mask


def _describe(vset: VertebraSet, label: int, ijk: np.ndarray, affine: np.ndarray) -> Lesion:
    vertebra = vset.by_label(label)
    points = geo.world_points(affine, ijk)
    rel = points - vertebra.centre_ras
    t = rel @ vertebra.axis_ras
    u = rel @ vertebra.ap_axis_ras
    half_t = geo.half_extent_along(affine, vertebra.axis_ras)
    half_u = geo.half_extent_along(affine, vertebra.ap_axis_ras)
    axial = (float(t.min() - half_t), float(t.max() + half_t))
    gap_superior = vertebra.superior_mm - axial[1]
    gap_inferior = axial[0] - vertebra.inferior_mm
    endplate = SUPERIOR if gap_superior < gap_inferior or (
        gap_superior == gap_inferior and t.mean() >= 0) else INFERIOR
    voxel_volume = abs(np.linalg.det(affine[:3, :3]))
    return Lesion(id=0, vertebra=label, endplate=endplate, ijk=ijk, volume_mm3=float(len(ijk) * voxel_volume),
                  centre_ras=points.mean(axis=0), axial_range_mm=axial,
                  ap_range_mm=(float(u.min() - half_u), float(u.max() + half_u)))


def craniocaudal_extent(lesion: Lesion, vset: VertebraSet, affine: np.ndarray) -> float:
    """Maximum cranio-caudal extent of a lesion along its vertebra's axis, from its endplate's outer
    surface (mm); see :func:`craniocaudal_extents`."""
    return craniocaudal_extents(lesion, vset, affine)[0]


def craniocaudal_extents(lesion: Lesion, vset: VertebraSet, affine: np.ndarray) -> tuple[float, float]:
    """Maximum cranio-caudal extent of a lesion along its vertebra's axis (mm): (from the endplate's
    outer surface, of the signal change itself).

    Lines parallel to the axis are cast through the lesion's footprint; on each, the endplate is
    where the body mask ends, the lesion's near border where the lesion mask ends towards the
    endplate and its deep border where it ends inside the body (masks interpolated linearly,
    crossings at 0.5, so sub-voxel), each averaged with its neighbours along u.  The first extent
    runs from the outermost endplate point to the deepest border point over all lines (the cortical
    endplate, body voxels between the change and the disc, included); the second from the outermost
    near border of the change to its deepest border.  With a concave endplate either is larger than
    the deepest single column.
    """
    vertebra = vset.by_label(lesion.vertebra)
    spacing = geo.spacing_of(affine)
    body = vset.instances == lesion.vertebra
    both = body.copy()
    both[tuple(lesion.ijk.T)] = True
    box = geo.bounding_box(both, pad=2)
    sub_affine = geo.box_affine(affine, box)
    lesion_mask = np.zeros(body[box].shape, dtype=np.float32)
    offset = np.array([s.start for s in box])
    lesion_mask[tuple((lesion.ijk - offset).T)] = 1.0
    body_values = body[box].astype(np.float32)
    axis, ap = vertebra.axis_ras, vertebra.ap_axis_ras
    lr = np.cross(axis, ap)
    rel = geo.world_points(affine, lesion.ijk) - vertebra.centre_ras
    u, v = rel @ ap, rel @ lr
    # lines through the footprint: the lesion voxels' (u, v) on a grid of the finest voxel size,
    # widened by one cell along u so that the footprint's edge is sampled too
    fine = float(spacing.min())
    cells = np.unique(np.round(np.stack([u, v], axis=1) / fine).astype(np.int64), axis=0)
    cells = np.unique(np.concatenate([cells + np.array([du, 0]) for du in (-1, 0, 1)]), axis=0)
    uu, vv = cells[:, 0] * fine, cells[:, 1] * fine
    step_mm = fine / 4
    t = rel @ axis
    if lesion.endplate == SUPERIOR:
        s = np.arange(t.min() - 3.0, max(t.max(), vertebra.superior_mm) + 6.0, step_mm)
    else:
        s = np.arange(min(t.min(), vertebra.inferior_mm) - 6.0, t.max() + 3.0, step_mm)
    points = (vertebra.centre_ras[None, None, :] + uu[:, None, None] * ap + vv[:, None, None] * lr
              + s[None, :, None] * axis)
    ijk = geo.voxel_points(sub_affine, points.reshape(-1, 3)).T
    les = ndimage.map_coordinates(lesion_mask, ijk, order=1, mode="constant").reshape(len(uu), len(s))
    bod = ndimage.map_coordinates(body_values, ijk, order=1, mode="constant").reshape(len(uu), len(s))
    hit = (les >= 0.5).any(axis=1)
    if not hit.any():
        span = float(lesion.axial_range_mm[1] - lesion.axial_range_mm[0])
        return span, span
    les, bod, cells = les[hit], bod[hit], cells[hit]
    if lesion.endplate == INFERIOR:  # flip so that the endplate is at the high end
        les, bod, s = les[:, ::-1], bod[:, ::-1], -s[::-1]
    ends, nears, deeps = [], [], []
    for lrow, brow in zip(les, bod, strict=True):
        inside = np.flatnonzero(lrow >= 0.5)
        first = inside[0]
        deep = _crossing(s, lrow, first - 1, first)
        near = _crossing(s, lrow, inside[-1], inside[-1] + 1)  # the change's own border towards the endplate
        if brow[first] >= 0.5:  # the endplate: where the body run holding the deep border ends
            outside = np.flatnonzero(brow[first:] < 0.5)
            top = first + (outside[0] if outside.size else len(s) - 1 - first)
            endplate = max(_crossing(s, brow, top - 1, top), near)
        else:  # lesion outside the body: its own upper border
            endplate = near
        ends.append(endplate)
        nears.append(near)
        deeps.append(deep)
    deeps_arr = _smooth_along_u(cells, np.array(deeps))
    ends_arr, nears_arr = _smooth_along_u(cells, np.array(ends)), _smooth_along_u(cells, np.array(nears))
    return float(ends_arr.max() - deeps_arr.min()), float(nears_arr.max() - deeps_arr.min())


def _smooth_along_u(cells: np.ndarray, values: np.ndarray, half_width: int = SMOOTH_HALF_WIDTH) -> np.ndarray:
    """Each line's value averaged with its neighbours along u in the same v row (staircase noise)."""
    if half_width <= 0:
        return values
    out = np.empty_like(values)
    lookup = {(int(a), int(b)): i for i, (a, b) in enumerate(cells)}
    for i, (a, b) in enumerate(cells):
        window = [lookup[(int(a) + d, int(b))] for d in range(-half_width, half_width + 1)
                  if (int(a) + d, int(b)) in lookup]
        out[i] = values[window].mean()
    return out


def _crossing(s: np.ndarray, values: np.ndarray, a: int, b: int, level: float = 0.5) -> float:
    a, b = max(a, 0), min(b, len(s) - 1)
    va, vb = values[a], values[b]
    if va == vb:
        return float(s[b])
    return float(s[a] + (level - va) / (vb - va) * (s[b] - s[a]))


def _craniocaudal_axes(affine: np.ndarray) -> np.ndarray:
    """Which array axes run mainly cranio-caudal (within 45 degrees)."""
    return np.abs(geo.SUPERIOR @ geo.axis_directions(affine)) >= np.cos(np.radians(45))


def at_craniocaudal_edge(ijk: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether voxels reach the first or last slab of an array axis that runs mainly cranio-caudal:
    the field of view cuts there, so what lies against that edge cannot be measured."""
    return bool((geo.axes_touched(ijk, shape) & _craniocaudal_axes(affine)).any())


def cut_endplates(vset: VertebraSet, affine: np.ndarray) -> dict[int, set[str]]:
    """Per vertebra label, its ends ("superior", "inferior") that the cranio-caudal edge of the field of
    view cuts: the body reaches the first or last slab there, so its endplate on that side is not in view
    (e.g. S1 cut by the image's lower edge)."""
    along = _craniocaudal_axes(affine)
    edge = np.zeros(vset.instances.shape, dtype=bool)
    for axis in np.nonzero(along)[0]:
        moved = np.moveaxis(edge, axis, 0)  # a view: writing it marks the slabs of ``edge``
        moved[0] = True
        moved[-1] = True
    out: dict[int, set[str]] = {}
    on_edge = set(np.unique(vset.instances[edge]).tolist()) - {0}
    for vertebra in vset.vertebrae:
        if vertebra.label not in on_edge:
            continue
        ijk = np.argwhere(edge & (vset.instances == vertebra.label))
        along_axis = (geo.world_points(affine, ijk) - vertebra.centre_ras) @ vertebra.axis_ras
        out[vertebra.label] = {SUPERIOR if a > 0 else INFERIOR for a in along_axis}
    return out


def keep_lesions(lset: LesionSet, keep: list[bool]) -> LesionSet:
    """The lesion set without the lesions whose ``keep`` is False, renumbered in the same order."""
    kept = [les for les, k in zip(lset.lesions, keep, strict=True) if k]
    return _numbered(kept, lset.lesion_map.shape, list(lset.warnings))
