"""Modic-like lesions painted into the real marrow of a real volume, with an exact truth mask.

A second lesion model, written without reference to the synthetic generator (``modicseg.synth``),
so that a benchmark on painted real scans does not score the network on the generator's own idea
of a lesion. Everything here is defined on the real image and its vertebral-body mask:

- **Endplate.** The superior (inferior) endplate of a masked body is its cranio-caudal extreme,
  superior read from the affine. Its outward normal starts as world superior (inferior) and is
  refined by fitting a plane to the outermost voxels of the body seen along it
  (:func:`endplate_direction`), so that the tilted S1 and L5 get their endplates and not their
  anterior or posterior walls. Body voxels are binned into "columns" about one voxel across in the
  endplate plane; a voxel's depth is its distance along the normal below the outermost voxel of
  its column, plus half a voxel (the endplate face). The endplate footprint ("plateau") is the set
  of columns at least ``plateau_fraction`` of the body's full height long (the lateral slivers of a
  mask are left out); the body height ``H`` is the median column length over the plateau.
- **Shape.** A height field over the footprint: a sum of 1-4 random anisotropic Gaussian bumps
  centred on plateau columns, thresholded at the quantile that leaves 20-80 % of the plateau
  covered, and raised to a power (0.3-0.7: steep flanks, flat top) scaled to a depth of
  10-45 % of ``H`` (never more than 85 % of a column's own length). A voxel belongs to the lesion
  when its depth below the endplate surface (voxel centre, mm along the column) is at most the
  height of its column. Optionally (30 %) **patchy**: smooth 3-D noise (2 mm) moves the inner
  border up and down by about 1.5 mm, which leaves holes and a ragged front. Only the 26-connected
  part that reaches the endplate is kept, and the truth never leaves the body mask.
- **Border.** The blend weight is a sigmoid (scale 0.4-1.0 mm) of the signed distance to the
  lesion's border *inside the body* (the endplate face itself is not a border: the lesion stays at
  full strength up to the cortex). The truth is exactly the voxels with blend weight >= 0.5; the
  ramp reaches a few voxels into normal marrow (weights under 2 % are set to 0).
- **Signal.** ``painted = image * (1 + w * (g - 1))``: the real texture scaled by a gain ``g``
  solved so that the mean of the painted truth voxels equals the drawn ratio times the median of
  that vertebra's normal marrow (body voxels at least 2 mm inside the mask and 3 mm from the
  lesion, on the unpainted image). Ratios per contrast and type (:data:`RATIO_BANDS`): type 1 (oedema)
  T1 x0.45-0.75, T2 x1.3-2.0, fat-suppressed x1.8-3.0; type 2 (fat) T1 x1.3-1.8, T2 x1.05-1.4,
  fat-suppressed x0.4-0.8; type 3 (sclerosis) T1 x0.4-0.7, T2 x0.4-0.7, fat-suppressed x0.5-0.8.

One image or several on one grid (a T1 + T2 pair): the same lesion, a ratio per contrast. At most
one lesion per body; the sacrum's inferior side and endplates cut by the field of view are not
used. Deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import expit

from modicseg.core.image import ScalarImage
from modicseg.core.labels import ENDPLATES, INFERIOR, MODIC_TYPES, SUPERIOR

#: contrast names accepted as image keys -> ratio band column (FS: fat-suppressed, fluid-sensitive)
CONTRAST_KIND = {"T1": "T1", "T1W": "T1", "T2": "T2", "T2W": "T2", "STIR": "FS", "TIRM": "FS", "FS": "FS",
                 "DIXON": "FS", "WATER": "FS", "FAT-SUPPRESSED": "FS"}
#: ratio of lesion to normal marrow of the same vertebra, (low, high), by Modic type and contrast kind
RATIO_BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "1": {"T1": (0.45, 0.75), "T2": (1.3, 2.0), "FS": (1.8, 3.0)},
    "2": {"T1": (1.3, 1.8), "T2": (1.05, 1.4), "FS": (0.4, 0.8)},
    "3": {"T1": (0.4, 0.7), "T2": (0.4, 0.7), "FS": (0.5, 0.8)},
}


def contrast_kind(name: str) -> str:
    """"T1", "T2" or "FS" (fat-suppressed: STIR, TIRM, Dixon water) for an image key."""
    kind = CONTRAST_KIND.get(str(name).upper())
    if kind is None:
        raise ValueError(f"unknown contrast '{name}'; use one of {sorted(CONTRAST_KIND)}")
    return kind


@dataclass(frozen=True)
class PainterSettings:
    """Ranges the painter draws from (uniformly) and its fixed choices."""

    depth_fraction: tuple[float, float] = (0.10, 0.45)  # deepest point, share of the body height
    footprint_fraction: tuple[float, float] = (0.20, 0.80)  # share of the endplate plateau covered
    bumps: tuple[int, int] = (1, 4)  # Gaussian bumps of the height field
    bump_sigma: tuple[float, float] = (0.12, 0.40)  # bump width, share of sqrt(plateau area), per axis
    shape_exponent: tuple[float, float] = (0.3, 0.7)  # height = depth * normalised field ** exponent
    ramp_mm: tuple[float, float] = (0.4, 1.0)  # sigmoid scale of the soft border
    min_weight: float = 0.02  # blend weights below this are 0 (the ramp ends a few voxels out)
    patchy_probability: float = 0.3
    patch_amplitude_mm: float = 1.5
    patch_sigma_mm: float = 2.0
    plateau_fraction: float = 0.5  # footprint columns: at least this share of the body's full height
    max_column_fraction: float = 0.85  # a lesion never takes more than this share of a column
    min_plateau_columns: int = 20
    min_body_fraction: float = 0.3  # bodies under this share of the median body volume are not used
    min_volume_mm3: float = 100.0  # smaller draws are discarded and drawn again
    marrow_erosion_mm: float = 2.0  # normal marrow: this far inside the body mask ...
    marrow_lesion_margin_mm: float = 3.0  # ... and this far from the lesion
    min_marrow_voxels: int = 30
    gain_limits: tuple[float, float] = (0.02, 20.0)
    attempts: int = 4  # draws per endplate before the next endplate is tried


@dataclass
class PaintedLesion:
    """One painted lesion and what was drawn for it."""

    id: int  # value in ``PaintedVolume.lesion_map``
    label: int  # body value in the mask
    level: str | None  # the mask's level name (case.json)
    endplate: str  # "superior" | "inferior"
    type: str  # "1" | "2" | "3"
    voxels: int
    volume_mm3: float
    body_height_mm: float  # median column length over the endplate plateau
    depth_mm: float  # deepest truth voxel below the endplate surface (its far face)
    height_fraction: float  # depth_mm / body_height_mm
    footprint_fraction: float  # share of the plateau columns holding truth
    patchy: bool
    ramp_mm: float
    ratios: dict[str, float]  # image key -> drawn ratio to normal marrow
    achieved: dict[str, float]  # image key -> mean of painted truth voxels / reference
    reference: dict[str, float]  # image key -> median of normal marrow (unpainted)
    gain: dict[str, float]
    centre_ras: list[float]
    normal_ras: list[float]  # outward endplate normal the depth was measured along

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        for key in ("volume_mm3", "body_height_mm", "depth_mm", "height_fraction", "footprint_fraction", "ramp_mm"):
            out[key] = round(float(out[key]), 4)
        for key in ("ratios", "achieved", "reference", "gain"):
            out[key] = {k: round(float(v), 4) for k, v in out[key].items()}
        out["centre_ras"] = [round(float(v), 2) for v in self.centre_ras]
        out["normal_ras"] = [round(float(v), 4) for v in self.normal_ras]
        return out


@dataclass
class PaintedVolume:
    """Painted images (same keys and grid as given), exact truth and per-lesion records."""

    images: dict[str, ScalarImage]
    truth: np.ndarray  # bool, on the image grid
    lesion_map: np.ndarray  # int16: 0 none, i = PaintedLesion.id
    weight: np.ndarray  # float32 blend weight in [0, 1]
    lesions: list[PaintedLesion] = field(default_factory=list)
    seed: int = 0


def superior_axis(affine: np.ndarray) -> tuple[int, int]:
    """(array axis most nearly along world superior, +1 when a higher index lies more superior else -1)."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    cosines = matrix[2] / np.linalg.norm(matrix, axis=0)
    axis = int(np.argmax(np.abs(cosines)))
    return axis, (1 if cosines[axis] > 0 else -1)


