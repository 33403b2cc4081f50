"""Rigid registration of the follow-up onto the baseline, driven by the vertebral bodies and T2.

1. Landmarks: the centres of the vertebral bodies, paired by level name (or shifted by one level
   when that fits far better), give a least-squares rigid transform (Kabsch).
2. Refinement: mutual information on the T2 images (or mean squares on smoothed body masks when
   an image is missing), restricted to the baseline's bodies and discs, started from step 1.
3. The refined transform is kept only when the bodies overlap (Dice) at least as well as with 1.

Transforms follow SimpleITK: they map baseline (fixed) LPS points to follow-up (moving) points,
so ``resample_to(followup_image, baseline_grid, transform)`` puts the follow-up on the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from modicseg.core.convert import to_sitk
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import BODY_VALUES, STRUCTURE_VALUES
from modicseg.core.resample import resample_to
from modicseg.longitudinal.timepoint import Timepoint
from modicseg.report.models import Vertebra

_D = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS


@dataclass
class Registration:
    """The chosen transform and how good it is."""

    transform: sitk.Euler3DTransform  # baseline LPS -> follow-up LPS
    method: str
    level_shift: int  # follow-up vertebra label - baseline vertebra label at the same level
    landmark_pairs: int
    landmark_rms_mm: float | None
    body_dice: dict[str, float | None] = field(default_factory=dict)
    vertebra_pairs: dict[int, int] = field(default_factory=dict)  # baseline label -> follow-up label
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        matrix = np.asarray(self.transform.GetMatrix()).reshape(3, 3)
        rotation = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(matrix) - 1) / 2))))
        affine_ras = np.eye(4)  # baseline RAS -> follow-up RAS
        affine_ras[:3, :3] = _D @ matrix @ _D
        centre = np.asarray(self.transform.GetCenter())
        translation = np.asarray(self.transform.GetTranslation()) + centre - matrix @ centre
        affine_ras[:3, 3] = _D @ translation
        return {
            "method": self.method,
            "maps": "baseline RAS mm -> follow-up RAS mm",
            "affine_ras": np.round(affine_ras, 6).tolist(),
            "rotation_deg": round(rotation, 3),
            "translation_mm": round(float(np.linalg.norm(translation)), 3),
            "level_shift": self.level_shift,
            "landmark_pairs": self.landmark_pairs,
            "landmark_rms_mm": None if self.landmark_rms_mm is None else round(self.landmark_rms_mm, 3),
            "body_dice": {k: (None if v is None else round(v, 4)) for k, v in self.body_dice.items()},
            "vertebra_pairs": {str(k): v for k, v in sorted(self.vertebra_pairs.items())},
        }


# --- landmarks -----------------------------------------------------------------------------

def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising |R @ source + t - target| (rows are points); translation only below 3 points."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    if len(source) < 3:
        return np.eye(3), ct - cs
    h = (source - cs).T @ (target - ct)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, ct - rotation @ cs


def _landmarks(vertebrae: list[Vertebra]) -> dict[int, tuple[np.ndarray, bool, str | None]]:
    return {v.label: (np.asarray(v.centre_ras, float), v.truncated, v.level) for v in vertebrae}


def _fit(base: dict, follow: dict, shift: int) -> tuple[np.ndarray, np.ndarray, float, int, float] | None:
    """(R, t, rms residual, pairs, mean displacement) pairing baseline label i with follow-up i + shift."""
    pairs = [(label, label + shift) for label in base if label + shift in follow]
    if not pairs:
        return None
    whole = [p for p in pairs if not base[p[0]][1] and not follow[p[1]][1]]
    if len(whole) >= 3:
        pairs = whole
    src = np.array([base[b][0] for b, _ in pairs])
    dst = np.array([follow[f][0] for _, f in pairs])
    rotation, translation = kabsch(src, dst)
    moved = src @ rotation.T + translation
    rms = float(np.sqrt(((dst - moved) ** 2).sum(axis=1).mean()))
    displacement = float(np.linalg.norm(moved - src, axis=1).mean())
    return rotation, translation, rms, len(pairs), displacement


def _level_shift(base: dict, follow: dict) -> int:
    shifts = [f - b for b, (_, _, lb) in base.items() for f, (_, _, lf) in follow.items() if lb and lb == lf]
    if not shifts:
        return 0
    values, counts = np.unique(shifts, return_counts=True)
    return int(values[np.argmax(counts)])


def landmark_transform(baseline: Timepoint, followup: Timepoint) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Rigid (R, t) in RAS from vertebral-body centres, with the level shift and residual.

    Vertebrae are paired by level name; another pairing (one level up or down) is used only when
    it fits far better.  Along a smoothly curved column a shifted pairing can fit as well (a
    rotation along the curve): ``ambiguous`` flags that case when it would also mean a much smaller
    movement of the patient, as a hint that the level names may differ between time points.
    """
    base, follow = _landmarks(baseline.vertebrae), _landmarks(followup.vertebrae)
    if not base or not follow:
        return np.eye(3), np.zeros(3), {"shift": 0, "rms": None, "pairs": 0}
    by_name = _level_shift(base, follow)
    candidates = {s: _fit(base, follow, s) for s in (by_name - 1, by_name, by_name + 1)}
    fits = {s: f for s, f in candidates.items() if f is not None}
    chosen = by_name if by_name in fits else min(fits, key=lambda s: fits[s][2])
    for s, f in fits.items():
        if s != chosen and f[3] >= 3 and fits[chosen][2] > 5.0 and f[2] < 0.5 * fits[chosen][2]:
            chosen = s
    rotation, translation, rms, count, moved = fits[chosen]
    ambiguous = any(s != chosen and f[3] >= 3 and f[2] <= max(2.0, 1.5 * rms) and f[4] < moved - 15.0
                    for s, f in fits.items())
    return rotation, translation, {"shift": chosen, "by_name": by_name, "rms": rms, "pairs": count,
                                   "ambiguous": ambiguous}


