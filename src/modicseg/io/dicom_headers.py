"""Per-frame header records from classic and enhanced multi-frame MR DICOM objects.

Only technical attributes are copied: nothing identifying the patient ever enters a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

ENHANCED_MR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
}
MR_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4"} | ENHANCED_MR_SOP_CLASSES
MR_SPECTROSCOPY = "1.2.840.10008.5.1.4.1.1.4.2"


@dataclass
class FrameHeader:
    """One 2-D image (a classic file, or one frame of a multi-frame file)."""

    path: Path
    frame_index: int | None  # None for a single-frame object
    sop_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    frame_of_reference_uid: str | None
    transfer_syntax_uid: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 values, LPS
    position: tuple[float, float, float] | None  # ImagePositionPatient, LPS mm
    slice_thickness: float | None
    spacing_between_slices: float | None
    rescale_slope: float
    rescale_intercept: float
    echo_number: int | None
    echo_time: float | None
    repetition_time: float | None
    inversion_time: float | None
    flip_angle: float | None
    scanning_sequence: str
    sequence_variant: str
    sequence_name: str
    mr_acquisition_type: str | None
    image_type: tuple[str, ...]
    instance_number: int | None
    temporal_position: int | None
    samples_per_pixel: int
    is_mosaic: bool
    magnetic_field_strength: float | None
    manufacturer: str
    model_name: str
    #: the parsed file (large values deferred), kept so pixel data is read without parsing again
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    #: ScanOptions (upper case; "FS" = fat saturation), plus "FS" when an enhanced object's
    #: SpectrallySelectedSuppression is FAT
    scan_options: tuple[str, ...] = ()
    #: (offset, length, dtype, unused high bits) of the uncompressed pixels of a classic file read by
    #: ``modicseg.io.fast_header`` (``dataset`` is then None); None: decode through pydicom
    pixel_data: tuple[int, int, str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """File (and frame) name for messages."""
        return f"{self.path}" + ("" if self.frame_index is None else f" [frame {self.frame_index + 1}]")

    @property
    def normal(self) -> np.ndarray | None:
        """Unit slice normal (LPS), row cosine x column cosine."""
        if self.orientation is None:
            return None
        row = np.array(self.orientation[:3], dtype=np.float64)
        col = np.array(self.orientation[3:], dtype=np.float64)
        n = np.cross(row, col)
        norm = np.linalg.norm(n)
        return n / norm if norm > 0 else None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(round(f))


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == n else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _tokens(value: Any) -> tuple[str, ...]:
    """A (possibly multi-valued) string attribute as upper-case tokens."""
    text = _text(value)
    return tuple(t.strip().upper() for t in text.split("\\") if t.strip())


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def _is_mosaic(ds: Dataset, image_type: tuple[str, ...]) -> bool:
    if "MOSAIC" in image_type:
        return True
    return (0x0019, 0x100A) in ds  # Siemens NumberOfImagesInMosaic


def _common_fields(ds: Dataset, path: Path) -> dict[str, Any]:
    meta = getattr(ds, "file_meta", None)
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or ()))
    return dict(
        path=path,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=_text(ds.get("SeriesDescription") or ds.get("ProtocolName") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID")) if "FrameOfReferenceUID" in ds else None,
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        magnetic_field_strength=_float(ds.get("MagneticFieldStrength")),
        manufacturer=_text(ds.get("Manufacturer")),
        model_name=_text(ds.get("ManufacturerModelName")),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
        image_type=image_type,
        scan_options=_tokens(ds.get("ScanOptions")),
        is_mosaic=_is_mosaic(ds, image_type),
        instance_number=_int(ds.get("InstanceNumber")),
        dataset=ds,
    )


def classic_frame_fields(ds: Any) -> dict[str, Any]:
    """The per-frame geometry and sequence fields of a single-frame MR image, from its top-level
    attributes (``ds``: a pydicom Dataset or any mapping of keywords with ``get``)."""
    return dict(
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
        rescale_slope=_float(ds.get("RescaleSlope")) or 1.0,
        rescale_intercept=_float(ds.get("RescaleIntercept")) or 0.0,
        echo_number=_int(ds.get("EchoNumbers")),
        echo_time=_float(ds.get("EchoTime")),
        repetition_time=_float(ds.get("RepetitionTime")),
        inversion_time=_float(ds.get("InversionTime")),
        flip_angle=_float(ds.get("FlipAngle")),
        scanning_sequence=_text(ds.get("ScanningSequence")),
        sequence_variant=_text(ds.get("SequenceVariant")),
        sequence_name=_text(ds.get("SequenceName")),
        mr_acquisition_type=_text(ds.get("MRAcquisitionType")) or None,
        temporal_position=_int(ds.get("TemporalPositionIdentifier")),
    )


def classic_frame(ds: Dataset, path: Path) -> FrameHeader:
    """The header record of a single-frame MR image."""
    return FrameHeader(frame_index=None, sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                       **classic_frame_fields(ds), **_common_fields(ds, path))


def _group_value(groups: list[Dataset | None], seq_keyword: str, keyword: str) -> Any:
    """First value of ``keyword`` inside ``seq_keyword`` of the given functional groups."""
    for group in groups:
        if group is None:
            continue
        item = _first_item(group, seq_keyword)
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


def enhanced_frames(ds: Dataset, path: Path) -> list[FrameHeader]:
    """Header records of every frame of an Enhanced (or Legacy Converted Enhanced) MR object."""
    common = _common_fields(ds, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    sop_uid = str(ds.get("SOPInstanceUID", ""))
    # acquisition parameters: top level, or MR functional groups
    tr = _float(ds.get("RepetitionTime"))
    flip = _float(ds.get("FlipAngle"))
    ti_top = _float(ds.get("InversionTime"))
    frames: list[FrameHeader] = []
    for index in range(n_frames):
        frame_group = per_frame[index] if index < len(per_frame) else None
        groups = [frame_group, shared]
        if tr is None:
            tr = _float(_group_value(groups, "MRTimingAndRelatedParametersSequence", "RepetitionTime"))
        if flip is None:
            flip = _float(_group_value(groups, "MRTimingAndRelatedParametersSequence", "FlipAngle"))
        te = _float(_group_value(groups, "MREchoSequence", "EffectiveEchoTime"))
        ti = ti_top
        if ti is None:
            ti = _float(_group_value(groups, "MRModifierSequence", "InversionTimes"))
        frame_type = _group_value(groups, "MRImageFrameTypeSequence", "FrameType")
        frame_type_t = tuple(str(v).upper() for v in frame_type) if frame_type else common["image_type"]
        slope = _float(_group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(_group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        if slope is None:
            slope = _float(ds.get("RescaleSlope"))
        if intercept is None:
            intercept = _float(ds.get("RescaleIntercept"))
        echo_number = None
        content = _first_item(frame_group, "FrameContentSequence") if frame_group else None
        temporal = None
        if content is not None:
            temporal = _int(content.get("TemporalPositionIndex"))
        fields = dict(common)
        fields["image_type"] = frame_type_t
        suppression = ds.get("SpectrallySelectedSuppression") or _group_value(
            groups, "MRImageFrameTypeSequence", "SpectrallySelectedSuppression")
        if _text(suppression).upper() == "FAT" and "FS" not in fields["scan_options"]:
            fields["scan_options"] = (*fields["scan_options"], "FS")
        frames.append(FrameHeader(
            frame_index=index,
            sop_instance_uid=sop_uid,
            pixel_spacing=_floats(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
            orientation=_floats(_group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            position=_floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore[arg-type]
            slice_thickness=_float(_group_value(groups, "PixelMeasuresSequence", "SliceThickness")),
            spacing_between_slices=_float(_group_value(groups, "PixelMeasuresSequence", "SpacingBetweenSlices")),
            rescale_slope=slope if slope is not None else 1.0,
            rescale_intercept=intercept if intercept is not None else 0.0,
            echo_number=echo_number,
            echo_time=te,
            repetition_time=tr,
            inversion_time=ti,
            flip_angle=flip,
            scanning_sequence=_text(ds.get("ScanningSequence") or ds.get("EchoPulseSequence")),
            sequence_variant=_text(ds.get("SequenceVariant")),
            sequence_name=_text(ds.get("PulseSequenceName") or ds.get("SequenceName")),
            mr_acquisition_type=_text(ds.get("MRAcquisitionType")) or None,
            temporal_position=temporal,
            **fields,
        ))
    return frames


def frames_of(ds: Dataset, path: Path) -> list[FrameHeader]:
    """All frame records of an MR image object."""
    if str(ds.get("SOPClassUID", "")) in ENHANCED_MR_SOP_CLASSES or (int(ds.get("NumberOfFrames", 1) or 1) > 1 \
            and "PerFrameFunctionalGroupsSequence" in ds):
        return enhanced_frames(ds, path)
    return [classic_frame(ds, path)]
