"""Modic-like lesions and look-alikes painted into the marrow of REAL scans (training painter).

Works on a model-space volume: channels [C, X, Y, Z] with axes (left-right slices, posterior ->
anterior, inferior -> superior), its ``spacing`` in mm and a label map whose vertebral bodies are
``BODY``. A lesion grows from one endplate of one body into its marrow:

* footprint: an ellipse over the endplate with a noisy (Fourier-perturbed) outline, 30-100 % of
  the body's width, placed anywhere on the endplate;
* depth below the endplate: a smooth random height field (band-like, 1.5 mm up to 50 % of the
  body height), optionally patchy (smooth random holes);
* signal: the real voxel (its texture) times the type's ratio to the same vertebra's normal
  marrow, blended in over a soft border; the label is the voxels where the blend weight >= 0.5;
* mixed lesions keep their real arrangement: a type-1 band against the endplate over type-2 (or
  type-2 over type-3) marrow, sometimes the reverse.

Look-alikes are painted with the body label unchanged (or disc/background for a notch): round
bright foci away from the endplates (haemangioma-like), focal fat islands, Schmorl-node notches
(disc signal in the endplate, label background), the basivertebral vein (bright line behind the
body centre), and partial volume of the disc at the endplate (a thin blend of disc signal).

Channel kinds: "T1", "T2" (fat bright), "FS" (fat-suppressed fluid-sensitive: STIR/TIRM/Dixon
water), each with its own per-type ratio band; ``None`` marks an absent channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from modicseg.core.labels import BODY, INFERIOR, LESION, SUPERIOR

# Ratio to the vertebra's normal marrow (median), per type and channel kind (inner part of the rule bands).
RATIO_BANDS: dict[int, dict[str, tuple[float, float]]] = {
    1: {"T1": (0.40, 0.72), "T2": (1.35, 2.2), "FS": (1.8, 3.2)},
    2: {"T1": (1.30, 1.85), "T2": (1.00, 1.45), "FS": (0.35, 0.80)},
    3: {"T1": (0.25, 0.65), "T2": (0.25, 0.65), "FS": (0.35, 0.75)},
}
MIXED = {(1, 2): 0.3, (2, 1): 0.1, (2, 3): 0.1, (3, 2): 0.05}  # (against the endplate, deeper): probability


@dataclass
class PaintedLesion:
    """What was painted: body component, endplate, type(s), voxel count."""

    body: int
    endplate: str  # "superior" / "inferior"
    types: tuple[int, ...]
    voxels: int


def body_components(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected vertebral-body components (the masks' bodies are separated by discs)."""
    comp, n = ndimage.label(labels == BODY)
    return comp, n


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: Sequence[float]) -> np.ndarray:
    """A smooth random field scaled to [0, 1]."""
    f = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma_vox, mode="reflect")
    lo, hi = float(f.min()), float(f.max())
    return (f - lo) / max(hi - lo, 1e-6)


def _marrow_median(channel: np.ndarray, body: np.ndarray) -> float:
    inner = ndimage.binary_erosion(body, iterations=1)
    vals = channel[inner if inner.sum() > 30 else body]
    return float(np.median(vals)) if vals.size else 0.0


def _body_crop(comp: np.ndarray, body_id: int) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """(slices of the body's bounding box grown by one voxel, the body's mask there), or None."""
    box = ndimage.find_objects(comp, max_label=body_id)[body_id - 1]
    if box is None:
        return None
    sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
    return sl, comp[sl] == body_id


