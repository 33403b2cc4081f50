"""Output grids: voxel -> scanner RAS affine, slice thickness, supersampling for partial volume.

Sagittal grids follow scanner convention: array axis i = column = anterior -> posterior,
j = row = superior -> inferior, k = slice = left -> right, i.e. DICOM ImageOrientationPatient
(0, 1, 0, 0, 0, -1) before any obliquity.  A thick slice integrates signal over its thickness
(not over the gap): sub-samples along k are spread over the thickness only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

SAGITTAL_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T  # columns i, j, k (RAS)
AXIAL_AXES = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]).T  # i: R->L, j: A->P, k: I->S
CORONAL_AXES = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]).T  # k: P->A


@dataclass
class Grid:
    """A sampling grid: shape, affine (voxel -> scanner RAS mm), slice thickness, supersampling."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    thickness: float | None = None  # along k; None: the slice step (no gap)
    supersample: tuple[int, int, int] = (1, 1, 3)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if any(s % 2 == 0 or s < 1 for s in self.supersample):
            raise ValueError("supersampling factors must be odd (the centre sub-sample gives the label)")

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def slice_thickness(self) -> float:
        return float(self.spacing[2] if self.thickness is None else self.thickness)

    @property
    def voxel_volume(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def sub_offsets(self) -> list[np.ndarray]:
        """Sub-sample offsets in voxel units along i, j, k (k spread over the thickness only)."""
        out = []
        for axis, n in enumerate(self.supersample):
            offsets = (np.arange(n) - (n - 1) / 2.0) / n
            if axis == 2:
                offsets = offsets * self.slice_thickness / self.spacing[2]
            out.append(offsets)
        return out

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "affine": self.affine.round(6).tolist(),
                "spacing_mm": self.spacing.round(6).tolist(), "slice_thickness_mm": round(self.slice_thickness, 6),
                "supersample": list(self.supersample)}


def rotation_matrix(angles_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (RAS axes), angles in degrees."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 matrix of a rotation followed by a translation."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def make_grid(centre: np.ndarray, shape: tuple[int, int, int], spacing: tuple[float, float, float],
              thickness: float | None = None, axes: np.ndarray = SAGITTAL_AXES,
              rotation: np.ndarray | None = None, supersample: tuple[int, int, int] = (1, 1, 3)) -> Grid:
    """A grid centred on ``centre`` (scanner RAS) with axes ``rotation @ axes`` and given spacing."""
    directions = (np.eye(3) if rotation is None else rotation) @ axes
    affine = np.eye(4)
    affine[:3, :3] = directions * np.asarray(spacing, dtype=np.float64)
    affine[:3, 3] = np.asarray(centre, dtype=np.float64) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return Grid(cast("tuple[int, int, int]", tuple(shape)), affine, thickness, supersample)
