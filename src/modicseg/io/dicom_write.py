"""Write a ScalarImage as a real DICOM MR series (classic MR Image Storage or Enhanced MR).

The image's array axes are taken as DICOM's: i = column, j = row, k = slice, so the affine's
first column is the row direction times the column spacing, the second the column direction
times the row spacing, the third the slice step.  Used by the synthetic generator and the tests.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from modicseg.core.image import LPS_TO_RAS, ScalarImage

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")


@dataclass
class StudySpec:
    """Study-level and patient-level attributes (synthetic values only)."""

    patient_name: str = "CANARY^SYNTHETIC"
    patient_id: str = "CANARY-0000"
    patient_birth_date: str = "19700101"
    patient_sex: str = "O"
    study_date: str = "20260101"
    study_instance_uid: str = field(default_factory=lambda: str(generate_uid()))
    frame_of_reference_uid: str = field(default_factory=lambda: str(generate_uid()))
    study_description: str = "LUMBAR SPINE"
    accession_number: str = "CANARYACC"
    manufacturer: str = "modicseg"
    model_name: str = "synthetic"
    field_strength_t: float = 1.5


@dataclass
class SeriesSpec:
    """Series-level acquisition attributes."""

    series_number: int
    description: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None = None
    flip_angle: float = 90.0
    scanning_sequence: str = "SE"
    sequence_variant: str = "SK"
    mr_acquisition_type: str = "2D"
    slice_thickness: float | None = None  # defaults to the slice step
    rescale: tuple[float, float] | None = None  # (slope, intercept); None: stored values = values
    transfer_syntax: str = str(ExplicitVRLittleEndian)
    enhanced: bool = False
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    series_instance_uid: str = field(default_factory=lambda: str(generate_uid()))
    echo_number: int = 1
    file_names: str = "random"  # "random" (hex, no extension) or "instance" (IMG0001.dcm ...)


def _geometry(image: ScalarImage) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, np.ndarray]:
    lps = LPS_TO_RAS @ image.affine
    col_spacing = float(np.linalg.norm(lps[:3, 0]))
    row_spacing = float(np.linalg.norm(lps[:3, 1]))
    row_cos = lps[:3, 0] / col_spacing
    col_cos = lps[:3, 1] / row_spacing
    return row_cos, col_cos, lps[:3, 2], row_spacing, col_spacing, lps[:3, 3]


def _stored_values(image: ScalarImage, rescale: tuple[float, float] | None) -> np.ndarray:
    values = np.asarray(image.array, dtype=np.float64)
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    stored = np.rint((values - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("values do not fit unsigned 16-bit storage with this rescale")
    return stored.astype(np.uint16)


def _fmt(values) -> list[str]:
    return [f"{float(v):.6f}".rstrip("0").rstrip(".") if abs(float(v)) > 1e-9 else "0" for v in values]


def _base_dataset(study: StudySpec, series: SeriesSpec, sop_class: UID, sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.Manufacturer = study.manufacturer
    ds.ManufacturerModelName = study.model_name
    ds.MagneticFieldStrength = study.field_strength_t
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = "120000"
    ds.SeriesDate = study.study_date
    ds.ContentDate = study.study_date
    ds.ContentTime = "120000"
    ds.StudyDescription = study.study_description
    ds.StudyID = "1"
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.description
    ds.ProtocolName = series.description
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = series.scanning_sequence
    ds.SequenceVariant = series.sequence_variant
    ds.ScanOptions = ""
    ds.MRAcquisitionType = series.mr_acquisition_type
    ds.RepetitionTime = series.repetition_time
    ds.EchoTime = series.echo_time
    if series.inversion_time is not None:
        ds.InversionTime = series.inversion_time
    ds.EchoTrainLength = 4
    ds.FlipAngle = series.flip_angle
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _file_name(series: SeriesSpec, index: int) -> str:
    if series.file_names == "instance":
        return f"IMG{index + 1:04d}.dcm"
    return secrets.token_hex(8).upper()


def _save(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    if transfer_syntax == str(DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian  # whole dataset deflated on write
    elif transfer_syntax != str(ExplicitVRLittleEndian):
        ds.compress(UID(transfer_syntax), generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def write_mr_series(image: ScalarImage, out_dir: str | Path, series: SeriesSpec,
                    study: StudySpec | None = None) -> list[Path]:
    """Write ``image`` as one MR series into ``out_dir``; returns the files written."""
    study = study or StudySpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos, step, row_spacing, col_spacing, origin = _geometry(image)
    stored = _stored_values(image, series.rescale)
    slice_step = float(np.linalg.norm(step))
    thickness = series.slice_thickness if series.slice_thickness is not None else slice_step
    iop = _fmt(list(row_cos) + list(col_cos))
    positions = [origin + k * step for k in range(image.shape[2])]
    if series.enhanced:
        return [_write_enhanced(stored, out, series, study, iop, positions, row_spacing, col_spacing,
                                slice_step, thickness)]
    paths = []
    for k, position in enumerate(positions):
        ds = _base_dataset(study, series, MR_IMAGE_STORAGE, str(generate_uid()))
        ds.ImageType = list(series.image_type)
        ds.InstanceNumber = k + 1
        ds.EchoNumbers = series.echo_number
        ds.ImagePositionPatient = _fmt(position)
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = _fmt([row_spacing, col_spacing])
        ds.SliceThickness = f"{thickness:.4f}".rstrip("0").rstrip(".")
        ds.SpacingBetweenSlices = f"{slice_step:.4f}".rstrip("0").rstrip(".")
        ds.SliceLocation = f"{float(np.dot(position, np.cross(row_cos, col_cos))):.4f}"
        if series.rescale is not None:
            ds.RescaleSlope = f"{series.rescale[0]:g}"
            ds.RescaleIntercept = f"{series.rescale[1]:g}"
            ds.RescaleType = "US"
        pixels = np.ascontiguousarray(stored[:, :, k].T)  # (rows, columns)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        path = out / _file_name(series, k)
        _save(ds, path, series.transfer_syntax)
        paths.append(path)
    return paths


def _write_enhanced(stored: np.ndarray, out: Path, series: SeriesSpec, study: StudySpec, iop: list[str],
                    positions: list[np.ndarray], row_spacing: float, col_spacing: float,
                    slice_step: float, thickness: float) -> Path:
    ds = _base_dataset(study, series, ENHANCED_MR_IMAGE_STORAGE, str(generate_uid()))
    frame_type = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ImageType = frame_type
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(positions)
    ds.ContentQualification = "PRODUCT"
    ds.AcquisitionDateTime = study.study_date + "120000"
    ds.PulseSequenceName = series.description.split()[0] if series.description else "SE"
    ds.EchoPulseSequence = "SPIN" if "SE" in series.scanning_sequence else "GRADIENT"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.VolumetricProperties = "VOLUME"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1" if series.echo_time < 40 and series.repetition_time < 1000 else "T2"
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = _fmt([row_spacing, col_spacing])
    measures.SliceThickness = f"{thickness:.4f}".rstrip("0").rstrip(".")
    measures.SpacingBetweenSlices = f"{slice_step:.4f}".rstrip("0").rstrip(".")
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = iop
    shared.PlaneOrientationSequence = Sequence([orientation])
    timing = Dataset()
    timing.RepetitionTime = series.repetition_time
    timing.FlipAngle = series.flip_angle
    timing.EchoTrainLength = 4
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = series.echo_time
    shared.MREchoSequence = Sequence([echo])
    if series.inversion_time is not None:
        modifier = Dataset()
        modifier.InversionRecovery = "YES"
        modifier.InversionTimes = [series.inversion_time]
        shared.MRModifierSequence = Sequence([modifier])
    transform = Dataset()
    slope, intercept = series.rescale if series.rescale is not None else (1.0, 0.0)
    transform.RescaleSlope = f"{slope:g}"
    transform.RescaleIntercept = f"{intercept:g}"
    transform.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ftype = Dataset()
    ftype.FrameType = frame_type
    shared.MRImageFrameTypeSequence = Sequence([ftype])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k, position in enumerate(positions):
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = _fmt(position)
        item.PlanePositionSequence = Sequence([plane])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.FrameAcquisitionNumber = 1
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    frames = np.ascontiguousarray(stored.transpose(2, 1, 0))  # (frames, rows, columns)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.PixelData = frames.tobytes()
    path = out / _file_name(series, 0)
    _save(ds, path, series.transfer_syntax)
    return path


def today() -> str:
    """Today's date as DICOM DA (used only where a real date is wanted)."""
    return _dt.date.today().strftime("%Y%m%d")