def endplate_candidates(bodies: np.ndarray, affine: np.ndarray, level_names: Mapping[int, str] | None = None,
                        settings: PainterSettings | None = None,
                        levels: Sequence[str] | None = None) -> list[tuple[int, str]]:
    """(body value, endplate) pairs the painter may use: bodies of a usable size whose endplate is not
    cut by the field of view, without the sacrum's inferior side (no disc below it); with ``levels``,
    only bodies whose level name is listed."""
    cfg = settings or PainterSettings()
    names = dict(level_names or {})
    allowed = None if levels is None else {str(v).upper() for v in levels}
    values, counts = np.unique(bodies[bodies > 0], return_counts=True)
    if not len(values):
        return []
    median = float(np.median(counts))
    axis, sign = superior_axis(affine)
    other = tuple(a for a in range(3) if a != axis)
    out = []
    for value, n in zip(values.tolist(), counts.tolist(), strict=True):
        if n < cfg.min_body_fraction * median:
            continue
        if allowed is not None and str(names.get(int(value), "")).upper() not in allowed:
            continue
        along = np.nonzero((bodies == value).any(axis=other))[0]
        low_cut, high_cut = along[0] == 0, along[-1] == bodies.shape[axis] - 1
        for endplate in ENDPLATES:
            at_high = (endplate == SUPERIOR) == (sign > 0)
            if (high_cut if at_high else low_cut):
                continue
            name = names.get(int(value))
            if endplate == INFERIOR and name is not None and name.upper().startswith("S"):
                continue
            out.append((int(value), endplate))
    return out


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice, slice]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - pad, 0), min(int(i.max()) + pad + 1, s))  # type: ignore[return-value]
                 for i, s in zip(idx, mask.shape, strict=True))


