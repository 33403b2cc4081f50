"""Geometry helpers in physical space: every length in mm through the affine, never in voxels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: RAS unit vectors.
SUPERIOR = np.array([0.0, 0.0, 1.0])
ANTERIOR = np.array([0.0, 1.0, 0.0])
RIGHT = np.array([1.0, 0.0, 0.0])


def unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1."""
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each array axis."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def world_points(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """RAS mm of voxel indices (N, 3)."""
    affine = np.asarray(affine, dtype=np.float64)
    return np.asarray(ijk, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def voxel_points(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Continuous voxel indices of RAS mm points (N, 3)."""
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return np.asarray(xyz, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]


def half_extent_along(affine: np.ndarray, direction: np.ndarray) -> float:
    """Half the length of one voxel (a parallelepiped) projected on ``direction`` (mm)."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return 0.5 * float(np.abs(unit(direction) @ columns).sum())


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(variances ascending, unit axes as columns) of a point cloud in mm."""
    centred = points - points.mean(axis=0)
    cov = centred.T @ centred / max(len(points) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    return values, vectors


def orient(vector: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """``vector`` or its opposite, whichever points along ``towards``."""
    return vector if float(np.dot(vector, towards)) >= 0 else -vector


def perpendicular_in_plane(axis: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to ``axis`` closest to ``towards`` (e.g. anterior for the AP axis)."""
    axis = unit(axis)
    projected = towards - np.dot(towards, axis) * axis
    if np.linalg.norm(projected) < 1e-6:
        projected = np.cross(axis, RIGHT)
    return unit(projected)


def distance_inside_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the nearest voxel outside it (0 outside).

    Measured between voxel centres, so a border voxel has the distance to its outside neighbour.
    A mask reaching the array edge is treated as continuing beyond it.
    """
    padded = np.pad(mask, 1, mode="edge")
    return ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]


def distance_to_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel to the nearest voxel of ``mask`` (inf when the mask is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask, sampling=spacing)


def bounding_box(mask: np.ndarray, pad: int | tuple[int, int, int] = 2) -> tuple[slice, slice, slice]:
    """Slices of the smallest box holding ``mask``, padded (clipped to the array)."""
    pads = (pad,) * 3 if isinstance(pad, int) else pad
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo = max(int(present[0]) - pads[axis], 0)
        hi = min(int(present[-1]) + 1 + pads[axis], mask.shape[axis])
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def box_affine(affine: np.ndarray, box: tuple[slice, slice, slice]) -> np.ndarray:
    """Affine of a sub-array starting at the box's corner."""
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = world_points(affine, np.array([[s.start for s in box]]))[0]
    return out


def smooth_mask(mask: np.ndarray, spacing: np.ndarray, sigma_mm: float, max_spacing_mm: float = 2.0) -> np.ndarray:
    """A binary mask as float, Gaussian-smoothed in mm along the axes finer than ``max_spacing_mm``."""
    values = mask.astype(np.float32)
    if sigma_mm <= 0:
        return values
    sigma = [sigma_mm / s if s <= max_spacing_mm else 0.0 for s in spacing]
    return ndimage.gaussian_filter(values, sigma=sigma, mode="nearest")


def chord(values: np.ndarray, affine: np.ndarray, origin: np.ndarray, direction: np.ndarray,
          level: float = 0.5, reach_mm: float = 100.0, step_mm: float = 0.05) -> tuple[float, float] | None:
    """Where the line ``origin + s * direction`` enters and leaves the region ``values >= level``.

    ``values`` is sampled with trilinear interpolation; the crossings are interpolated between
    samples, so the result is sub-voxel.  Returns (s_low, s_high) in mm for the run holding the
    origin (or the longest run when the origin lies outside), None when the line misses.
    """
    direction = unit(direction)
    s = np.arange(-reach_mm, reach_mm + step_mm / 2, step_mm)
    points = origin[None, :] + s[:, None] * direction[None, :]
    ijk = voxel_points(affine, points)
    sampled = ndimage.map_coordinates(values.astype(np.float32, copy=False), ijk.T, order=1,
                                      mode="constant", cval=0.0)
    inside = sampled >= level
    if not inside.any():
        return None
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    starts: list[int] = [0] if inside[0] else []
    stops: list[int] = []
    for e in edges.tolist():  # Python ints: indices only
        (starts if not inside[e] else stops).append(e + 1 if not inside[e] else e)
    if inside[-1]:
        stops.append(len(s) - 1)
    runs = list(zip(starts, stops, strict=True))
    centre = len(s) // 2
    holding = [r for r in runs if r[0] <= centre <= r[1]]
    first, last = holding[0] if holding else max(runs, key=lambda r: r[1] - r[0])

    def crossing(a: int, b: int) -> float:
        va, vb = sampled[a], sampled[b]
        if va == vb:
            return float(s[b])
        return float(s[a] + (level - va) / (vb - va) * (s[b] - s[a]))

    low = crossing(first - 1, first) if first > 0 else float(s[0])
    high = crossing(last, last + 1) if last < len(s) - 1 else float(s[-1])
    return low, high


def axes_touched(ijk: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per array axis, whether the voxels ``ijk`` (N, 3) reach its first or last index (the field of view's edge)."""
    return (ijk.min(axis=0) == 0) | (ijk.max(axis=0) == np.asarray(shape) - 1)


def axis_directions(affine: np.ndarray) -> np.ndarray:
    """Unit world (RAS) direction of each array axis, as the columns of a 3 x 3 matrix."""
    return np.asarray(affine, dtype=np.float64)[:3, :3] / spacing_of(affine)
