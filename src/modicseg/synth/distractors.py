"""Marrow-like distractors in the soft tissue of training samples (background, label 0).

Real abdomens hold bowel loops, organs and muscle whose T1/T2 signal overlaps that of vertebral
marrow; the generator's smooth viscera do not. Without such look-alikes a network learns "marrow
signal = vertebral body" and marks the abdominal wall and bowel as bone on real scans. These
blobs (ellipsoids of random size, orientation and texture, with a soft edge) copy the marrow's
signal in both weightings give or take 40 %, and stay a margin away from every labelled structure
so the labels remain exact.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from modicseg.core.labels import BODY_VALUES, DISC
from modicseg.synth import tissues as tis

#: Tissues a distractor may be centred in (soft tissue in front of and behind the spine).
HOST_TISSUES = (tis.VISCERA, tis.MUSCLE, tis.FAT)


def marrow_level(image: np.ndarray, centre_ids: np.ndarray) -> float:
    """Median signal of normal vertebral marrow in one channel (1.0 when no marrow is in view)."""
    marrow = (centre_ids >= tis.MARROW_BASE) & (centre_ids < tis.MARROW_BASE + tis.MAX_VERTEBRAE)
    return float(np.median(image[marrow])) if marrow.any() else 1.0


def rotated_ellipsoid(centre: np.ndarray, reach: np.ndarray, radii_mm: np.ndarray, spacing: np.ndarray,
                      shape: np.ndarray, rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray]:
    """(box around ``centre``, ``reach`` voxels each way, clipped to ``shape``; normalised radius
    in that box of an ellipsoid with ``radii_mm`` in a random orientation: 1 on its surface)."""
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, spacing, strict=True)]
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) @ q
    return box, np.sqrt((grid / radii_mm) ** 2 @ np.ones(3))


def add_distractors(images: dict[str, np.ndarray], centre_ids: np.ndarray, labels: np.ndarray,
                    spacing: np.ndarray, rng: np.random.Generator, count: int,
                    margin_mm: float = 3.0) -> int:
    """Paint up to ``count`` marrow-like blobs into ``images`` (in place); the number painted.

    ``centre_ids`` and ``labels`` are on the images' grid (axes i, j, k with ``spacing`` mm).
    """
    if count <= 0:
        return 0
    spacing = np.asarray(spacing, dtype=np.float64)
    host = np.isin(centre_ids, HOST_TISSUES)
    # distance (mm) from every labelled voxel; blobs fade out before reaching the margin
    distance = ndimage.distance_transform_edt(labels == 0, sampling=spacing).astype(np.float32)
    allowed = np.clip((distance - np.float32(margin_mm)) / np.float32(2.0), 0.0, 1.0)
    candidates = np.argwhere(host & (distance > margin_mm + 5.0))
    if len(candidates) == 0:
        return 0
    levels = {name: marrow_level(img, centre_ids) for name, img in images.items()}
    shape = np.asarray(centre_ids.shape)
    painted = 0
    for _ in range(int(rng.integers(1, count + 1))):
        centre = candidates[rng.integers(len(candidates))]
        radii_mm = rng.uniform(4.0, 22.0, size=3)
        radii_mm[rng.integers(3)] *= rng.uniform(1.0, 2.5)  # some elongated, like bowel loops
        reach = np.ceil(radii_mm / spacing).astype(int) + 2
        box, rho = rotated_ellipsoid(centre, reach, radii_mm, spacing, shape, rng)
        edge_mm = rng.uniform(0.5, 2.5)
        alpha = np.clip((1.0 - rho) * radii_mm.min() / edge_mm, 0.0, 1.0).astype(np.float32)
        alpha *= allowed[box]
        if not alpha.any():
            continue
        texture = 1.0 + np.float32(rng.uniform(0.0, 0.15)) * rng.standard_normal(alpha.shape).astype(np.float32)
        texture = ndimage.gaussian_filter(texture, sigma=float(rng.uniform(0.5, 1.5)))
        for name, img in images.items():
            value = np.float32(levels[name] * rng.uniform(0.6, 1.4))
            region = img[box]
            region += alpha * (value * texture - region)
        painted += 1
    return painted


#: Tissues a perivertebral look-alike may be centred in: not the canal, nerve roots or posterior
#: elements (the network already sees those next to the bodies).
PERIVERTEBRAL_HOSTS = (tis.VISCERA, tis.MUSCLE, tis.FAT, tis.LIGAMENT, tis.VESSEL)


def add_perivertebral_lookalikes(images: dict[str, np.ndarray], centre_ids: np.ndarray, labels: np.ndarray,
                                 spacing: np.ndarray, rng: np.random.Generator, count: int,
                                 reach_mm: float = 4.0) -> int:
    """Paint ``count // 2 + 1`` to ``count`` lesion-like blobs against the outside of the bodies.

    Real scans hold fat, segmental vessels and ligament in front of and beside each body, often in
    its waist at mid-height and at its corners. Their signal can equal that of a Modic change (fat:
    high T1 and T2), and without such look-alikes in training a network marks them as lesions.
    Each blob (radii 2-7 mm, one of them up to 3 times longer) is centred within ``reach_mm``
    outside a body, in fat, muscle, viscera, ligament or vessel (each present tissue equally
    likely), and takes per channel 0.5-1.8 times the marrow's signal (half of them fat-like: T1
    1.2-1.8, T2 1.0-1.6). Blobs fade in over the first millimetre outside any labelled voxel, so the
    cortex and the labels stay exact (label 0). Returns the number painted.
    """
    if count <= 0:
        return 0
    spacing = np.asarray(spacing, dtype=np.float64)
    outside_any = ndimage.distance_transform_edt(labels == 0, sampling=spacing).astype(np.float32)
    from_bone = ndimage.distance_transform_edt(~np.isin(labels, BODY_VALUES),
                                               sampling=spacing)
    ring = (from_bone > 0.5) & (from_bone <= reach_mm)
    # each host tissue present is equally likely, so that the psoas beside the bodies does not
    # outnumber the fat and vessels in front of them
    by_tissue = [np.argwhere(ring & (centre_ids == t)) for t in PERIVERTEBRAL_HOSTS]
    by_tissue = [c for c in by_tissue if len(c)]
    if not by_tissue:
        return 0
    allowed = np.clip(outside_any - np.float32(0.3), 0.0, 1.0)
    levels = {name: marrow_level(img, centre_ids) for name, img in images.items()}
    shape = np.asarray(centre_ids.shape)
    painted = 0
    for _ in range(int(rng.integers(count // 2 + 1, count + 1))):
        candidates = by_tissue[rng.integers(len(by_tissue))]
        centre = candidates[rng.integers(len(candidates))]
        radii_mm = rng.uniform(2.0, 7.0, size=3)
        radii_mm[rng.integers(3)] *= rng.uniform(1.0, 3.0)  # some long, like a vessel or a fat seam
        reach = np.ceil(radii_mm.max() / spacing).astype(int) + 2
        box, rho = rotated_ellipsoid(centre, reach, radii_mm, spacing, shape, rng)
        alpha = np.clip((1.0 - rho) * radii_mm.min() / rng.uniform(0.3, 1.0), 0.0, 1.0).astype(np.float32)
        alpha *= allowed[box]
        if not alpha.any():
            continue
        if rng.random() < 0.5:  # fat-like
            ratios = {"T1": rng.uniform(1.2, 1.8), "T2": rng.uniform(1.0, 1.6)}
        else:
            ratios = {name: rng.uniform(0.5, 1.8) for name in images}
        texture = 1.0 + np.float32(rng.uniform(0.0, 0.1)) * rng.standard_normal(alpha.shape).astype(np.float32)
        for name, img in images.items():
            value = np.float32(levels[name] * ratios.get(name, 1.0))
            region = img[box]
            region += alpha * (value * texture - region)
        painted += 1
    return painted


def add_endplate_notches(images: dict[str, np.ndarray], centre_ids: np.ndarray, labels: np.ndarray,
                         spacing: np.ndarray, rng: np.random.Generator, count: int) -> int:
    """Press ``count // 2 + 1`` to ``count`` disc-filled notches into the endplates (Schmorl-node-like).

    Real endplates are irregular: disc material herniates into the body (Schmorl nodes, 1-6 mm
    deep, often with a dark sclerotic rim), and the thick sagittal slices blur the notches into
    strips of mixed signal under the disc. Without them in training a network marks them as Modic
    changes (type 3 when the rim is dark). Each notch is a dome under a random endplate point,
    2-8 mm in radius along the endplate and at most 1.5-7 mm deep, that becomes **disc** (labels
    are changed, in place) and takes the local disc's signal (0.6-1.2 times, per channel); 60 % get
    a 0.7-2 mm rim of low T1 and T2 signal (0.3-0.7 times the marrow's) that stays body (or lesion).
    Returns the number made.
    """
    if count <= 0:
        return 0
    spacing = np.asarray(spacing, dtype=np.float64)
    bone = np.isin(labels, BODY_VALUES)
    disc = labels == DISC
    if not bone.any() or not disc.any():
        return 0
    from_disc = ndimage.distance_transform_edt(~disc, sampling=spacing).astype(np.float32)
    surface = np.argwhere(bone & (from_disc <= spacing.min() * 1.01))  # bone voxels face to face with a disc
    if len(surface) == 0:
        return 0
    levels = {name: marrow_level(img, centre_ids) for name, img in images.items()}
    shape = np.asarray(labels.shape)
    made = 0
    for _ in range(int(rng.integers(count // 2 + 1, count + 1))):
        centre = surface[rng.integers(len(surface))]
        width_mm, depth_mm = rng.uniform(2.0, 8.0), rng.uniform(1.5, 7.0)
        radius_mm = max(width_mm, 1.5 * depth_mm)  # the dome's reach along the endplate
        rim_mm = rng.uniform(0.7, 2.0) if rng.random() < 0.6 else 0.0
        reach = np.ceil((radius_mm + rim_mm) / spacing).astype(int) + 2
        lo, hi = np.maximum(centre - reach, 0), np.minimum(centre + reach + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, spacing, strict=True)]
        radial = np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij", sparse=True)))
        # mm inside the dome's floor (> 0 inside), the floor following the endplate's own shape
        margin = depth_mm * (1.0 - (radial / radius_mm) ** 2) - from_disc[box]
        in_bone = bone[box]
        notch = in_bone & (margin > 0)
        if not notch.any():
            continue
        near_disc = disc[box] & (radial <= radius_mm + 10.0)
        alpha = np.clip(0.5 + margin / 0.8, 0.0, 1.0).astype(np.float32) * in_bone
        rim = in_bone & ~notch & (margin > -rim_mm) if rim_mm else np.zeros_like(notch)
        for name, img in images.items():
            region = img[box]
            local_disc = float(np.median(region[near_disc])) if near_disc.any() else levels[name]
            fill = np.float32(local_disc * rng.uniform(0.6, 1.2))
            if rim.any():
                dark = np.float32(levels[name] * rng.uniform(0.3, 0.7))
                region[rim] += np.float32(0.8) * (dark - region[rim])
            region += alpha * (fill - region)
        labels[box][notch] = DISC
        made += 1
    return made
