"""The label map as a DICOM Segmentation (highdicom) referencing the series it was computed on.

Only possible when that series (normally the T2) came from DICOM and the label map lies on its
native grid.

Privacy: highdicom copies the Patient and Study modules and the source's acquisition equipment
(institution, station, ...) into a SEG.  The written SEG keeps only the attributes of an
allow-list built for it (:data:`SEG_ATTRIBUTES` at the top level, :data:`SEG_NESTED_ATTRIBUTES`
inside sequences, at every depth); everything else, private attributes included, is removed.
The type-2 patient and study identifiers (:data:`SEG_PATIENT_STUDY_IDENTIFIERS`) stay present but
empty unless the user asks to keep them (``--seg-keep-patient-identifiers``).  The study, series,
frame-of-reference and SOP instance UIDs are kept so that viewers can place the segmentation on
the referenced series (PS3.15 Retain UIDs Option).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from modicseg.core.image import LabelImage
from modicseg.core.labels import SEG_SEGMENTS
from modicseg.core.version import __version__

#: (label value, segment label, category (code, scheme, meaning), property type (code, scheme, meaning)):
#: the labels' codes, defined in core.labels.
SEGMENTS = SEG_SEGMENTS

#: Type-2 patient and study attributes of the SEG (Patient and General Study modules): present and
#: empty, or copied from the source images on explicit request (--seg-keep-patient-identifiers).
SEG_PATIENT_STUDY_IDENTIFIERS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
    "ReferringPhysicianName", "StudyID",
)

#: Top-level attributes a written SEG keeps (besides SEG_PATIENT_STUDY_IDENTIFIERS): those highdicom
#: writes for a Segmentation that describe the segmentation itself, its geometry, the software that
#: made it and the UIDs that place it on its source series.  Everything else is removed.
SEG_ATTRIBUTES = frozenset({
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "Modality", "SeriesNumber", "SeriesDescription",
    "InstanceNumber", "ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
    "ContentLabel", "ContentDescription", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    "DeviceSerialNumber", "ImageType", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
    "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod", "PresentationLUTShape",
    "BurnedInAnnotation", "SegmentationType", "SegmentationFractionalType", "MaximumFractionalValue",
    "SegmentsOverlap", "SegmentSequence", "DimensionOrganizationType", "DimensionOrganizationSequence",
    "DimensionIndexSequence", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "ReferencedSeriesSequence", "SourceImageSequence", "ContributingEquipmentSequence",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
})

#: Attributes kept inside sequence items, at any depth: codes, segment descriptions, frame geometry
#: and references to the source images.  Not kept there: whatever describes the source's
#: acquisition equipment beyond its manufacturer and model (institution, address, department,
#: station, serial number, acquisition date and time in ContributingEquipmentSequence).
SEG_NESTED_ATTRIBUTES = frozenset({
    "CodeValue", "LongCodeValue", "URNCodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
    "ContextIdentifier", "ContextUID", "MappingResource", "ContextGroupVersion",
    "DimensionOrganizationUID", "DimensionIndexPointer", "FunctionalGroupPointer", "DimensionDescriptionLabel",
    "DimensionIndexValues", "StackID", "InStackPositionNumber", "TemporalPositionIndex",
    "FrameContentSequence", "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "SegmentIdentificationSequence", "ReferencedSegmentNumber", "DerivationImageSequence", "DerivationCodeSequence",
    "SourceImageSequence", "ReferencedSOPClassUID", "ReferencedSOPInstanceUID", "ReferencedFrameNumber",
    "SpatialLocationsPreserved", "PurposeOfReferenceCodeSequence", "ReferencedInstanceSequence",
    "SeriesInstanceUID", "SegmentNumber", "SegmentLabel", "SegmentDescription", "SegmentAlgorithmType",
    "SegmentAlgorithmName", "SegmentationAlgorithmIdentificationSequence", "SegmentedPropertyCategoryCodeSequence",
    "SegmentedPropertyTypeCodeSequence", "SegmentedPropertyTypeModifierCodeSequence", "AnatomicRegionSequence",
    "AnatomicRegionModifierSequence", "RecommendedDisplayCIELabValue", "TrackingID", "TrackingUID",
    "AlgorithmFamilyCodeSequence", "AlgorithmNameCodeSequence", "AlgorithmName", "AlgorithmVersion",
    "AlgorithmParameters", "AlgorithmSource", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    "ContributionDescription",
})


def _keep_nested(item: pydicom.Dataset) -> None:
    for element in list(item):
        if element.tag.is_private or element.keyword not in SEG_NESTED_ATTRIBUTES:
            del item[element.tag]
        elif element.VR == "SQ":
            for child in element.value:
                _keep_nested(child)


def restrict_to_allow_list(ds: pydicom.Dataset, keep_patient_identifiers: bool = False) -> None:
    """Keep only the allow-listed attributes of a SEG, at every depth; blank the patient and study
    identifiers unless ``keep_patient_identifiers``."""
    for element in list(ds):
        keyword = element.keyword
        if keyword in SEG_PATIENT_STUDY_IDENTIFIERS:
            if not keep_patient_identifiers:
                ds[element.tag].value = ""
        elif element.tag.is_private or keyword not in SEG_ATTRIBUTES:
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _keep_nested(item)
    for keyword in SEG_PATIENT_STUDY_IDENTIFIERS:  # type 2: present, even if empty
        if keyword not in ds:
            setattr(ds, keyword, "")
    if not keep_patient_identifiers:
        from pydicom.sr.codedict import codes

        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "modicseg SEG allow-list; identifiers empty; UIDs kept"  # LO: 64 chars
        method = pydicom.Sequence()
        for code in (codes.DCM.BasicApplicationConfidentialityProfile, codes.DCM.RetainUidsOption):
            item = pydicom.Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (code.value, code.scheme_designator,
                                                                             code.meaning)
            method.append(item)
        ds.DeidentificationMethodCodeSequence = method


def seg_unavailable_reason(labels: LabelImage, stack: Any) -> str | None:
    """Why no SEG can be written for this label map, or None when it can."""
    if stack is None:
        return "the reference series did not come from DICOM (NIfTI input): no DICOM SEG"
    frames = stack.frames
    first = frames[0]
    if labels.shape != (first.columns, first.rows, len(frames)):
        return "the label map's grid differs from the reference series' (resampled series): no DICOM SEG"
    from modicseg.io.dicom_volume import stack_affine

    if not np.allclose(stack_affine(stack), labels.affine, atol=1e-3):
        return "the label map's grid differs from the reference series' geometry: no DICOM SEG"
    return None


def _source_datasets(stack: Any) -> list[pydicom.Dataset]:
    """Headers of the reference series' images, in the volume's k order (one per file)."""
    datasets: list[pydicom.Dataset] = []
    seen: set[str] = set()
    for frame in stack.frames:
        key = str(frame.path)
        if key in seen:
            continue
        seen.add(key)
        ds = frame.dataset if frame.dataset is not None else pydicom.dcmread(frame.path, stop_before_pixels=True)
        datasets.append(ds)
    return datasets


def write_dicom_seg(labels: LabelImage, stack: Any, path: Path, series_number: int = 900,
                    keep_patient_identifiers: bool = False) -> None:
    """Write ``labels`` (values 1..3) as a binary DICOM SEG referencing ``stack``'s images.

    Only allow-listed attributes are written (see the module docstring).  The patient and study
    identifiers (SEG_PATIENT_STUDY_IDENTIFIERS) are empty unless ``keep_patient_identifiers`` (an
    explicit user request, e.g. so that a PACS files the SEG with the patient's study): then those,
    and only those, are copied from the source images as the DICOM standard expects.
    """
    import highdicom as hd
    from highdicom.sr.coding import CodedConcept

    datasets = _source_datasets(stack)
    array = np.asarray(labels.array)
    multiframe = len(datasets) == 1 and len(stack.frames) > 1
    pixel = np.ascontiguousarray(array.transpose(2, 1, 0)).astype(np.uint8)  # (frames, rows, columns)
    if multiframe:
        order = [f.frame_index for f in stack.frames]
        if order != sorted(order):  # highdicom expects the source's own frame order
            restored = np.zeros_like(pixel)
            restored[np.asarray(order)] = pixel
            pixel = restored
    present = [s for s in SEGMENTS if (array == s[0]).any()] or [SEGMENTS[0]]
    descriptions = []
    mapping = np.zeros(max(s[0] for s in SEGMENTS) + 1, dtype=np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="modicseg", version=__version__, family=CodedConcept("123110", "DCM", "Artificial Intelligence"))
    for number, (value, label, category, prop) in enumerate(present, start=1):
        mapping[value] = number
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=CodedConcept(*category), segmented_property_type=CodedConcept(*prop),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm))
    pixel = mapping[pixel]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixel,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=series_number, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="modicseg", manufacturer_model_name="modicseg analyze",
        software_versions=__version__, device_serial_number="none", series_description="modicseg labels",
        omit_empty_frames=False)
    restrict_to_allow_list(seg, keep_patient_identifiers)
    seg.save_as(path)