def euler_from_ras(rotation: np.ndarray, translation: np.ndarray) -> sitk.Euler3DTransform:
    """The SimpleITK transform (LPS) of a RAS rigid map x -> R x + t."""
    transform = sitk.Euler3DTransform()
    transform.SetMatrix([float(v) for v in (_D @ rotation @ _D).ravel()])
    transform.SetTranslation([float(v) for v in _D @ translation])
    return transform


# --- overlap -------------------------------------------------------------------------------

def _body_mask(labels: LabelImage) -> LabelImage:
    return labels.with_array(np.isin(labels.array, BODY_VALUES).astype(np.uint8))


def body_dice(baseline: Timepoint, followup: Timepoint, transform: sitk.Transform | None) -> float | None:
    """Dice of the vertebral bodies after putting the follow-up on the baseline grid."""
    fixed = np.isin(baseline.labels.array, BODY_VALUES)
    moved = resample_to(_body_mask(followup.labels), baseline.labels, transform).array > 0
    total = fixed.sum() + moved.sum()
    return None if total == 0 else float(2 * (fixed & moved).sum() / total)


def vertebra_correspondence(baseline: Timepoint, followup: Timepoint,
                            transform: sitk.Transform, min_dice: float = 0.3) -> dict[int, int]:
    """Baseline vertebra label -> follow-up label, by overlap after registration."""
    moved = resample_to(LabelImage(followup.instances.astype(np.int16), followup.labels.affine),
                        baseline.labels, transform).array
    pairs: dict[int, int] = {}
    for label in np.unique(baseline.instances):
        if label == 0:
            continue
        inside = baseline.instances == label
        values, counts = np.unique(moved[inside], return_counts=True)
        keep = values > 0
        if not keep.any():
            continue
        values, counts = values[keep], counts[keep]
        best = int(values[np.argmax(counts)])
        dice = 2 * counts.max() / (inside.sum() + (moved == best).sum())
        if dice >= min_dice:
            pairs[int(label)] = best
    return pairs


# --- intensity refinement ------------------------------------------------------------------

def _smoothed_bodies(labels: LabelImage) -> sitk.Image:
    mask = np.isin(labels.array, BODY_VALUES).astype(np.float32)
    sigma = 2.0 / np.maximum(labels.spacing, 1e-3)
    return to_sitk(ScalarImage(ndimage.gaussian_filter(mask, sigma), labels.affine))


#: in-plane working resolution (mm) of the intensity refinement; the thick slice axis is kept
WORKING_MM = 1.0
#: the metric is computed within this distance (mm) of the baseline's bodies and discs
MARGIN_MM = 6.0


def _shrink(image: sitk.Image, mask: bool = False) -> sitk.Image:
    """Block-average to about WORKING_MM in-plane (integer factors per axis, thick axis untouched)."""
    factors = [max(1, int(round(WORKING_MM / s))) if s < WORKING_MM else 1 for s in image.GetSpacing()]
    if max(factors) == 1:
        return image
    shrunk = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
    return sitk.Cast(shrunk > 0, sitk.sitkUInt8) if mask else shrunk


