"""Small analytic spine phantoms with exact geometry for the analysis tests (and tests of the phantom).

A lordotic column of tilted elliptic-cylinder vertebral bodies with discs between them, on a
sagittal grid with thick slices; lesions are elliptic plugs reaching into a body from one
endplate.  Truth is analytic: height h along each body's own axis, extent d of each lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from tests.dicom_factory import T1_SERIES, T2_SERIES, canary_study, sagittal_affine

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
#: signal ratios to normal marrow (T1, T2) used to paint each type
TYPE_SIGNAL = {"1": (0.6, 1.6), "2": (1.6, 1.3), "3": (0.45, 0.5)}
MARROW = (400.0, 250.0)
DISC_SIGNAL = (300.0, 600.0)
BACKGROUND = (60.0, 120.0)


@dataclass
class PhantomLesion:
    level: str
    endplate: str  # superior / inferior
    depth_mm: float  # extent from the endplate along the axis
    radius_ap_mm: float = 8.0
    radius_lr_mm: float = 9.0
    offset_ap_mm: float = 0.0
    types: tuple[str, ...] = ("1",)  # one type, or two: the part near the endplate first
    split: float = 0.5  # share of the depth taken by the first type
    gap_mm: float = 0.0  # marrow (body label) left between the endplate surface and the lesion: a cortical
    #                      endplate line; depth_mm still counts from the surface


@dataclass
class Phantom:
    labels: LabelImage
    t1: ScalarImage
    t2: ScalarImage
    types: np.ndarray
    heights: dict[str, float]
    axes: dict[str, np.ndarray]
    lesions: list[PhantomLesion] = field(default_factory=list)


def make_phantom(lesions: list[PhantomLesion] | None = None, levels: tuple[str, ...] = LEVELS,
                 height_mm: float = 26.0, disc_mm: float = 9.0, radius_mm: float = 250.0,
                 in_plane: float = 0.8, step: float = 4.0, noise: float = 0.02, seed: int = 0,
                 touching: tuple[str, ...] = ()) -> Phantom:
    """Phantom on a sagittal grid (i posterior, j inferior, k right).

    ``touching``: levels whose body is joined to the body below by a bridge of body voxels
    through the disc (to test splitting).
    """
    rng = np.random.default_rng(seed)
    lesions = lesions or []
    n = len(levels)
    pitch = height_mm + disc_mm
    length = n * pitch + 30
    shape = (int(round(80 / in_plane)), int(round(length / in_plane)), 13)
    affine = sagittal_affine(shape, in_plane=in_plane, step=step, centre_ras=(0.0, 0.0, 0.0))
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    labels = np.zeros(len(xyz), dtype=np.uint8)
    types = np.zeros(len(xyz), dtype=np.uint8)
    heights, axes = {}, {}
    # arc in the sagittal (y, z) plane, concave posteriorly (lordosis), centre of curvature behind
    arc_centre = np.array([0.0, -radius_mm + 5.0, 0.0])
    angles = (np.arange(n) - (n - 1) / 2) * pitch / radius_mm  # 0 at the middle, positive is inferior
    frames = []
    for index, level in enumerate(levels):
        phi = angles[index]
        centre = arc_centre + radius_mm * np.array([0.0, np.cos(phi), -np.sin(phi)])
        axis = np.array([0.0, -np.sin(phi), -np.cos(phi)])  # tangent, toward superior
        axis = -axis if axis[2] < 0 else axis
        ap = np.array([0.0, np.cos(phi), -np.sin(phi)])  # radial, anterior
        ap = ap - (ap @ axis) * axis
        ap /= np.linalg.norm(ap)
        frames.append((centre, axis, ap))
        heights[level] = height_mm
        axes[level] = axis
    a_ap, b_lr = 16.0, 20.0
    for index, level in enumerate(levels):
        centre, axis, ap = frames[index]
        rel = xyz - centre
        w, u, v = rel @ axis, rel @ ap, rel[:, 0]
        body = (np.abs(w) <= height_mm / 2) & ((u / a_ap) ** 2 + (v / b_lr) ** 2 <= 1)
        labels[body] = 1
        for lesion in lesions:
            if lesion.level != level:
                continue
            depth = (height_mm / 2 - w) if lesion.endplate == "superior" else (w + height_mm / 2)
            plug = body & (depth <= lesion.depth_mm) & (depth > lesion.gap_mm) & (
                ((u - lesion.offset_ap_mm) / lesion.radius_ap_mm) ** 2 + (v / lesion.radius_lr_mm) ** 2 <= 1)
            labels[plug] = 3
            first = plug & (depth <= lesion.depth_mm * (lesion.split if len(lesion.types) > 1 else 1.0))
            types[plug] = int(lesion.types[-1])
            types[first] = int(lesion.types[0])
        if index + 1 < n:
            below_centre, below_axis, _ = frames[index + 1]
            mid_axis = axis + below_axis
            mid_axis /= np.linalg.norm(mid_axis)
            w_below = (xyz - below_centre) @ below_axis
            mid = (centre + below_centre) / 2
            rel_mid = xyz - mid
            u_mid = rel_mid @ (ap + frames[index + 1][2]) / 2
            disc = (w < -height_mm / 2) & (w_below > height_mm / 2) & (
                (u_mid / a_ap) ** 2 + (xyz[:, 0] / b_lr) ** 2 <= 1) & (labels == 0)
            labels[disc] = 2
            if level in touching:
                bridge = disc & (np.abs(u_mid) < 4) & (np.abs(xyz[:, 0]) < 6)
                labels[bridge] = 1
    labels = labels.reshape(shape)
    types = types.reshape(shape)
    t1 = np.full(shape, BACKGROUND[0], dtype=np.float32)
    t2 = np.full(shape, BACKGROUND[1], dtype=np.float32)
    gain = 1.0 + 0.15 * (xyz[:, 2].reshape(shape) / (length / 2))  # smooth coil bias along z
    for value, (s1, s2) in ((1, MARROW), (3, MARROW), (2, DISC_SIGNAL)):
        t1[labels == value], t2[labels == value] = s1, s2
    for code, (r1, r2) in TYPE_SIGNAL.items():
        t1[types == int(code)] = MARROW[0] * r1
        t2[types == int(code)] = MARROW[1] * r2
    t1 = t1 * gain * (1 + noise * rng.standard_normal(shape))
    t2 = t2 * gain * (1 + noise * rng.standard_normal(shape))
    return Phantom(labels=LabelImage(labels, affine), t1=ScalarImage(t1.astype(np.float32), affine),
                   t2=ScalarImage(t2.astype(np.float32), affine), types=types, heights=heights, axes=axes,
                   lesions=lesions)


def write_phantom_dicom(phantom: Phantom, root: Path) -> Path:
    """The phantom's T1 and T2 as a DICOM study with canary identifiers; returns the study folder."""
    study = canary_study()
    write_mr_series(phantom.t1, root / "t1", SeriesSpec(series_number=3, **T1_SERIES), study)
    write_mr_series(phantom.t2, root / "t2", SeriesSpec(series_number=4, **T2_SERIES), study)
    return root


DEFAULT_LESIONS = [
    PhantomLesion("L4", "inferior", 8.0, types=("1",)),
    PhantomLesion("L5", "superior", 6.0, types=("1", "2"), split=0.6),
    PhantomLesion("L2", "superior", 4.0, types=("2",)),
    PhantomLesion("S1", "superior", 14.0, types=("3", "2"), split=0.7),
]


def test_phantom_has_expected_structures() -> None:
    ph = make_phantom(DEFAULT_LESIONS)
    values = set(np.unique(ph.labels.array).tolist())
    assert values == {0, 1, 2, 3}
    assert set(np.unique(ph.types).tolist()) == {0, 1, 2, 3}
    assert ((ph.types > 0) == (ph.labels.array == 3)).all()
