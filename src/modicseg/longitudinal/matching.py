"""Pair baseline and follow-up lesions: same vertebra and endplate first, then overlap.

Vertebrae are paired by overlap after registration (so a level named differently at the two time
points still pairs with itself), falling back to level names.  Within one vertebra and endplate
lesions are paired one-to-one by overlap (Dice), then by distance between registered centres.
Lesions left over are paired across endplates when they overlap well (Dice >= 0.2); what is still
left is a regressed baseline lesion or a new follow-up lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.core.image import LabelImage
from modicseg.core.resample import resample_to
from modicseg.longitudinal.registration import Registration
from modicseg.longitudinal.timepoint import Timepoint
from modicseg.report.models import Lesion

_LPS = np.array([-1.0, -1.0, 1.0])
MIN_CROSS_DICE = 0.2


@dataclass
class LesionPair:
    """A baseline lesion and its follow-up (either may be None)."""

    baseline_id: int | None
    followup_id: int | None
    matched_by: str  # "vertebra+endplate", "overlap" or "" (unmatched)
    dice: float | None = None
    distance_mm: float | None = None


def moved_lesion_map(baseline: Timepoint, followup: Timepoint, registration: Registration) -> np.ndarray:
    """The follow-up lesion ids on the baseline grid (nearest neighbour)."""
    image = LabelImage(followup.lesion_map.astype(np.int32), followup.labels.affine)
    return resample_to(image, baseline.labels, registration.transform).array


def _overlaps(base_map: np.ndarray, moved: np.ndarray) -> dict[tuple[int, int], float]:
    both = (base_map > 0) & (moved > 0)
    sizes_b = dict(zip(*np.unique(base_map[base_map > 0], return_counts=True), strict=True))
    sizes_f = dict(zip(*np.unique(moved[moved > 0], return_counts=True), strict=True))
    pairs, counts = np.unique(np.stack([base_map[both], moved[both]]), axis=1, return_counts=True)
    return {(int(b), int(f)): float(2 * c / (sizes_b[b] + sizes_f[f])) for (b, f), c in zip(pairs.T, counts,
                                                                                           strict=True)}


def _followup_key(lesion: Lesion, registration: Registration, base_by_level: dict[str, int]) -> int | None:
    inverse = {f: b for b, f in registration.vertebra_pairs.items()}
    if lesion.vertebra in inverse:
        return inverse[lesion.vertebra]
    return base_by_level.get(lesion.level or "")


def _registered_centre(lesion: Lesion, registration: Registration) -> np.ndarray | None:
    inverse = registration.transform.GetInverse()
    lps = np.asarray(lesion.centre_ras, float) * _LPS
    return np.asarray(inverse.TransformPoint([float(v) for v in lps])) * _LPS


def match_lesions(baseline: Timepoint, followup: Timepoint, registration: Registration) -> list[LesionPair]:
    """One-to-one pairs, then regressed baseline lesions, then new follow-up lesions."""
    overlaps = _overlaps(baseline.lesion_map, moved_lesion_map(baseline, followup, registration))
    base_by_level = {v.level: v.label for v in baseline.vertebrae if v.level}
    base = {les.id: les for les in baseline.lesions}
    follow = {les.id: les for les in followup.lesions}
    centres = {f: _registered_centre(les, registration) for f, les in follow.items()}
    candidates = []
    for b, bl in base.items():
        for f, fl in follow.items():
            same_place = (bl.vertebra == _followup_key(fl, registration, base_by_level)
                          and bl.endplate == fl.endplate)
            dice = overlaps.get((b, f), 0.0)
            distance = None
            if centres[f] is not None:
                distance = float(np.linalg.norm(np.asarray(bl.centre_ras, float) - centres[f]))
            if same_place:
                candidates.append((0, -dice, distance if distance is not None else 1e9, b, f, "vertebra+endplate"))
            elif dice >= MIN_CROSS_DICE:
                candidates.append((1, -dice, distance if distance is not None else 1e9, b, f, "overlap"))
    pairs: list[LesionPair] = []
    used_b: set[int] = set()
    used_f: set[int] = set()
    for _, neg_dice, distance, b, f, how in sorted(candidates):
        if b in used_b or f in used_f:
            continue
        used_b.add(b)
        used_f.add(f)
        pairs.append(LesionPair(b, f, how, -neg_dice, None if distance >= 1e9 else distance))
    pairs.sort(key=lambda p: p.baseline_id)  # type: ignore[arg-type, return-value]
    pairs += [LesionPair(b, None, "") for b in sorted(base) if b not in used_b]
    pairs += [LesionPair(None, f, "") for f in sorted(follow) if f not in used_f]
    return pairs
