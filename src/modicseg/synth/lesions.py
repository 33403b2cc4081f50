"""Modic lesions: irregular caps hugging an endplate, with mixed-type sub-regions.

A lesion lives in its vertebra's frame (u lateral, v anterior, w axial).  Its *footprint* on the
endplate is a star-shaped region (an ellipse with a perturbed boundary) around (u0, v0); above
each footprint point (u, v) it occupies the column from the endplate surface inwards to the
depth t(u, v) = T * sqrt(1 - q^2) * (1 + waves), q being the normalised footprint radius.  The
inner surface is therefore the endplate surface displaced by a smooth, randomly perturbed dome.
A mixed lesion is split by a wavy line across the footprint into a primary and a secondary part.

Volume, extent and fractions are integrated exactly along w and on a 0.1 mm (u, v) grid, never
from output voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from modicseg.core.labels import INFERIOR, SUPERIOR
from modicseg.synth.anatomy import Spine, Vertebra
from modicseg.synth.tissues import TYPE_SIGNAL_BANDS, inner_band

#: Type code -> (primary, secondary).
TYPE_PARTS: dict[str, tuple[int, int | None]] = {
    "1": (1, None), "2": (2, None), "3": (3, None),
    "1/2": (1, 2), "2/1": (2, 1), "2/3": (2, 3), "3/2": (3, 2),
}
TYPE_PROBABILITIES = {"1": 0.34, "2": 0.30, "3": 0.06, "1/2": 0.12, "2/1": 0.08, "2/3": 0.06, "3/2": 0.04}
TRIAL_HEIGHT_FRACTION = 0.10
MEASURE_STEP_MM = 0.1


@dataclass
class Lesion:
    """One Modic lesion at one endplate."""

    id: str
    index: int  # 0-based within the case; selects the tissue ids
    level: str
    endplate: str  # "superior" or "inferior"
    type_code: str
    u0: float
    v0: float
    ru: float
    rv: float
    thickness: float  # T, mm (peak depth before waves)
    harmonics: np.ndarray  # (K, 3): order, amplitude, phase of the boundary perturbation
    waves: np.ndarray  # (J, 4): ku, kv (rad/mm), phase, amplitude of the depth perturbation
    split_angle: float = 0.0
    split_threshold: float = np.inf  # phi > threshold is the secondary part
    secondary_target: float = 0.0
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> {"T1", "T2"}

    @property
    def primary(self) -> int:
        return TYPE_PARTS[self.type_code][0]

    @property
    def secondary(self) -> int | None:
        return TYPE_PARTS[self.type_code][1]

    def part_type(self, part: int) -> int:
        value = self.secondary if part == 1 else self.primary
        assert value is not None
        return value

    # --- geometry in the vertebra frame -------------------------------------------------------
    def footprint_q(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Normalised footprint radius (< 1 inside the footprint)."""
        du = (u - self.u0) / self.ru
        dv = (v - self.v0) / self.rv
        r = np.sqrt(du * du + dv * dv)
        angle = np.arctan2(dv, du)
        boundary = np.ones_like(r)
        for order, amp, phase in self.harmonics:
            boundary = boundary + amp * np.cos(order * angle + phase)
        return r / boundary

    def depth(self, u: np.ndarray, v: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """Depth t(u, v) of the cap below the endplate surface, mm (0 outside the footprint)."""
        q = self.footprint_q(u, v) if q is None else q
        dome = np.sqrt(np.clip(1.0 - q * q, 0.0, None))
        wave = np.ones_like(dome)
        for ku, kv, phase, amp in self.waves:
            wave = wave + amp * np.sin(ku * u + kv * v + phase)
        return self.thickness * dome * np.clip(wave, 0.0, None)

    def split_phi(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Field whose level set splits a mixed lesion into its two parts."""
        du = (u - self.u0) / self.ru
        dv = (v - self.v0) / self.rv
        return (np.cos(self.split_angle) * du + np.sin(self.split_angle) * dv
                + 0.18 * np.sin(2.7 * du - 1.9 * dv + self.split_angle))

    def part(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """0 for the primary, 1 for the secondary sub-region."""
        if self.secondary is None:
            return np.zeros(np.shape(u), dtype=np.uint8)
        return (self.split_phi(u, v) > self.split_threshold).astype(np.uint8)

    def columns(self, vertebra: Vertebra, u: np.ndarray, v: np.ndarray,
                rho: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(w_low, w_high) of the lesion column above each (u, v); empty where w_low >= w_high."""
        r = vertebra.rho(u, v) if rho is None else rho
        top = vertebra.top(u, v, r)
        bottom = vertebra.bottom(u, v, r)
        t = self.depth(u, v)
        t = np.where(r <= 1.0, t, 0.0)
        if self.endplate == SUPERIOR:
            return np.maximum(top - t, bottom), top
        return bottom, np.minimum(bottom + t, top)

    def contains(self, vertebra: Vertebra, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                 rho: np.ndarray | None = None) -> np.ndarray:
        """Inside test for local points (the lesion is a subset of the body)."""
        low, high = self.columns(vertebra, u, v, rho)
        return (w >= low) & (w <= high) & (high > low)

    @property
    def reach(self) -> float:
        """Radius of the footprint's bounding circle, mm."""
        amp = float(np.sum(np.abs(self.harmonics[:, 1]))) if len(self.harmonics) else 0.0
        return max(self.ru, self.rv) * (1.0 + amp)

    def w_range(self, vertebra: Vertebra) -> tuple[float, float]:
        """Bounds of the lesion along the body's axis (local w, mm), with a small margin."""
        deepest = self.thickness * (1.0 + float(np.sum(np.abs(self.waves[:, 3])))) + 0.5
        half = vertebra.height / 2
        if self.endplate == SUPERIOR:
            return half - vertebra.wedge * vertebra.height - deepest, half + vertebra.concavity + 0.5
        return -half - vertebra.concavity - 0.5, -half + deepest

    # --- measurement ---------------------------------------------------------------------------
    def _grid(self, step: float) -> tuple[np.ndarray, np.ndarray]:
        reach = self.reach + step
        u = np.arange(self.u0 - reach + step / 2, self.u0 + reach, step)
        v = np.arange(self.v0 - reach + step / 2, self.v0 + reach, step)
        return np.meshgrid(u, v, indexing="ij")

    def measure(self, vertebra: Vertebra, step: float = MEASURE_STEP_MM) -> dict[str, float | dict]:
        """Volume (mm^3), cranio-caudal extent (mm, along the body's axis), height and AP fractions."""
        uu, vv = self._grid(step)
        low, high = self.columns(vertebra, uu, vv)
        length = np.clip(high - low, 0.0, None)
        cell = step * step
        occupied = length > 0
        volume = float(length.sum() * cell)
        if not occupied.any():
            return {"volume_mm3": 0.0, "craniocaudal_extent_mm": 0.0, "height_fraction": 0.0,
                    "ap_depth_fraction": 0.0, "endplate_area_mm2": 0.0, "endplate_area_fraction": 0.0,
                    "type_fractions": {}}
        extent = float(high[occupied].max() - low[occupied].min())
        v_occ = vv[occupied]
        ap = float(v_occ.max() - v_occ.min() + step)
        area = float(occupied.sum() * cell)
        ug = np.arange(-vertebra.width / 2 + step / 2, vertebra.width / 2, step * 2)
        vg = np.arange(-vertebra.depth / 2 + step / 2, vertebra.depth / 2, step * 2)
        gu, gv = np.meshgrid(ug, vg, indexing="ij")
        endplate_area = float((vertebra.rho(gu, gv) <= 1.0).sum() * 4 * cell)
        fractions: dict[str, float] = {}
        if self.secondary is None:
            fractions[str(self.primary)] = 1.0
        else:
            sec = self.part(uu, vv) == 1
            sec_volume = float(length[sec].sum() * cell)
            fractions[str(self.primary)] = (volume - sec_volume) / volume
            fractions[str(self.secondary)] = sec_volume / volume
        return {
            "volume_mm3": volume,
            "craniocaudal_extent_mm": extent,
            "height_fraction": extent / vertebra.centre_height,
            "ap_depth_fraction": ap / vertebra.depth,
            "endplate_area_mm2": area,
            "endplate_area_fraction": area / endplate_area,
            "type_fractions": fractions,
        }

    def calibrate(self, vertebra: Vertebra, height_fraction: float, step: float = 0.2) -> None:
        """Set the peak depth T so that the cranio-caudal extent is ``height_fraction`` of the height."""
        uu, vv = self._grid(step)
        saved = self.thickness
        self.thickness = 1.0
        shape = self.depth(uu, vv)
        self.thickness = saved
        r = vertebra.rho(uu, vv)
        inside = (shape > 0) & (r <= 1.0)
        surface = vertebra.endplate(self.endplate, uu, vv, r)[inside]
        span = (vertebra.top(uu, vv, r) - vertebra.bottom(uu, vv, r))[inside]
        shape = shape[inside]
        target = height_fraction * vertebra.centre_height
        sign = 1.0 if self.endplate == SUPERIOR else -1.0

        def extent(T: float) -> float:
            depth = np.minimum(T * shape, span)
            inner = surface - sign * depth
            if sign > 0:
                return float(surface.max() - inner.min())
            return float(inner.max() - surface.min())

        lo, hi = 0.0, vertebra.centre_height * 3
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if extent(mid) < target:
                lo = mid
            else:
                hi = mid
        self.thickness = 0.5 * (lo + hi)

    def set_split(self, vertebra: Vertebra, secondary_fraction: float, step: float = 0.2) -> None:
        """Choose the split threshold so the secondary part holds ``secondary_fraction`` of the volume."""
        self.secondary_target = secondary_fraction
        if self.secondary is None:
            self.split_threshold = np.inf
            return
        uu, vv = self._grid(step)
        low, high = self.columns(vertebra, uu, vv)
        length = np.clip(high - low, 0.0, None).ravel()
        phi = self.split_phi(uu, vv).ravel()
        order = np.argsort(phi)[::-1]
        cumulative = np.cumsum(length[order])
        total = cumulative[-1]
        k = int(np.searchsorted(cumulative, secondary_fraction * total))
        k = min(max(k, 1), len(order) - 1)
        self.split_threshold = float(0.5 * (phi[order[k - 1]] + phi[order[k]]))


def draw_ratios(rng: np.random.Generator, modic_type: int) -> dict[str, float]:
    """Signal ratios to normal marrow for one sub-region, from the inner part of the rule bands."""
    bands = TYPE_SIGNAL_BANDS[modic_type]
    return {ch: float(rng.uniform(*inner_band(bands[ch]))) for ch in ("T1", "T2")}


def draw_height_fraction(rng: np.random.Generator) -> float:
    """Height fraction: a quarter just around the 10 % threshold, some small, the rest 12-60 %."""
    x = rng.random()
    if x < 0.125:
        return float(rng.uniform(0.085, 0.097))
    if x < 0.25:
        return float(rng.uniform(0.103, 0.115))
    if x < 0.35:
        return float(rng.uniform(0.04, 0.085))
    return float(0.12 + 0.48 * rng.random() ** 1.6)


def make_lesion(rng: np.random.Generator, vertebra: Vertebra, endplate: str, type_code: str,
                index: int, height_fraction: float | None = None, lesion_id: str | None = None) -> Lesion:
    """Draw one lesion's shape and signal, calibrated to a height fraction."""
    if type_code not in TYPE_PARTS:
        raise ValueError(f"unknown Modic type {type_code!r}; expected one of {sorted(TYPE_PARTS)}")
    hf = draw_height_fraction(rng) if height_fraction is None else height_fraction
    size = 0.6 + 0.8 * min(hf, 0.5)  # larger lesions tend to cover more of the endplate
    a, b = vertebra.width / 2, vertebra.depth / 2
    rv = b * float(np.clip(rng.uniform(0.3, 0.6) * size, 0.15, 0.8))
    ru = a * float(np.clip(rng.uniform(0.35, 0.75) * size, 0.15, 0.85))
    v0 = float(np.clip(rng.normal(0.15 * b, 0.25 * b), -b + 1.05 * rv, b - 1.05 * rv)) if rv < b else 0.0
    u0 = float(np.clip(rng.normal(0.0, 0.12 * a), -a + 1.05 * ru, a - 1.05 * ru)) if ru < a else 0.0
    orders = np.arange(2, 6)
    harmonics = np.stack([orders, rng.uniform(0.0, 0.07, 4), rng.uniform(0, 2 * np.pi, 4)], axis=1)
    waves = []
    for _ in range(3):
        wavelength = rng.uniform(6.0, 18.0)
        direction = rng.uniform(0, 2 * np.pi)
        k = 2 * np.pi / wavelength
        waves.append([k * np.cos(direction), k * np.sin(direction), rng.uniform(0, 2 * np.pi),
                      rng.uniform(0.03, 0.1)])
    lesion = Lesion(
        id=lesion_id or f"lesion-{index:02d}", index=index, level=vertebra.level, endplate=endplate,
        type_code=type_code, u0=u0, v0=v0, ru=ru, rv=rv, thickness=1.0,
        harmonics=harmonics, waves=np.array(waves), split_angle=float(rng.uniform(0, 2 * np.pi)),
    )
    lesion.calibrate(vertebra, hf)
    if lesion.secondary is not None:
        lesion.set_split(vertebra, float(rng.uniform(0.25, 0.45)))
    lesion.ratios = {str(p): draw_ratios(rng, lesion.part_type(p))
                     for p in ((0, 1) if lesion.secondary is not None else (0,))}
    return lesion


def endplates_in_scope(spine: Spine) -> list[tuple[str, str, str]]:
    """(disc name, level, endplate) of every endplate that faces a disc within T12..S1."""
    scope = set(spine.levels_in_scope)
    out = []
    for d in spine.anatomical_discs:
        if d.upper.level in scope:
            out.append((d.name, d.upper.level, INFERIOR))
        if d.lower.level in scope:
            out.append((d.name, d.lower.level, SUPERIOR))
    return out


def sample_lesions(rng: np.random.Generator, spine: Spine, count: int | None = None,
                   types: list[str] | None = None) -> list[Lesion]:
    """Draw 0..several lesions, most often at L4-L5 and L5-S1 and at degenerate discs.

    ``count`` None draws 0-5 lesions; ``types`` forces the type code of the first lesions.
    """
    if count is None:
        count = int(rng.choice(6, p=[0.12, 0.28, 0.28, 0.16, 0.1, 0.06]))
    candidates = [d for d in spine.anatomical_discs if d.upper.level in spine.levels_in_scope]
    if not candidates or count == 0:
        return []
    position = np.arange(len(candidates))[::-1]  # 0 for the lumbosacral disc
    weights = np.array([0.34, 0.28, 0.14, 0.1, 0.08, 0.06, 0.05, 0.05])[np.minimum(position, 7)]
    weights = weights * np.array([1.0 + 0.8 * d.grade for d in candidates])
    weights /= weights.sum()
    used: set[tuple[str, str]] = set()
    lesions: list[Lesion] = []
    codes = list(TYPE_PROBABILITIES)
    probs = np.array(list(TYPE_PROBABILITIES.values()))
    attempts = 0
    while len(lesions) < count and attempts < 50:
        attempts += 1
        disc = candidates[int(rng.choice(len(candidates), p=weights))]
        sides = [(disc.upper, INFERIOR), (disc.lower, SUPERIOR)]
        rng.shuffle(sides)
        chosen = sides if rng.random() < 0.45 else sides[:1]
        forced = types[len(lesions)] if types and len(lesions) < len(types) else None
        type_code = forced or str(rng.choice(codes, p=probs / probs.sum()))
        for vertebra, endplate in chosen:
            if len(lesions) >= count or (vertebra.level, endplate) in used:
                continue
            used.add((vertebra.level, endplate))
            code = type_code
            if lesions and forced is None and rng.random() < 0.3:  # kissing lesions may differ
                code = str(rng.choice(codes, p=probs / probs.sum()))
            lesions.append(make_lesion(rng, vertebra, endplate, code, len(lesions)))
    return lesions


def evolve(lesion: Lesion, vertebra: Vertebra, rng: np.random.Generator, fate: str) -> Lesion | None:
    """The same lesion a year later: "stable", "grown", "shrunk", "type_change" or "disappeared"."""
    if fate == "disappeared":
        return None
    new = replace(lesion, harmonics=lesion.harmonics.copy(), waves=lesion.waves.copy(),
                  ratios={k: dict(v) for k, v in lesion.ratios.items()})
    before = cast(float, lesion.measure(vertebra, step=0.2)["height_fraction"])
    if fate == "grown":
        factor = rng.uniform(1.25, 1.7)
    elif fate == "shrunk":
        factor = rng.uniform(0.45, 0.8)
    else:
        factor = rng.uniform(0.95, 1.05)
    lateral = float(np.sqrt(factor))
    new.ru = min(lesion.ru * lateral, vertebra.width / 2 * 0.9)
    new.rv = min(lesion.rv * lateral, vertebra.depth / 2 * 0.9)
    b = vertebra.depth / 2 - 1.05 * new.rv
    a = vertebra.width / 2 - 1.05 * new.ru
    new.v0 = float(np.clip(new.v0, -b, b))
    new.u0 = float(np.clip(new.u0, -a, a))
    if fate == "type_change":
        new.type_code = {"1": "2", "1/2": "2", "2/1": "2", "2": "2/3", "2/3": "3", "3/2": "3",
                         "3": "3"}[lesion.type_code]
        new.ratios = {str(p): draw_ratios(rng, new.part_type(p))
                      for p in ((0, 1) if new.secondary is not None else (0,))}
    new.calibrate(vertebra, float(np.clip(before * factor, 0.03, 0.85)))
    if new.secondary is not None:
        new.set_split(vertebra, lesion.secondary_target or float(rng.uniform(0.25, 0.45)))
    else:
        new.split_threshold = np.inf
    return new
