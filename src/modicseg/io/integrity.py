"""Checks that an input holds what its header declares, before anything is built from it.

Every size a header declares (rows, columns, frames, bits, voxels) is compared with the bytes the
file really holds *before* a record, array or buffer is made from it, so that memory stays bounded
by the data actually present and a damaged image is refused instead of being silently padded,
cropped or re-shaped into a scrambled picture.  Non-finite voxels (NaN, Inf) are refused too: no
measure or verdict is computed from them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from modicseg.io.errors import InputError

#: Largest decoded image modicseg reads from one file (bytes).  A 3-D MR volume of 1024 x 1024 x
#: 512 16-bit voxels is 1 GiB; no lumbar spine series comes near it.  A header that declares more
#: (e.g. 20,000,000 frames) is refused before anything is allocated.
MAX_DECODED_BYTES = 1 << 30
#: The same limit for a NIfTI volume, in voxels (1 GiB of float32).
MAX_NIFTI_VOXELS = MAX_DECODED_BYTES // 4

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _int_attribute(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _pixel_element(ds: Dataset):
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            return keyword, ds.get_item(keyword, keep_deferred=True)
    return None, None


def _element_length(element) -> int | None:
    length = getattr(element, "length", None)  # a deferred (raw) element knows its length unread
    if length is not None:
        return int(length)
    value = getattr(element, "value", None)
    if value is None:
        return None
    try:
        return len(value)
    except TypeError:
        return None


def dicom_size_problem(ds: Dataset, path: Path) -> str | None:
    """Why the declared image size of a DICOM image object disagrees with its pixel data, or None.

    Checked without reading the pixel data: Rows, Columns, SamplesPerPixel, BitsAllocated and
    NumberOfFrames against the length of the pixel data element and the size of the file.
    """
    rows, columns = _int_attribute(ds, "Rows"), _int_attribute(ds, "Columns")
    frames = _int_attribute(ds, "NumberOfFrames", 1)
    samples = _int_attribute(ds, "SamplesPerPixel", 1)
    bits = _int_attribute(ds, "BitsAllocated")
    if rows is None or columns is None or rows <= 0 or columns <= 0:
        return f"invalid image size Rows {ds.get('Rows')!s} x Columns {ds.get('Columns')!s}"
    if frames is None or frames < 1:
        return f"invalid NumberOfFrames {ds.get('NumberOfFrames')!s}"
    if samples is None or samples < 1 or samples > 4:
        return f"invalid SamplesPerPixel {ds.get('SamplesPerPixel')!s}"
    keyword, element = _pixel_element(ds)
    if element is None:
        return "no pixel data (truncated file?)"
    if keyword == "FloatPixelData":
        bits = 32
    elif keyword == "DoubleFloatPixelData":
        bits = 64
    if bits not in (1, 8, 16, 32, 64):
        return f"invalid BitsAllocated {ds.get('BitsAllocated')!s} (1, 8, 16, 32 or 64 expected)"
    if keyword == "PixelData":  # integer pixels: the stored bits must lie inside the allocated ones
        stored = _int_attribute(ds, "BitsStored", bits)
        high = _int_attribute(ds, "HighBit", None if stored is None else stored - 1)
        if stored is None or not 1 <= stored <= bits:
            return f"invalid BitsStored {ds.get('BitsStored')!s} with BitsAllocated {bits}"
        if high != stored - 1:
            return f"invalid HighBit {ds.get('HighBit')!s} (BitsStored {stored} needs HighBit {stored - 1})"
        if _int_attribute(ds, "PixelRepresentation", 0) not in (0, 1):
            return f"invalid PixelRepresentation {ds.get('PixelRepresentation')!s} (0 or 1 expected)"
    decoded_bytes = math.ceil(rows * columns * samples * frames * bits / 8)
    declared = f"Rows {rows} x Columns {columns}" + (f" x {frames} frames" if frames > 1 else "") + \
        (f" x {samples} samples" if samples > 1 else "") + f" x {bits} bits"
    if decoded_bytes > MAX_DECODED_BYTES:
        return (f"header declares {declared} = {decoded_bytes / 2**30:.1f} GiB of pixels, more than any MR image "
                f"modicseg reads ({MAX_DECODED_BYTES / 2**30:.0f} GiB)")
    length = _element_length(element)
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", "") if meta is not None else "") or "1.2.840.10008.1.2.1")
    value_tell = getattr(element, "value_tell", None)
    if length is not None and length != _UNDEFINED_LENGTH and value_tell is not None \
            and syntax != DeflatedExplicitVRLittleEndian:
        size = os.path.getsize(path)
        if value_tell + length > size:
            return (f"truncated file: its pixel data should hold {length} bytes but the file ends "
                    f"{value_tell + length - size} bytes early")
    encapsulated = length == _UNDEFINED_LENGTH or (syntax.is_compressed if syntax.is_transfer_syntax else False)
    if encapsulated:
        if length is not None and length != _UNDEFINED_LENGTH and frames > max(1, length // 8):
            return (f"header declares {frames} frames but the compressed pixel data ({length} bytes) cannot "
                    "hold them")
        return None
    if length is None:
        return None
    if length < decoded_bytes:
        return (f"pixel data holds {length} bytes but {declared} declare {decoded_bytes} bytes "
                "(truncated pixel data, or wrong Rows, Columns, BitsAllocated or NumberOfFrames)")
    if length > decoded_bytes + 1:  # one byte of padding to an even length is allowed
        return (f"pixel data holds {length} bytes, more than the {decoded_bytes} bytes {declared} declare "
                "(wrong Rows, Columns, BitsAllocated or NumberOfFrames: the image would be scrambled)")
    return None


def check_dicom_sizes(ds: Dataset, path: Path) -> None:
    """InputError naming ``path`` when the declared sizes disagree with the data present."""
    problem = dicom_size_problem(ds, path)
    if problem is not None:
        raise InputError(f"{path}: corrupt DICOM image: {problem}")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    frames = _int_attribute(ds, "NumberOfFrames", 1) or 1
    if per_frame is not None and len(per_frame) != frames:
        raise InputError(f"{path}: corrupt enhanced DICOM image: NumberOfFrames is {frames} but "
                         f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items")


def nonfinite_problem(array: np.ndarray) -> str | None:
    """'N voxels (x %) are NaN / Inf' for a float array holding non-finite values, else None."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    finite = np.isfinite(array)
    if finite.all():
        return None
    bad = int(finite.size - np.count_nonzero(finite))
    n_nan = int(np.count_nonzero(np.isnan(array)))
    kinds = " and ".join(k for k, n in (("NaN", n_nan), ("Inf", bad - n_nan)) if n)
    return f"{bad} of {array.size} voxels ({100.0 * bad / array.size:.2g} %) are {kinds}"


