"""The label map as a DICOM Segmentation (highdicom) referencing the series it was computed on.

Only possible when that series (normally the T2) came from DICOM and the label map lies on its
native grid.  Patient and study attributes that identify the patient (name, ID, birth date,
accession number, ...) are blanked in the SEG unless the user asks to keep them; the study,
series, frame-of-reference and SOP instance UIDs are kept so that viewers can place the
segmentation on the referenced series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from modicseg import __version__
from modicseg.core.image import LabelImage

#: (label value, segment label, category (code, scheme, meaning), property type (code, scheme, meaning)).
#: Codes from pydicom's code dictionary; the disc uses a private "99MODICSEG" code.
SEGMENTS = (
    (1, "Vertebral body", ("91723000", "SCT", "Anatomical Structure"), ("51282000", "SCT", "Vertebra")),
    (2, "Intervertebral disc", ("91723000", "SCT", "Anatomical Structure"),
     ("IVD", "99MODICSEG", "Intervertebral disc")),
    (3, "Modic change", ("49755003", "SCT", "Morphologically Abnormal Structure"), ("52988006", "SCT", "Lesion")),
)

#: Attributes blanked (type 2) or deleted (type 3) in the SEG: they could identify the patient.
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
    "AccessionNumber", "StudyID", "ReferringPhysicianName", "IssuerOfPatientID", "PatientAge", "PatientWeight",
    "PatientSize", "InstitutionName", "InstitutionAddress", "ContentCreatorName", "StudyDate", "StudyTime",
)
_TYPE2_BLANK = {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID",
                "ReferringPhysicianName", "StudyDate", "StudyTime"}


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


def deidentify(ds: pydicom.Dataset) -> None:
    """Blank or delete the identifying attributes of a dataset in place."""
    for keyword in IDENTIFYING_KEYWORDS:
        if keyword in ds:
            if keyword in _TYPE2_BLANK:
                setattr(ds, keyword, "")
            else:
                delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"


def write_dicom_seg(labels: LabelImage, stack: Any, path: Path, series_number: int = 900,
                    keep_patient_identifiers: bool = False) -> None:
    """Write ``labels`` (values 1..3) as a binary DICOM SEG referencing ``stack``'s images.

    The patient and study identifiers are blanked unless ``keep_patient_identifiers`` (an explicit
    user request, e.g. so that a PACS files the SEG with the patient's study): then they are
    copied from the source images as the DICOM standard expects.
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
    if not keep_patient_identifiers:
        deidentify(seg)
    seg.save_as(path)