def _crop(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Both cropped to the mask's bounding box."""
    array = sitk.GetArrayViewFromImage(mask)  # z, y, x
    nz = np.argwhere(array > 0)
    if not len(nz):
        return image, mask
    lo, hi = nz.min(axis=0)[::-1], nz.max(axis=0)[::-1] + 1  # x, y, z
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return image[box], mask[box]


def refine(baseline: Timepoint, followup: Timepoint, initial: sitk.Euler3DTransform,
           iterations: int = 60) -> tuple[sitk.Euler3DTransform, str]:
    """Intensity-based rigid refinement started from ``initial``.

    Works at about 1 mm in-plane (block averages), on the baseline cropped to its bodies and discs
    dilated by 6 mm; Mattes mutual information on T2, or mean squares on smoothed body masks.
    """
    if baseline.t2 is not None and followup.t2 is not None:
        fixed = sitk.Cast(to_sitk(baseline.t2), sitk.sitkFloat32)
        moving = sitk.Cast(to_sitk(followup.t2), sitk.sitkFloat32)
        kind = "mutual information on T2"
    else:
        fixed, moving = _smoothed_bodies(baseline.labels), _smoothed_bodies(followup.labels)
        kind = "mean squares on body masks"
    region = np.isin(baseline.labels.array, STRUCTURE_VALUES)
    mask = _shrink(to_sitk(baseline.labels.with_array(region.astype(np.uint8))), mask=True)
    radius = [max(1, int(round(MARGIN_MM / sp))) for sp in mask.GetSpacing()]
    mask = sitk.BinaryDilate(mask, radius, sitk.sitkBall)
    fixed, mask = _crop(_shrink(fixed), mask)
    moving = _shrink(moving)
    method = sitk.ImageRegistrationMethod()
    if kind.startswith("mutual"):
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.15, 0)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=5e-3, numberOfIterations=iterations, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    start = sitk.Euler3DTransform(initial)
    centre = baseline.labels.world_coordinates(np.argwhere(region).mean(axis=0)[None])[0] * [-1, -1, 1]
    _recentre(start, centre)
    method.SetInitialTransform(start, inPlace=True)
    method.Execute(fixed, moving)
    return start, kind


def _recentre(transform: sitk.Euler3DTransform, centre_lps: np.ndarray) -> None:
    """Same mapping, rotation centre moved to ``centre_lps`` (better conditioned optimisation)."""
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    old_c = np.asarray(transform.GetCenter())
    offset = np.asarray(transform.GetTranslation()) + old_c - matrix @ old_c  # x -> Mx + offset
    transform.SetCenter([float(v) for v in centre_lps])
    transform.SetTranslation([float(v) for v in offset - centre_lps + matrix @ centre_lps])


# --- entry point ---------------------------------------------------------------------------

def register_followup(baseline: Timepoint, followup: Timepoint, refine_intensity: bool = True) -> Registration:
    """Register the follow-up to the baseline (see the module docstring)."""
    rotation, translation, info = landmark_transform(baseline, followup)
    landmarks = euler_from_ras(rotation, translation)
    dice = {"identity": body_dice(baseline, followup, None), "landmarks": body_dice(baseline, followup, landmarks)}
    chosen, method = landmarks, "landmarks (vertebral body centres)" if info["pairs"] else "identity"
    notes: list[str] = []
    if info["pairs"] and info["shift"] != info["by_name"]:
        notes.append("vertebral levels are named differently at the two time points: lesions were paired by "
                     "position after registration, not by level name")
    if info.get("ambiguous"):
        notes.append("the vertebrae would also line up shifted by one level with a much smaller patient movement: "
                     "check that the levels are named alike at both time points (QC figure)")
    if refine_intensity:
        try:
            refined, kind = refine(baseline, followup, landmarks)
            dice["refined"] = body_dice(baseline, followup, refined)
            if (dice["refined"] or 0.0) >= (dice["landmarks"] or 0.0):
                chosen, method = refined, f"landmarks + {kind}"
        except RuntimeError as exc:  # SimpleITK optimiser failures
            notes.append(f"intensity refinement failed, landmarks kept: {str(exc).splitlines()[0]}")
    dice["chosen"] = body_dice(baseline, followup, chosen)
    if (dice["chosen"] or 0.0) < 0.5:
        notes.append(f"vertebral bodies overlap poorly after registration (Dice {dice['chosen'] or 0:.2f}): "
                     "check the QC figure")
    pairs = vertebra_correspondence(baseline, followup, chosen)
    return Registration(transform=chosen, method=method, level_shift=int(info["shift"]),
                        landmark_pairs=int(info["pairs"]), landmark_rms_mm=info["rms"], body_dice=dice,
                        vertebra_pairs=pairs, warnings=notes)
