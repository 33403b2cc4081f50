"""Turn one usable stack into a ScalarImage: decode pixels, rescale, build the RAS affine.

Slices are ordered along the slice normal by ImagePositionPatient; the slice step comes from the
positions ((last - first) / (N - 1)), never from SliceThickness.  Irregular stacks (missing
slices, uneven spacing) are refused unless the caller asks to resample them, which warns.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import UID

from modicseg.core.image import LPS_TO_RAS, Provenance, ScalarImage
from modicseg.io.dicom_headers import FrameHeader
from modicseg.io.errors import GeometryError, InputError, NotAVolumeError
from modicseg.io.fast_header import read_pixels
from modicseg.io.integrity import check_finite
from modicseg.io.stacks import Stack

log = logging.getLogger(__name__)


class IrregularSpacingWarning(UserWarning):
    """A stack with missing slices or uneven spacing was resampled onto a regular grid."""


def _transfer_syntax_name(uid: str) -> str:
    try:
        return f"{UID(uid).name} ({uid})"
    except Exception:
        return uid or "unknown transfer syntax"


def _decode_file(path: Path, frames: list[FrameHeader]) -> dict[int | None, np.ndarray]:
    """Decoded (rows, columns) arrays of the requested frames of one file."""
    if len(frames) == 1 and frames[0].pixel_data is not None:
        array = read_pixels(frames[0])  # a classic file read by modicseg.io.fast_header
        if array is not None:
            return {frames[0].frame_index: array}
    ds = frames[0].dataset
    if ds is None:
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise InputError(f"{path}: cannot read DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise InputError(f"{path}: no pixel data (truncated file?)")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pixels = ds.pixel_array
        # pydicom repairs some damage with only a warning (excess padding removed, missing bytes):
        # an image so repaired is scrambled, so it is refused
        damage = [str(w.message) for w in caught if "pixel data" in str(w.message).lower()
                  and any(word in str(w.message).lower() for word in ("excess", "missing", "expected", "padding"))]
        if damage:
            raise InputError(f"{path}: corrupt pixel data ({damage[0].splitlines()[0]})")
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read pixel data ({type(exc).__name__}: {exc})") from None
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc)
        if "plugin" in text.lower() or "decoder" in text.lower() or "unable to decode" in text.lower() \
                or "missing required dependencies" in text.lower():
            raise InputError(
                f"{path}: compressed pixel data in {_transfer_syntax_name(syntax)} cannot be decoded by "
                f"any installed plugin (install pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg or "
                f"python-gdcm): {text.splitlines()[0]}") from None
        raise InputError(f"{path}: cannot decode pixel data ({text.splitlines()[0]})") from None
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}: corrupt or truncated pixel data ({str(exc).splitlines()[0]})") from None
    out: dict[int | None, np.ndarray] = {}
    for frame in frames:
        if frame.frame_index is None:
            array = pixels if pixels.ndim == 2 else pixels[0]
        else:
            if pixels.ndim == 2 and frame.frame_index == 0:
                array = pixels
            elif pixels.ndim == 3 and frame.frame_index < pixels.shape[0]:
                array = pixels[frame.frame_index]
            else:
                raise InputError(f"{frame.label}: frame missing from pixel data")
        if array.shape != (frame.rows, frame.columns):
            raise InputError(f"{frame.label}: pixel array {array.shape} does not match Rows x Columns "
                             f"{(frame.rows, frame.columns)}")
        out[frame.frame_index] = array
    return out


def decode_frames(frames: list[FrameHeader]) -> list[np.ndarray]:
    """Decoded 2-D arrays of the frames, in the order given, each file read once."""
    by_file: dict[Path, list[FrameHeader]] = defaultdict(list)
    for frame in frames:
        by_file[frame.path].append(frame)
    decoded: dict[tuple[Path, int | None], np.ndarray] = {}
    for path, file_frames in by_file.items():
        for index, array in _decode_file(path, file_frames).items():
            decoded[(path, index)] = array
    return [decoded[(f.path, f.frame_index)] for f in frames]


def stack_affine(stack: Stack) -> np.ndarray:
    """RAS voxel-to-world affine of a usable stack (i = column, j = row, k = sorted slice)."""
    first, last = stack.frames[0], stack.frames[-1]
    row_cos = np.asarray(first.orientation[:3], dtype=np.float64)  # type: ignore[index]
    col_cos = np.asarray(first.orientation[3:], dtype=np.float64)  # type: ignore[index]
    row_spacing, col_spacing = first.pixel_spacing  # type: ignore[misc]
    n = stack.n_slices
    if n > 1:
        step = (np.asarray(last.position) - np.asarray(first.position)) / (n - 1)
    else:
        step = first.normal * (first.spacing_between_slices or first.slice_thickness or 1.0)  # type: ignore[operator]
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing
    lps[:3, 1] = col_cos * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return LPS_TO_RAS @ lps


def acquisition_parameters(stack: Stack) -> dict:
    """Technical acquisition parameters of a stack (no identifiers)."""
    f = stack.first
    values = {
        "manufacturer": f.manufacturer or None,
        "model": f.model_name or None,
        "magnetic_field_strength_t": f.magnetic_field_strength,
        "repetition_time_ms": f.repetition_time,
        "echo_time_ms": f.echo_time,
        "inversion_time_ms": f.inversion_time,
        "flip_angle_deg": f.flip_angle,
        "scanning_sequence": f.scanning_sequence or None,
        "sequence_variant": f.sequence_variant or None,
        "mr_acquisition_type": f.mr_acquisition_type,
        "slice_thickness_mm": f.slice_thickness,
        "spacing_between_slices_mm": f.spacing_between_slices,
        "slice_step_from_positions_mm": None if stack.geometry is None else stack.geometry.step_mm,
        "pixel_spacing_mm": list(f.pixel_spacing) if f.pixel_spacing else None,
        "matrix": [f.rows, f.columns],
        "n_slices": stack.n_slices,
        "transfer_syntax_uid": f.transfer_syntax_uid,
        "image_type": list(f.image_type),
    }
    return values


def stack_provenance(stack: Stack) -> Provenance:
    return Provenance(
        series_instance_uid=stack.series_instance_uid,
        series_number=stack.series_number,
        series_description=stack.series_description,
        frame_of_reference_uid=stack.first.frame_of_reference_uid,
        plane=stack.plane,
        weighting=stack.weighting,
        weighting_reason=stack.weighting_reason,
        source_format="dicom",
        acquisition=acquisition_parameters(stack),
    )


def _regularise(array: np.ndarray, affine: np.ndarray, offsets: np.ndarray,
                step: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation along k onto a regular grid of the median step."""
    n_new = int(round((offsets[-1] - offsets[0]) / step)) + 1
    targets = offsets[0] + step * np.arange(n_new)
    upper = np.clip(np.searchsorted(offsets, targets, side="left"), 1, len(offsets) - 1)
    lower = upper - 1
    weight = (targets - offsets[lower]) / (offsets[upper] - offsets[lower])
    weight = np.clip(weight, 0.0, 1.0)
    out = array[:, :, lower] * (1 - weight) + array[:, :, upper] * weight
    new_affine = affine.copy()
    total = offsets[-1] - offsets[0]
    new_affine[:3, 2] = affine[:3, 2] * (len(offsets) - 1) * step / total
    return out.astype(np.float32), new_affine


