"""Whether a lesion shows a marrow signal change on the images given.

A Modic change is marrow whose signal differs from the same vertebra's normal marrow: every type is
set apart from it on at least one contrast (type 1 low on T1, high on T2 / STIR; type 2 high on T1;
type 3 low on both). A lesion part whose voxels are, for the most part, inside the range that no
type's band sets apart from normal marrow on every image given has nothing a reader could see:
it is not counted. The range comes from the configured typing bands (``typing.bands`` /
``typing.stir_bands``), so nothing here is a separate threshold. A type-2 change is iso on a T2 or
STIR image alone; such a change cannot be seen without the T1, and is not reported from the fluid
image alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from modicseg.analysis.config import TypeBand

#: A lesion is counted when at least this share of its voxels lies outside the normal-marrow range
#: on at least one image (a majority: most of the lesion must look abnormal).
MIN_CHANGED_FRACTION = 0.5


def normal_range(bands: Mapping[str, TypeBand], channel: str) -> tuple[float, float]:
    """[low, high): ratios to the reference marrow that no type's band sets apart from normal marrow
    on ``channel`` ("t1" or "t2" = the fluid-sensitive image). Bands that contain the ratio 1 (type 2
    on T2: iso or high) set nothing apart on that image."""
    low, high = 0.0, math.inf
    for band in bands.values():
        lo, hi = getattr(band, channel)
        if hi <= 1.0:
            low = max(low, float(hi))
        elif lo >= 1.0:
            high = min(high, float(lo))
    return low, high


def changed_fraction(images: Sequence[np.ndarray | None], references: Sequence[float | None],
                     ranges: Sequence[tuple[float, float]], ijk: np.ndarray) -> float | None:
    """Share of the voxels ``ijk`` whose ratio to the reference marrow lies outside the normal range on at
    least one image (None where no image has a usable reference)."""
    changed = np.zeros(len(ijk), dtype=bool)
    judged = False
    index = tuple(np.asarray(ijk).T)
    for image, reference, (low, high) in zip(images, references, ranges, strict=True):
        if image is None or reference is None or not reference > 0:
            continue
        ratio = image[index] / reference
        changed |= (ratio < low) | (ratio >= high)
        judged = True
    if not judged or len(ijk) == 0:
        return None
    return float(changed.mean())
