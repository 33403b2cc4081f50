"""Build small DICOM studies with known geometry for the tests (real files, written by pydicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modicseg.core.image import ScalarImage
from modicseg.io.dicom_write import SeriesSpec, StudySpec, write_mr_series

CANARY_NAME = "CANARY^LEAKTEST"
CANARY_ID = "CANARYID-31337"
CANARY_BIRTH = "19451231"


def canary_study(**kwargs) -> StudySpec:
    return StudySpec(patient_name=CANARY_NAME, patient_id=CANARY_ID, patient_birth_date=CANARY_BIRTH, **kwargs)


def sagittal_affine(shape: tuple[int, int, int], in_plane: float = 0.8, step: float = 4.0,
                    centre_ras: tuple[float, float, float] = (2.0, -10.0, 30.0)) -> np.ndarray:
    """Sagittal grid like a scanner's: i anterior->posterior, j superior->inferior, k left->right?"""
    affine = np.zeros((4, 4))
    affine[:3, 0] = [0, -in_plane, 0]  # columns run posterior (RAS -y)
    affine[:3, 1] = [0, 0, -in_plane]  # rows run inferior
    affine[:3, 2] = [step, 0, 0]  # slices run toward the patient's right
    affine[3, 3] = 1
    centre_index = (np.asarray(shape) - 1) / 2
    affine[:3, 3] = np.asarray(centre_ras) - affine[:3, :3] @ centre_index
    return affine


def axial_affine(shape: tuple[int, int, int], in_plane: float = 0.7, step: float = 4.0) -> np.ndarray:
    affine = np.zeros((4, 4))
    affine[:3, 0] = [-in_plane, 0, 0]  # columns toward the patient's left
    affine[:3, 1] = [0, -in_plane, 0]  # rows toward posterior
    affine[:3, 2] = [0, 0, step]
    affine[3, 3] = 1
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def world_phantom(points_ras: np.ndarray, contrast: str = "t1") -> np.ndarray:
    """Intensity of a simple 3-D phantom at RAS points: background, a body, three blobs."""
    x, y, z = points_ras[..., 0], points_ras[..., 1], points_ras[..., 2]
    values = np.full(x.shape, 20.0)
    body = (x / 60) ** 2 + (y / 70) ** 2 + (z / 120) ** 2 < 1
    values[body] = 400 if contrast == "t1" else 250
    blobs = [((0, 10, 40), 12, 900, 150), ((10, -25, -20), 10, 150, 1100), ((-8, 0, 0), 15, 600, 700)]
    for (cx, cy, cz), radius, t1, t2 in blobs:
        inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < radius ** 2
        values[inside] = t1 if contrast == "t1" else t2
    return values


def phantom_image(shape: tuple[int, int, int], affine: np.ndarray, contrast: str = "t1") -> ScalarImage:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return ScalarImage(world_phantom(xyz, contrast).reshape(shape).astype(np.float32), affine)


T1_SERIES = dict(description="T1_TSE_SAG", repetition_time=550.0, echo_time=11.0)
T2_SERIES = dict(description="t2_tse_sag", repetition_time=3500.0, echo_time=95.0)


def write_multi_series_study(root: Path, study: StudySpec | None = None, slice_thickness: float = 3.5,
                             step: float = 4.0) -> dict:
    """Sagittal T1 + T2 (slice gap), a 3-plane localizer, an axial T2, a README: the usual clutter."""
    study = study or canary_study()
    shape = (64, 80, 11)
    sag = sagittal_affine(shape, step=step)
    t1 = phantom_image(shape, sag, "t1")
    t2 = phantom_image(shape, sag, "t2")
    info = {"t1_affine": sag, "t2_affine": sag, "t1": t1, "t2": t2, "study": study}
    write_mr_series(t1, root / "a" / "b", SeriesSpec(series_number=3, slice_thickness=slice_thickness,
                                                      rescale=(2.0, -100.0), **T1_SERIES), study)
    write_mr_series(t2, root / "a", SeriesSpec(series_number=4, slice_thickness=slice_thickness, **T2_SERIES), study)
    # 3-plane localizer: one series, three orientations, one slice each
    loc_uid = "1.2.826.0.1.3680043.8.498.1"
    loc = SeriesSpec(series_number=1, description="localizer", repetition_time=8.0, echo_time=4.0,
                     scanning_sequence="GR", flip_angle=20.0, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER", "NONE"),
                     series_instance_uid=loc_uid)
    for affine in (sagittal_affine((64, 64, 1), 2.0, 1.0), axial_affine((64, 64, 1), 2.0)):
        write_mr_series(phantom_image((64, 64, 1), affine), root / "loc", loc, study)
    cor = np.array([[-2.0, 0, 0, 60], [0, 0, 1.0, 0], [0, -2.0, 0, 60], [0, 0, 0, 1]])
    write_mr_series(phantom_image((64, 64, 1), cor), root / "loc", loc, study)
    ax_shape = (60, 60, 9)
    write_mr_series(phantom_image(ax_shape, axial_affine(ax_shape), "t2"), root / "ax",
                    SeriesSpec(series_number=5, description="t2_tse_tra", repetition_time=4000.0, echo_time=100.0),
                    study)
    (root / "README.txt").write_text("not a DICOM file\n")
    return info