def build_volume(stack: Stack, resample_irregular: bool = False) -> ScalarImage:
    """Decode a usable stack into a ScalarImage with rescaled values and a RAS affine."""
    if stack.refusal is not None:
        raise NotAVolumeError(f"{stack.first.path.parent}: series {stack.name} ('{stack.series_description}'): "
                              f"{stack.refusal}")
    assert stack.geometry is not None
    slices = decode_frames(stack.frames)
    slopes = np.array([f.rescale_slope for f in stack.frames])
    intercepts = np.array([f.rescale_intercept for f in stack.frames])
    raw = np.stack([s.T for s in slices], axis=2)  # (columns, rows, slices) = (i, j, k)
    if np.all(slopes == 1) and np.all(intercepts == 0) and np.issubdtype(raw.dtype, np.integer):
        array = raw
    else:
        array = raw.astype(np.float64) * slopes + intercepts
        array = array.astype(np.float32)
    check_finite(array, f"{stack.first.path.parent}: series {stack.name} ('{stack.series_description}')")
    affine = stack_affine(stack)
    geometry = stack.geometry
    if geometry.irregularity is not None:
        where = f"{stack.first.path.parent}: series {stack.name} ('{stack.series_description}')"
        if not resample_irregular:
            raise GeometryError(f"{where}: {geometry.irregularity}; refusing to build a volume "
                                "(pass --resample-irregular to interpolate onto a regular grid)")
        warnings.warn(f"{where}: {geometry.irregularity}; resampled onto a regular "
                      f"{geometry.step_mm:.3f} mm grid", IrregularSpacingWarning, stacklevel=2)
        array, affine = _regularise(array.astype(np.float32), affine, geometry.offsets, geometry.step_mm)
    return ScalarImage(array=array, affine=affine, provenance=stack_provenance(stack))
