"""Resampling in physical coordinates (SimpleITK); label images always nearest-neighbour."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from modicseg.core.convert import from_sitk, to_sitk
from modicseg.core.image import Image, ImageT


def resample_to(moving: ImageT, reference: Image, transform: sitk.Transform | None = None,
                default_value: float = 0.0) -> ImageT:
    """Resample ``moving`` onto ``reference``'s grid.

    ``transform`` maps points of the reference's physical space (LPS, SimpleITK's convention) to
    the moving image's space, as SimpleITK registration returns it; None means identity (both
    images share a frame of reference). Labels use nearest-neighbour, intensities linear.
    """
    interpolator = sitk.sitkNearestNeighbor if moving.is_label else sitk.sitkLinear
    moving_sitk = to_sitk(moving)
    if not moving.is_label and moving.array.dtype != np.float32:
        moving_sitk = sitk.Cast(moving_sitk, sitk.sitkFloat32)
    reference_sitk = to_sitk(reference.with_array(np.zeros(reference.shape, dtype=np.uint8)))
    out = sitk.Resample(moving_sitk, reference_sitk, transform or sitk.Transform(),
                        interpolator, default_value, moving_sitk.GetPixelID())
    result = from_sitk(out, kind=type(moving), provenance=moving.provenance)
    return result


def resample_to_spacing(image: ImageT, spacing: tuple[float, float, float]) -> ImageT:
    """Resample onto a grid with the same directions and extent but the given voxel size (mm)."""
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    old_spacing = image.spacing
    extent = np.asarray(image.shape) * old_spacing
    new_shape = np.maximum(1, np.round(extent / spacing_arr)).astype(int)
    direction = image.direction
    # keep the physical centre of the field of view fixed
    centre_old = image.affine[:3, :3] @ ((np.asarray(image.shape) - 1) / 2) + image.affine[:3, 3]
    new_affine = np.eye(4)
    new_affine[:3, :3] = direction * spacing_arr
    new_affine[:3, 3] = centre_old - new_affine[:3, :3] @ ((new_shape - 1) / 2)
    reference = type(image)(np.zeros(tuple(new_shape), dtype=np.uint8), new_affine)
    return resample_to(image, reference)
