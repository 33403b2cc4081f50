"""Small baseline/follow-up phantom pairs with known lesion evolution (helpers + their own checks).

A lordotic column of elliptic-cylinder vertebral bodies (L2..S1 by default) with discs, evaluated
in world space so that the follow-up can be the same anatomy moved by a rigid transform (the
patient repositioned).  Lesions are plugs from an endplate, painted with each type's T1/T2 signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modicseg.core.convert import save_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.dicom_write import SeriesSpec, StudySpec, write_mr_series

LEVELS = ("L2", "L3", "L4", "L5", "S1")
TYPE_SIGNAL = {"1": (0.55, 1.7), "2": (1.7, 1.3), "3": (0.45, 0.5)}
MARROW, DISC, BACKGROUND = (400.0, 250.0), (300.0, 600.0), (60.0, 120.0)
HEIGHT, DISC_MM, RADIUS = 24.0, 9.0, 250.0


@dataclass(frozen=True)
class Plug:
    """A lesion reaching ``depth_mm`` into a body from one endplate; ``types`` near the endplate first."""

    level: str
    endplate: str
    depth_mm: float
    types: tuple[str, ...] = ("1",)
    radius_mm: float = 9.0
    split: float = 0.55  # share of the depth taken by the first of two types


@dataclass
class Motion:
    """Rigid repositioning of the patient: rotation about x (degrees), then translation (RAS mm)."""

    angle_deg: float = 0.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def matrix(self) -> np.ndarray:
        a = np.radians(self.angle_deg)
        return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@dataclass
class PhantomStudy:
    t1: ScalarImage
    t2: ScalarImage
    labels: LabelImage
    plugs: list[Plug] = field(default_factory=list)


def _grid(levels: tuple[str, ...], in_plane: float, step: float) -> tuple[tuple[int, int, int], np.ndarray]:
    length = len(levels) * (HEIGHT + DISC_MM) + 36
    shape = (int(round(84 / in_plane)), int(round(length / in_plane)), 11)
    affine = np.zeros((4, 4))
    affine[:3, 0] = [0, -in_plane, 0]  # columns run posterior
    affine[:3, 1] = [0, 0, -in_plane]  # rows run inferior
    affine[:3, 2] = [step, 0, 0]  # slices run right
    affine[3, 3] = 1
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return shape, affine


def make_study(plugs: list[Plug], motion: Motion | None = None, levels: tuple[str, ...] = LEVELS,
               in_plane: float = 1.1, step: float = 4.0, noise: float = 0.02, seed: int = 0) -> PhantomStudy:
    """One time point; ``motion`` moves the anatomy inside a fixed scanner grid."""
    rng = np.random.default_rng(seed)
    shape, affine = _grid(levels, in_plane, step)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    if motion is not None:  # anatomy point q appears at R q + t: sample the anatomy at R^-1 (p - t)
        xyz = (xyz - np.asarray(motion.shift)) @ motion.matrix()
    n = len(levels)
    pitch = HEIGHT + DISC_MM
    labels = np.zeros(len(xyz), dtype=np.uint8)
    types = np.zeros(len(xyz), dtype=np.uint8)
    centre_of_arc = np.array([0.0, -RADIUS + 5.0, 0.0])
    frames = []
    for index in range(n):
        phi = (index - (n - 1) / 2) * pitch / RADIUS
        centre = centre_of_arc + RADIUS * np.array([0.0, np.cos(phi), -np.sin(phi)])
        axis = np.array([0.0, np.sin(phi), np.cos(phi)])
        ap = np.array([0.0, np.cos(phi), -np.sin(phi)])
        frames.append((centre, axis, ap))
    for index, level in enumerate(levels):
        centre, axis, ap = frames[index]
        rel = xyz - centre
        w, u, v = rel @ axis, rel @ ap, rel[:, 0]
        section = (u / 16.0) ** 2 + (v / 18.0) ** 2 <= 1
        body = (np.abs(w) <= HEIGHT / 2) & section
        labels[body] = 1
        for plug in plugs:
            if plug.level != level:
                continue
            depth = HEIGHT / 2 - w if plug.endplate == "superior" else w + HEIGHT / 2
            inside = body & (depth <= plug.depth_mm) & (u ** 2 + v ** 2 <= plug.radius_mm ** 2)
            labels[inside] = 3
            types[inside] = int(plug.types[-1])
            if len(plug.types) > 1:
                types[inside & (depth <= plug.depth_mm * plug.split)] = int(plug.types[0])
        if index + 1 < n:
            below_centre, below_axis, _ = frames[index + 1]
            w_below = (xyz - below_centre) @ below_axis
            disc = (w < -HEIGHT / 2) & (w_below > HEIGHT / 2) & section & (labels == 0)
            labels[disc] = 2
    labels, types = labels.reshape(shape), types.reshape(shape)
    t1 = np.full(shape, BACKGROUND[0], dtype=np.float32)
    t2 = np.full(shape, BACKGROUND[1], dtype=np.float32)
    for value, (s1, s2) in ((1, MARROW), (3, MARROW), (2, DISC)):
        t1[labels == value], t2[labels == value] = s1, s2
    for code, (r1, r2) in TYPE_SIGNAL.items():
        t1[types == int(code)], t2[types == int(code)] = MARROW[0] * r1, MARROW[1] * r2
    t1 *= 1 + noise * rng.standard_normal(shape).astype(np.float32)
    t2 *= 1 + noise * rng.standard_normal(shape).astype(np.float32)
    return PhantomStudy(ScalarImage(t1, affine), ScalarImage(t2, affine), LabelImage(labels, affine), list(plugs))


def write_nifti_study(study: PhantomStudy, folder: Path) -> tuple[Path, Path]:
    """folder/sub_T1w.nii.gz + sub_T2w.nii.gz; the label map next to it. Returns (study, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(study.t1, str(folder / "sub_T1w.nii.gz"))
    save_nifti(study.t2, str(folder / "sub_T2w.nii.gz"))
    labels = folder.parent / f"{folder.name}_labels.nii.gz"
    save_nifti(study.labels, str(labels))
    return folder, labels


def write_dicom_study(study: PhantomStudy, folder: Path, patient_id: str) -> Path:
    """The T1 and T2 as a DICOM study with canary identifiers."""
    spec = StudySpec(patient_name=f"CANARY^{patient_id}", patient_id=patient_id, patient_birth_date="19450101")
    write_mr_series(study.t1, folder / "t1", SeriesSpec(3, "T1_TSE_SAG", 550.0, 11.0), spec)
    write_mr_series(study.t2, folder / "t2", SeriesSpec(4, "T2_TSE_SAG", 3500.0, 95.0), spec)
    return folder


#: a pair with every kind of evolution: 1 -> 2, 1 -> 1/2 (stays 1-ish), grows, regresses, new
BASELINE_PLUGS = [Plug("L3", "inferior", 7.0, ("1",)), Plug("L4", "inferior", 8.0, ("1",)),
                  Plug("L5", "superior", 6.0, ("1",)), Plug("L5", "inferior", 5.0, ("2",))]
FOLLOWUP_PLUGS = [Plug("L4", "inferior", 8.0, ("2",)), Plug("L5", "superior", 11.0, ("1",)),
                  Plug("L5", "inferior", 5.0, ("2",)), Plug("S1", "superior", 6.0, ("1",))]
EXPECTED = {("L3", "inferior"): "regressed", ("L4", "inferior"): "type change",
            ("L5", "superior"): "same type", ("L5", "inferior"): "same type", ("S1", "superior"): "new"}
MOTION = Motion(angle_deg=4.0, shift=(1.5, 4.0, -7.0))


def test_phantom_follow_up_is_moved_anatomy() -> None:
    base = make_study(BASELINE_PLUGS, noise=0.0)
    follow = make_study(BASELINE_PLUGS, MOTION, noise=0.0)
    assert set(np.unique(base.labels.array)) == {0, 1, 2, 3}
    assert abs(int((base.labels.array == 3).sum()) - int((follow.labels.array == 3).sum())) < \
        0.15 * (base.labels.array == 3).sum()
    assert not np.array_equal(base.labels.array, follow.labels.array)
