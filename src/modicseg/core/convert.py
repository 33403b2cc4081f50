"""Lossless conversion between modicseg images and nibabel / SimpleITK images.

nibabel arrays are indexed (i, j, k) with a RAS affine, like ours.  SimpleITK arrays come out
(k, j, i) while its origin, spacing and direction are (x, y, z) in LPS: both are handled here and
nowhere else.
"""

from __future__ import annotations

import json
import os
from typing import Any, overload

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from modicseg.core.image import LPS_TO_RAS, Image, ImageT, LabelImage, Provenance, ScalarImage

_NIFTI_PROVENANCE_KEY = "modicseg_provenance"


def to_nibabel(image: Image) -> nib.Nifti1Image:
    """A NIfTI-1 image with the same array and the affine as both sform and qform (code 1)."""
    array = image.array
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    nii = nib.Nifti1Image(array, image.affine)
    nii.set_sform(image.affine, code=1)
    nii.set_qform(image.affine, code=1)
    nii.header.set_xyzt_units("mm", "sec")
    if image.is_label:
        nii.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    return nii


# nib.load is typed as returning FileBasedImage; every image read here is a SpatialImage (it has an
# affine and a data object), so the parameter is typed by what is used (``dataobj``, ``header``, ``affine``)
@overload
def from_nibabel(nii: Any, kind: type[ScalarImage] = ..., provenance: Provenance | None = None) -> ScalarImage: ...
@overload
def from_nibabel(nii: Any, kind: type[ImageT], provenance: Provenance | None = None) -> ImageT: ...
def from_nibabel(nii: Any, kind: type[Image] = ScalarImage,
                 provenance: Provenance | None = None) -> Image:
    """Read a nibabel image; 4-D images with a single volume are squeezed, others refused."""
    array = np.asanyarray(nii.dataobj)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D image, got shape {array.shape}")
    if kind is LabelImage or kind.is_label:
        array = np.asarray(array)
    elif not np.issubdtype(array.dtype, np.floating):
        slope, inter = nii.header.get_slope_inter() if hasattr(nii.header, "get_slope_inter") \
            else (None, None)
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            array = np.asarray(nii.dataobj, dtype=np.float32)
            if array.ndim == 4:
                array = array[..., 0]
    affine = nii.affine
    return kind(array=array, affine=affine, provenance=provenance or Provenance(source_format="nifti"))


def save_nifti(image: Image, path: str) -> None:
    """Write an image as NIfTI (.nii or .nii.gz)."""
    nib.save(to_nibabel(image), path)


@overload
def load_nifti(path: str | os.PathLike[str], kind: type[ScalarImage] = ...) -> ScalarImage: ...
@overload
def load_nifti(path: str | os.PathLike[str], kind: type[ImageT]) -> ImageT: ...
def load_nifti(path: str | os.PathLike[str], kind: type[Image] = ScalarImage) -> Image:
    """Read a NIfTI file as an image of the given kind."""
    return from_nibabel(nib.load(str(path)), kind=kind)


# --- SimpleITK -----------------------------------------------------------------------------

def to_sitk(image: Image) -> sitk.Image:
    """A SimpleITK image with the same voxels and physical geometry."""
    array = image.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    out = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    lps = LPS_TO_RAS @ image.affine  # LPS_TO_RAS is its own inverse
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    out.SetSpacing([float(s) for s in spacing])
    out.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    out.SetOrigin([float(v) for v in lps[:3, 3]])
    return out


def affine_from_sitk(img: sitk.Image) -> np.ndarray:
    """The RAS voxel-to-world affine of a 3-D SimpleITK image."""
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(img.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = img.GetOrigin()
    return LPS_TO_RAS @ lps


@overload
def from_sitk(img: sitk.Image, kind: type[ScalarImage] = ..., provenance: Provenance | None = None) -> ScalarImage: ...
@overload
def from_sitk(img: sitk.Image, kind: type[ImageT], provenance: Provenance | None = None) -> ImageT: ...
def from_sitk(img: sitk.Image, kind: type[Image] = ScalarImage,
              provenance: Provenance | None = None) -> Image:
    """A modicseg image from a 3-D SimpleITK image."""
    if img.GetDimension() != 3:
        raise ValueError(f"expected a 3-D SimpleITK image, got {img.GetDimension()}-D")
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    return kind(array=np.ascontiguousarray(array), affine=affine_from_sitk(img),
                provenance=provenance or Provenance())


def provenance_json(provenance: Provenance) -> str:
    """Provenance as a JSON string (for sidecars)."""
    return json.dumps(provenance.to_dict(), indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