def endplate_direction(body: np.ndarray, affine: np.ndarray, endplate: str, iterations: int = 4,
                       max_tilt_deg: float = 60.0) -> np.ndarray:
    """Outward unit normal (RAS) of a body's superior or inferior endplate.

    Starts from world superior (inferior) read from the affine, then fits a plane to the outermost
    voxels of the long columns seen along the current direction (least squares, twice, the second
    time without points more than 2 mm off the first plane), and looks again along its normal: the
    tilted S1 and L5 endplates come out tilted, and their anterior and posterior walls are not
    taken for endplate. A fit leaning more than ``max_tilt_deg`` from world superior is refused."""
    start = np.array([0.0, 0.0, 1.0 if endplate == SUPERIOR else -1.0])
    direction = start
    limit = math.cos(math.radians(max_tilt_deg))
    for _ in range(iterations):
        frame = _Frame(body, affine, direction)
        full = float(np.percentile(frame.length[frame.present], 95))
        plateau = (frame.length >= 0.5 * full).ravel()
        points = frame.xyz[frame.at_face & plateau[frame.flat]]
        if len(points) < 10:
            break
        normal = direction
        for trim in (None, 2.0):
            if trim is not None:
                points = points[np.abs((points - points.mean(axis=0)) @ normal) <= trim]
                if len(points) < 10:
                    break
            _, _, vt = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
            normal = vt[2] * (1.0 if vt[2] @ direction >= 0 else -1.0)
        if normal @ start < limit:
            break
        if np.allclose(normal, direction, atol=1e-4):
            direction = normal
            break
        direction = normal
    return direction / np.linalg.norm(direction)