def _endplate_columns(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z index grid, columns holding body, superior endplate index, inferior endplate index) per
    (x, y) column of a body mask (axis 2 = inferior -> superior)."""
    zz = np.arange(body.shape[2])[None, None, :]
    has = np.asarray(body.any(axis=2))  # an array (numpy types any(axis=...) as bool | array)
    top = np.where(body, zz, -1).max(axis=2)
    bottom = np.where(body, zz, 10**6).min(axis=2)
    return zz, has, top, bottom


def _endplate_distance(zz: np.ndarray, top: np.ndarray, bottom: np.ndarray, superior: bool, sz: float) -> np.ndarray:
    """Distance (mm, voxel centres, along the cranio-caudal axis) of every voxel from one endplate."""
    dist = (top[..., None] - zz) if superior else (zz - bottom[..., None])
    return dist.astype(np.float32) * sz + 0.5 * sz


def paint_lesion(image: np.ndarray, labels: np.ndarray, comp: np.ndarray, body_id: int, spacing: Sequence[float],
                 kinds: Sequence[str | None], rng: np.random.Generator) -> PaintedLesion | None:
    """One Modic-like lesion on one endplate of body component ``body_id`` (in place)."""
    crop = _body_crop(comp, body_id)
    if crop is None:
        return None
    sl, body = crop
    sx, sy, sz = (float(v) for v in spacing)
    zz, has, top, bottom = _endplate_columns(body)
    if has.sum() < 4:
        return None
    height_mm = float(np.median((top - bottom + 1)[has])) * sz
    endplate = SUPERIOR if rng.random() < 0.5 else INFERIOR
    dist = _endplate_distance(zz, top, bottom, endplate == SUPERIOR, sz)
    # footprint: ellipse over the column area with a noisy outline
    xs, ys = np.nonzero(has)
    cx = rng.uniform(xs.min(), xs.max() + 1e-3)
    cy = rng.uniform(ys.min(), ys.max() + 1e-3)
    rx = max(1.0, (xs.max() - xs.min() + 1) * rng.uniform(0.3, 1.0) / 2)
    ry = max(2.0, (ys.max() - ys.min() + 1) * rng.uniform(0.25, 0.9) / 2)
    gx, gy = np.meshgrid(np.arange(body.shape[0]), np.arange(body.shape[1]), indexing="ij")
    ang = np.arctan2((gy - cy) / ry, (gx - cx) / rx)
    wobble = 1.0 + sum(rng.uniform(0, 0.18) * np.cos(k * ang + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    q = np.hypot((gx - cx) / rx, (gy - cy) / ry) / wobble  # < 1 inside
    # depth field (mm): band-like to deep, smooth, with soft footprint edge
    max_depth = height_mm * rng.uniform(0.1, 0.5)
    max_depth = max(max_depth, 1.5 + sz * 0.5)
    field = _smooth_field(rng, body.shape[:2], (max(0.6, 2.0 / sx), 4.0 / sy))
    depth = max_depth * (0.45 + 0.55 * field) * np.clip(1.0 - q ** 2, 0.0, 1.0) ** 0.5
    soft = rng.uniform(0.6, 1.8)  # mm, border softness
    weight = expit((depth[..., None] - dist) / soft)
    weight *= body
    if rng.random() < 0.3:  # patchy
        holes = _smooth_field(rng, body.shape, (0.8, 2.5, 2.5))
        weight *= np.clip((holes - 0.25) / 0.2, 0.0, 1.0)
    weight = weight.astype(np.float32)
    lesion = weight >= 0.5
    n = int(lesion.sum())
    min_vox = max(3, int(round(20.0 / (sx * sy * sz))))
    if n < min_vox:
        return None
    # types: one, or a mixed arrangement along depth
    primary = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    types_map = np.full(body.shape, primary, dtype=np.int8)
    kinds_used: tuple[int, ...] = (primary,)
    for (near, far), p in MIXED.items():
        if near == primary and rng.random() < p:
            split = rng.uniform(0.25, 0.6) * depth[..., None]  # near part: a band against the endplate
            types_map = np.where(dist <= np.maximum(split, 1.0), near, far).astype(np.int8)
            kinds_used = (near, far)
            break
    # signal: marrow texture x ratio relative to this vertebra's marrow (ratio of the local voxel)
    for c, kind in enumerate(kinds):
        if kind is None:
            continue
        if _marrow_median(image[c][sl], body & ~lesion) <= 0:
            return None
    for c, kind in enumerate(kinds):
        if kind is None:
            continue
        ratio = np.ones(body.shape, dtype=np.float32)
        for t in kinds_used:
            ratio[types_map == t] = rng.uniform(*RATIO_BANDS[t][kind])
        view = image[c][sl]
        view *= 1.0 + weight * (ratio - 1.0)
    lab = labels[sl]
    lab[lesion & (lab == BODY)] = LESION
    return PaintedLesion(body_id, endplate, kinds_used, n)


# --- look-alikes (label stays body, or background for a notch) ---------------------------------------

def _ellipsoid_weight(shape: tuple[int, int, int], centre: Sequence[float], radii_vox: Sequence[float],
                      soft: float = 0.3) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / max(rr, 0.5)) ** 2 for g, c, rr in zip(grids, centre, radii_vox, strict=True)))
    return expit((1.0 - r) / soft).astype(np.float32)


def paint_lookalike(image: np.ndarray, labels: np.ndarray, comp: np.ndarray, body_id: int, spacing: Sequence[float],
                    kinds: Sequence[str | None], rng: np.random.Generator) -> str | None:
    """One look-alike in body ``body_id`` (in place); returns its kind."""
    crop = _body_crop(comp, body_id)
    if crop is None:
        return None
    sl, body = crop
    sx, sy, sz = (float(v) for v in spacing)
    idx = np.argwhere(ndimage.binary_erosion(body, iterations=1) if body.sum() > 200 else body)
    if len(idx) < 10:
        return None
    zmin, zmax = idx[:, 2].min(), idx[:, 2].max()
    what = str(rng.choice(["haemangioma", "fat_island", "notch", "basivertebral", "disc_partial_volume"],
                          p=[0.25, 0.2, 0.2, 0.15, 0.2]))
    shape = body.shape
    if what in ("haemangioma", "fat_island"):
        mid = idx[(idx[:, 2] > zmin + 0.3 * (zmax - zmin)) & (idx[:, 2] < zmax - 0.3 * (zmax - zmin))]
        if len(mid) == 0:
            return None
        c = mid[rng.integers(len(mid))].astype(float)
        r_mm = rng.uniform(2.0, 6.0)
        w = _ellipsoid_weight(shape, c, (r_mm / sx, r_mm / sy, r_mm / sz)) * body
        for ch, kind in enumerate(kinds):
            if kind is None:
                continue
            if what == "haemangioma":  # T1 and T2 bright (fat + vascular), FS bright
                ratio = {"T1": rng.uniform(1.2, 1.8), "T2": rng.uniform(1.4, 2.2), "FS": rng.uniform(1.5, 2.8)}[kind]
            else:  # fat: T1 bright, T2 iso-bright, FS dark
                ratio = {"T1": rng.uniform(1.3, 1.8), "T2": rng.uniform(1.0, 1.4), "FS": rng.uniform(0.4, 0.8)}[kind]
            image[ch][sl] *= 1.0 + w * (ratio - 1.0)
        return what
    if what == "basivertebral":
        # a short bright line from the posterior wall towards the centre at mid-height
        zc = 0.5 * (zmin + zmax) + rng.uniform(-0.1, 0.1) * (zmax - zmin)
        xs = idx[:, 0]
        xc = float(np.median(xs)) + rng.uniform(-1, 1)
        ys_post = idx[:, 1].min()
        length = (idx[:, 1].max() - ys_post) * rng.uniform(0.2, 0.45)
        c = (xc, ys_post + length / 2, zc)
        w = _ellipsoid_weight(shape, c, (rng.uniform(1.0, 2.5) / sx, length / 2, rng.uniform(1.0, 2.0) / sz)) * body
        for ch, kind in enumerate(kinds):
            if kind is None:
                continue
            ratio = {"T1": rng.uniform(0.7, 1.1), "T2": rng.uniform(1.3, 2.0), "FS": rng.uniform(1.5, 2.5)}[kind]
            image[ch][sl] *= 1.0 + w * (ratio - 1.0)
        return what
    # notch / partial volume: disc-like signal at an endplate, sampled just outside the body
    superior = rng.random() < 0.5
    zz, has, top, bottom = _endplate_columns(body)
    dist = _endplate_distance(zz, top, bottom, superior, sz)
    outside = (zz == (top[..., None] + 1)) if superior else (zz == (bottom[..., None] - 1))
    outside &= has[..., None]
    if not outside.any():
        return None
    if what == "notch":
        xs, ys = np.nonzero(has)
        k = rng.integers(len(xs))
        r_mm = rng.uniform(2.0, 5.0)
        gx, gy = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        q = np.hypot((gx - xs[k]) * sx / r_mm, (gy - ys[k]) * sy / r_mm)
        depth = rng.uniform(2.0, 5.0) * np.clip(1 - q ** 2, 0, 1) ** 0.5
        w = expit((depth[..., None] - dist) / 0.4) * body
        region = w >= 0.5
        if region.sum() == 0:
            return None
        for ch, kind in enumerate(kinds):
            if kind is None:
                continue
            disc = float(np.median(image[ch][sl][outside]))
            view = image[ch][sl]
            view[:] = view * (1 - w) + disc * w
            if rng.random() < 0.5:  # dark sclerotic rim
                rim = ndimage.binary_dilation(region, iterations=1) & ~region & body
                view[rim] *= rng.uniform(0.5, 0.8)
        lab = labels[sl]
        lab[region & (lab == BODY)] = 0
        return what
    # partial volume of the disc: a thin blend (0.5-1.5 mm) of disc signal along the endplate
    thickness = rng.uniform(0.5, 1.5) + 0.5 * sz
    w = rng.uniform(0.3, 0.6) * expit((thickness - dist) / 0.4) * body
    for ch, kind in enumerate(kinds):
        if kind is None:
            continue
        disc = float(np.median(image[ch][sl][outside]))
        view = image[ch][sl]
        view[:] = view * (1 - w) + disc * w
    return what


def paint_real_volume(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float], kinds: Sequence[str | None],
                      rng: np.random.Generator, lesions: tuple[int, int] = (0, 3),
                      lookalikes: tuple[int, int] = (0, 3)) -> tuple[np.ndarray, np.ndarray, list[PaintedLesion]]:
    """Copies of ``image``/``labels`` with a random number of lesions and look-alikes painted."""
    image = np.array(image, dtype=np.float32, copy=True)
    labels = np.array(labels, copy=True)
    comp, n = body_components(labels)
    painted: list[PaintedLesion] = []
    if n == 0:
        return image, labels, painted
    for _ in range(int(rng.integers(lookalikes[0], lookalikes[1] + 1))):
        paint_lookalike(image, labels, comp, int(rng.integers(1, n + 1)), spacing, kinds, rng)
    for _ in range(int(rng.integers(lesions[0], lesions[1] + 1))):
        result = paint_lesion(image, labels, comp, int(rng.integers(1, n + 1)), spacing, kinds, rng)
        if result is not None:
            painted.append(result)
    return image, labels, painted
