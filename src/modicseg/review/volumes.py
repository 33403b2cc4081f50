"""Blinded NIfTI files and the display orientation of a reading case.

Package images are written from their voxels and affine only: a fresh NIfTI-1 header with empty
text fields (descrip, aux_file, intent_name, db_name), no extensions, and a gzip stream without a
file time, so nothing of the source files (series descriptions, dates, tool notes) survives.

napari shows the last two array axes and slides along the first, without the affine.  A case is
shown sagittally: the array is permuted/flipped (exactly, no interpolation) to the axis codes
``DISPLAY_AXCODES`` -- slider left->right, rows superior->inferior, columns anterior->posterior --
and each layer's ``scale`` is the voxel size along those axes.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from modicseg.core.image import Image, LabelImage, ScalarImage

DISPLAY_AXCODES = ("R", "I", "P")
#: NIfTI-1 header text fields that are blanked in every package file.
TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name", "data_type")


def blinded_nifti(image: Image) -> nib.Nifti1Image:
    """A NIfTI-1 image holding only voxels, affine and units (labels uint8, intensities float32)."""
    if image.is_label:
        array = np.asarray(image.array)
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise ValueError("label values must fit in 0..255")
        array = array.astype(np.uint8)
    else:
        array = np.asarray(image.array, dtype=np.float32)
    nii = nib.Nifti1Image(array, image.affine)
    nii.set_sform(image.affine, code=1)
    nii.set_qform(image.affine, code=1)
    header = nii.header
    header.set_xyzt_units("mm", "sec")
    for name in TEXT_FIELDS:
        header[name] = b""
    header["intent_code"] = 1002 if image.is_label else 0  # NIFTI_INTENT_LABEL
    header.extensions.clear()
    return nii


def write_blinded_nifti(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as a blinded ``.nii.gz`` (gzip with no name and time 0), atomically."""
    path = Path(path)
    if not path.name.endswith(".nii.gz"):
        raise ValueError(f"{path}: package images are .nii.gz")
    data = gzip.compress(blinded_nifti(image).to_bytes(), compresslevel=6, mtime=0)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def read_nifti(path: str | os.PathLike[str], label: bool = False) -> Image:
    """A package (or analysis) NIfTI file as a ScalarImage or LabelImage."""
    nii = cast("nib.spatialimages.SpatialImage", nib.load(str(path)))  # typed as any FileBasedImage
    array = np.asanyarray(nii.dataobj)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if label:
        return LabelImage(np.asarray(array), nii.affine)
    return ScalarImage(np.asarray(array, dtype=np.float32), nii.affine)


@dataclass
class DisplayGrid:
    """Exact reorientation between a case's voxel grid and napari's display axes."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    ornt: np.ndarray = field(init=False, repr=False)
    inverse: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]
        self.affine = np.asarray(self.affine, dtype=np.float64)
        start = nio.io_orientation(self.affine)
        end = nio.axcodes2ornt(DISPLAY_AXCODES)
        self.ornt = nio.ornt_transform(start, end)
        self.inverse = nio.ornt_transform(end, start)

    @classmethod
    def of(cls, image: Image) -> DisplayGrid:
        return cls(image.shape, image.affine)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along the original axes."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def axis_map(self) -> list[int]:
        """For each display axis, the original axis it shows."""
        out = [0, 0, 0]
        for axis, (target, _) in enumerate(self.ornt):
            out[int(target)] = axis
        return out

    @property
    def scale(self) -> tuple[float, float, float]:
        """napari layer scale: voxel size (mm) along the display axes."""
        spacing = self.spacing
        return tuple(float(spacing[a]) for a in self.axis_map)  # type: ignore[return-value]

    @property
    def display_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape[a] for a in self.axis_map)  # type: ignore[return-value]

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """A contiguous copy of ``array`` in display order."""
        return np.ascontiguousarray(nio.apply_orientation(np.asarray(array), self.ornt))

    def from_display(self, array: np.ndarray) -> np.ndarray:
        """A contiguous copy of a display-order array back on the case's grid."""
        return np.ascontiguousarray(nio.apply_orientation(np.asarray(array), self.inverse))

    def index_to_display(self, ijk: np.ndarray) -> np.ndarray:
        """Display indices (N, 3) of voxel indices (N, 3) on the case's grid."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        out = np.empty_like(ijk)
        for axis, (target, flip) in enumerate(self.ornt):
            values = ijk[:, axis]
            out[:, int(target)] = values if flip > 0 else (self.shape[axis] - 1) - values
        return out

    def world_to_display(self, xyz: np.ndarray) -> np.ndarray:
        """Display indices (N, 3) of RAS mm points (N, 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        return self.index_to_display(xyz @ inv[:3, :3].T + inv[:3, 3])