class _Frame:
    """A body crop seen along its own axis from the chosen endplate: body voxels binned into columns
    over the endplate plane (bins about one voxel wide), and each voxel's depth below its column's
    outermost voxel."""

    def __init__(self, body: np.ndarray, affine: np.ndarray, outward: np.ndarray) -> None:
        matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
        self.spacing = np.linalg.norm(matrix, axis=0)
        units = matrix / self.spacing
        d = outward / np.linalg.norm(outward)
        e1 = np.array([0.0, 1.0, 0.0]) - d[1] * d  # anterior, in the endplate plane
        if np.linalg.norm(e1) < 0.3:
            e1 = np.array([1.0, 0.0, 0.0]) - d[0] * d
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)

        def step(direction: np.ndarray) -> float:  # voxel extent along a direction
            return float(np.max(np.abs(direction @ units) * self.spacing))

        self.bin = (max(float(self.spacing.min()), step(e1)), max(float(self.spacing.min()), step(e2)))
        self.along = step(d)
        self.shape = body.shape
        self.ijk = np.argwhere(body)
        self.xyz = self.ijk.astype(np.float64) @ matrix.T
        u, p, q = self.xyz @ d, self.xyz @ e1, self.xyz @ e2
        pi = np.floor((p - p.min()) / self.bin[0]).astype(np.int64)
        qi = np.floor((q - q.min()) / self.bin[1]).astype(np.int64)
        self.grid = (int(pi.max()) + 1, int(qi.max()) + 1)
        self.flat = pi * self.grid[1] + qi
        top = np.full(self.grid[0] * self.grid[1], -np.inf)
        bottom = np.full(self.grid[0] * self.grid[1], np.inf)
        np.maximum.at(top, self.flat, u)
        np.minimum.at(bottom, self.flat, u)
        self.present = np.isfinite(top).reshape(self.grid)
        self.length = np.where(self.present, (top - bottom).reshape(self.grid) + self.along, 0.0)
        self.depth = top[self.flat] - u + 0.5 * self.along  # mm from the endplate face to the voxel centre
        self.at_face = top[self.flat] - u < 1e-6

    def volume(self, values: np.ndarray, fill: Any = False) -> np.ndarray:
        out = np.full(self.shape, fill, dtype=values.dtype)
        out[tuple(self.ijk.T)] = values
        return out


def _draw_truth(frame: _Frame, rng: np.random.Generator, cfg: PainterSettings) -> dict[str, Any] | None:
    """One lesion shape in the body crop: truth (bool), or None when the draw is unusable."""
    present, length_mm = frame.present, frame.length
    b1, b2 = frame.bin
    full = float(np.percentile(length_mm[present], 95))
    plateau = present & (length_mm >= cfg.plateau_fraction * full)
    if int(plateau.sum()) < cfg.min_plateau_columns:
        return None
    height = float(np.median(length_mm[plateau]))
    a = np.arange(frame.grid[0], dtype=np.float64)[:, None] * b1
    b = np.arange(frame.grid[1], dtype=np.float64)[None, :] * b2
    scale = math.sqrt(float(plateau.sum()) * b1 * b2)
    points = np.argwhere(plateau)
    field_ = np.zeros(frame.grid, dtype=np.float64)
    for _ in range(int(rng.integers(cfg.bumps[0], cfg.bumps[1] + 1))):
        ca, cb = points[int(rng.integers(len(points)))] * np.array([b1, b2])
        sa, sb = rng.uniform(*cfg.bump_sigma, size=2) * scale
        field_ += rng.uniform(0.5, 1.0) * np.exp(-((a - ca) ** 2 / (2 * sa**2) + (b - cb) ** 2 / (2 * sb**2)))
    coverage = float(rng.uniform(*cfg.footprint_fraction))
    threshold = float(np.quantile(field_[plateau], 1.0 - coverage))
    top = float(field_[plateau].max())
    if top <= threshold:
        return None
    deepest = float(rng.uniform(*cfg.depth_fraction)) * height
    exponent = float(rng.uniform(*cfg.shape_exponent))
    h = deepest * np.clip((field_ - threshold) / (top - threshold), 0.0, 1.0) ** exponent
    h = np.where(present, np.minimum(h, cfg.max_column_fraction * length_mm), 0.0).ravel()[frame.flat]
    excess = frame.depth - h  # <= 0 inside the lesion (per body voxel)
    patchy = bool(rng.random() < cfg.patchy_probability)
    if patchy:
        noise = ndimage.gaussian_filter(rng.standard_normal(frame.shape), sigma=cfg.patch_sigma_mm / frame.spacing,
                                        mode="nearest")
        noise *= cfg.patch_amplitude_mm / max(float(noise.std()), 1e-9)
        excess = excess - noise[tuple(frame.ijk.T)] * (h > 0)
    inside = excess <= 0
    if not inside.any():
        return None
    truth = frame.volume(inside)
    components, n = ndimage.label(truth, structure=np.ones((3, 3, 3), dtype=bool))
    at_face = components[tuple(frame.ijk[frame.at_face & inside].T)]
    touching = np.unique(at_face[at_face > 0])
    if not len(touching):
        return None
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    keep = int(touching[np.argmax(sizes[touching])])
    truth = components == keep
    kept = truth[tuple(frame.ijk.T)]
    deepest_voxel = float((frame.depth[kept] + 0.5 * frame.along).max())
    used = np.zeros(frame.grid[0] * frame.grid[1], dtype=bool)
    used[frame.flat[kept]] = True
    footprint = float((used.reshape(frame.grid) & plateau).sum() / plateau.sum())
    return {"truth": truth, "height": height, "depth": deepest_voxel, "footprint": footprint, "patchy": patchy}