def check_finite(array: np.ndarray, where: str) -> None:
    """InputError naming ``where`` when a float image holds NaN or Inf voxels."""
    problem = nonfinite_problem(array)
    if problem is not None:
        raise InputError(f"{where}: non-finite image values: {problem}; refusing to measure from them")


def nifti_size_problem(nii, path: Path) -> str | None:
    """Why a NIfTI header's declared image cannot be read from the file, or None (header only)."""
    shape = tuple(int(n) for n in nii.shape)
    if any(n <= 0 for n in shape):
        return f"invalid image size {shape}"
    voxels = math.prod(shape)
    if voxels > MAX_NIFTI_VOXELS:
        return (f"header declares a {'x'.join(map(str, shape))} image ({voxels:,} voxels), more than any MR image "
                f"modicseg reads ({MAX_NIFTI_VOXELS:,} voxels)")
    if not str(path).endswith(".gz"):
        header = nii.header
        try:
            needed = int(header.get_data_offset()) + voxels * np.dtype(header.get_data_dtype()).itemsize
        except (TypeError, ValueError):
            return None
        size = os.path.getsize(path)
        if size < needed:
            return f"truncated file: the header declares {needed} bytes of image data and header, the file holds {size}"
    return None


def affine_problem(affine: np.ndarray) -> str | None:
    """Why a voxel-to-world affine cannot place an image (non-finite, or a zero voxel size), or None."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        return "the affine (sform/qform) holds non-finite values"
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if (spacing <= 1e-6).any() or abs(np.linalg.det(affine[:3, :3])) <= 1e-9 * max(float(np.prod(spacing)), 1e-30):
        return f"the affine (sform/qform) is degenerate (voxel size {np.round(spacing, 6).tolist()} mm)"
    return None


def check_nifti(nii, path: Path) -> None:
    """InputError naming ``path`` when a NIfTI header's size or affine cannot be trusted (no voxel read)."""
    problem = nifti_size_problem(nii, path) or affine_problem(nii.affine)
    if problem is not None:
        raise InputError(f"{path}: corrupt NIfTI file: {problem}")