def _marrow(body: np.ndarray, truth: np.ndarray, from_lesion: np.ndarray, inside: np.ndarray,
            cfg: PainterSettings) -> np.ndarray:
    """Normal marrow of one body: inside the mask by the erosion, away from the lesion (relaxed if scarce)."""
    normal = body & ~truth
    for mask in (normal & (inside >= cfg.marrow_erosion_mm) & (from_lesion >= cfg.marrow_lesion_margin_mm),
                 normal & (from_lesion >= cfg.marrow_lesion_margin_mm), normal):
        if int(mask.sum()) >= cfg.min_marrow_voxels:
            return mask
    return body


def paint_lesions(images: Mapping[str, ScalarImage], bodies: np.ndarray,
                  level_names: Mapping[int, str] | None = None, *, count: int = 2, seed: int = 0,
                  types: Sequence[str] | None = None, levels: Sequence[str] | None = None,
                  settings: PainterSettings | None = None) -> PaintedVolume:
    """Paint ``count`` lesions (fewer when the mask offers fewer usable endplates) into ``images``.

    ``images``: contrast key ("T1", "T2", "STIR"/"TIRM"/"FS"/"DIXON") -> image, all on one grid.
    ``bodies``: vertebral-body mask on that grid, one value per body (a binary mask is one body).
    ``level_names``: body value -> level name, copied into the records. ``types``: Modic types
    ("1", "2", "3") of the lesions in order (repeated as needed); default drawn at random.
    ``levels``: paint only bodies with these level names (e.g. the lumbar levels); default any.
    The inputs are not modified; painted images are float32.
    """
    cfg = settings or PainterSettings()
    if not images:
        raise ValueError("no image to paint")
    keys = list(images)
    first = images[keys[0]]
    bodies = np.asarray(bodies)
    if bodies.shape != first.shape:
        raise ValueError(f"body mask {bodies.shape} and image {first.shape} differ in shape")
    for key in keys[1:]:
        if not images[key].same_grid(first):
            raise ValueError(f"image '{key}' is not on the grid of '{keys[0]}'")
    kinds = {key: contrast_kind(key) for key in keys}
    for t in types or ():
        if str(t) not in MODIC_TYPES:
            raise ValueError(f"unknown Modic type '{t}'")
    affine = np.asarray(first.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    names = {int(k): str(v) for k, v in (level_names or {}).items()}
    rng = np.random.default_rng(seed)
    arrays = {key: np.asarray(images[key].array, dtype=np.float32).copy() for key in keys}
    truth_all = np.zeros(first.shape, dtype=bool)
    lesion_map = np.zeros(first.shape, dtype=np.int16)
    weight_all = np.zeros(first.shape, dtype=np.float32)
    candidates = endplate_candidates(bodies, affine, names, cfg, levels)
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    pad = int(math.ceil(6.0 * cfg.ramp_mm[1] / float(spacing.min()))) + 2
    lesions: list[PaintedLesion] = []
    used: set[int] = set()
    for label, endplate in order:
        if len(lesions) >= count:
            break
        if label in used:
            continue
        mtype = str(types[len(lesions) % len(types)]) if types else str(rng.choice(MODIC_TYPES))
        box = _box(bodies == label, pad)
        body = bodies[box] == label
        outward = endplate_direction(body, affine, endplate)
        frame = _Frame(body, affine, outward)
        drawn = None
        for _ in range(cfg.attempts):
            drawn = _draw_truth(frame, rng, cfg)
            if drawn is not None and int(drawn["truth"].sum()) * voxel_mm3 >= cfg.min_volume_mm3:
                break
            drawn = None
        if drawn is None:
            continue
        truth = drawn["truth"]
        inside_lesion = ndimage.distance_transform_edt(truth | ~body, sampling=spacing)
        from_lesion = ndimage.distance_transform_edt(~truth, sampling=spacing)
        half = 0.5 * float(spacing.min())
        signed = np.where(truth, inside_lesion - half, -(from_lesion - half))
        ramp = float(rng.uniform(*cfg.ramp_mm))
        w = (expit(signed / ramp) * body).astype(np.float32)
        w[w < cfg.min_weight] = 0.0
        assert np.array_equal(w >= 0.5, truth)
        inside_body = ndimage.distance_transform_edt(body, sampling=spacing)
        marrow = _marrow(body, truth, from_lesion, inside_body, cfg)
        ratios, achieved, reference, gains = {}, {}, {}, {}
        wt = w[truth].astype(np.float64)
        for key in keys:
            ratio = float(rng.uniform(*RATIO_BANDS[mtype][kinds[key]]))
            crop = arrays[key][box]
            ref = float(np.median(crop[marrow]))
            values = crop[truth].astype(np.float64)
            scaled = float(np.mean(values * wt))
            # mean over the truth of values * (1 + w (g - 1)) = ratio * ref, solved for g
            gain = (ratio * ref - float(np.mean(values * (1.0 - wt)))) / scaled if scaled > 0 and ref > 0 else ratio
            gain = float(np.clip(gain, *cfg.gain_limits))
            painted = crop * (1.0 + w * np.float32(gain - 1.0))
            arrays[key][box] = painted
            ratios[key], reference[key], gains[key] = ratio, ref, gain
            achieved[key] = float(np.mean(painted[truth], dtype=np.float64) / ref) if ref > 0 else float("nan")
        lesion_id = len(lesions) + 1
        truth_all[box] |= truth
        lesion_map[box][truth] = lesion_id
        weight_all[box] = np.maximum(weight_all[box], w)
        ijk = np.argwhere(truth).mean(axis=0) + np.array([s.start for s in box])
        voxels = int(truth.sum())
        lesions.append(PaintedLesion(
            id=lesion_id, label=label, level=names.get(label), endplate=endplate, type=mtype, voxels=voxels,
            volume_mm3=voxels * voxel_mm3, body_height_mm=drawn["height"], depth_mm=drawn["depth"],
            height_fraction=drawn["depth"] / drawn["height"], footprint_fraction=drawn["footprint"],
            patchy=drawn["patchy"], ramp_mm=ramp, ratios=ratios, achieved=achieved, reference=reference,
            gain=gains, centre_ras=(affine[:3, :3] @ ijk + affine[:3, 3]).tolist(),
            normal_ras=outward.tolist()))
        used.add(label)
    out_images = {}
    for key in keys:
        source = images[key]
        description = (source.provenance.series_description or key) + " + painted lesions"
        out_images[key] = ScalarImage(arrays[key], affine.copy(),
                                      source.provenance.replace(series_description=description))
    return PaintedVolume(images=out_images, truth=truth_all, lesion_map=lesion_map, weight=weight_all,
                         lesions=lesions, seed=seed)
