"""Random draws of acquisition and appearance parameters (domain randomisation).

Two regimes: ``realistic`` draws stay within what scanners produce (used for written studies and
the demo); ``training`` widens every range and, with some probability, replaces the physical
contrast by arbitrary tissue intensities ("beyond the physical") so that a network trained on the
samples relies on shape, not on one contrast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modicseg.synth import tissues as tis
from modicseg.synth.anatomy import Spine


@dataclass
class Sequence:
    """One sagittal TSE acquisition's contrast parameters."""

    weighting: str  # "T1" or "T2"
    tr: float  # ms
    te: float  # ms
    description: str
    flip_angle: float = 90.0


@dataclass
class Acquisition:
    """Geometry of the sagittal stack(s)."""

    inplane: float  # mm
    thickness: float  # mm
    gap: float  # mm (slice step = thickness + gap)
    n_slices: int
    fov_ap: float  # mm
    fov_si: float  # mm
    obliquity_deg: tuple[float, float, float]
    centre_jitter: tuple[float, float, float]
    t1_separate_grid: bool = False
    t1_inplane: float | None = None
    t1_shift: float = 0.0  # shift of the T1 slices along the normal, mm

    @property
    def step(self) -> float:
        return self.thickness + self.gap


@dataclass
class Appearance:
    """Per-case tissue properties and image-formation parameters."""

    properties: dict[int, tis.TissueProperty]
    sequences: dict[str, Sequence]
    physical: bool = True  # False when any channel's contrast is random
    random_lut: dict[str, np.ndarray] = field(default_factory=dict)  # channels with a random contrast
    fat_suppressed_ti: float | None = None  # ms: the T2 channel is a STIR/TIRM (fat nulled) when set
    snr: dict[str, float] = field(default_factory=dict)
    bias: dict[str, np.ndarray] = field(default_factory=dict)  # polynomial coefficients
    coil_length_mm: float = 200.0
    coil_strength: float = 0.6
    gain: dict[str, float] = field(default_factory=dict)
    texture_scale: float = 1.0


RANDOM_CONTRAST_PROBABILITY = 0.25  # per channel, training regime
FAT_SUPPRESSED_PROBABILITY = 0.3  # of physical T2 channels, training regime


def draw_sequences(rng: np.random.Generator) -> dict[str, Sequence]:
    """T1 TSE (TR 400-800, TE 8-20) and T2 TSE (TR 2500-5000, TE 80-120)."""
    t1_desc = str(rng.choice(["T1_TSE_SAG", "t1_tse_sag", "SAG T1 TSE", "T1W_TSE_SAG"]))
    t2_desc = str(rng.choice(["t2_tse_sag", "T2_TSE_SAG", "SAG T2 TSE", "T2W_TSE_SAG"]))
    return {
        "T1": Sequence("T1", float(round(rng.uniform(400, 800))), float(round(rng.uniform(8, 20), 1)), t1_desc),
        "T2": Sequence("T2", float(round(rng.uniform(2500, 5000))), float(round(rng.uniform(80, 120), 1)), t2_desc),
    }


def _jitter(prop: tis.TissueProperty, rng: np.random.Generator, sigma: float) -> tis.TissueProperty:
    f = np.exp(rng.normal(0.0, sigma, 3))
    return tis.TissueProperty(prop.pd * float(f[0]), prop.t1 * float(f[1]), prop.t2 * float(f[2]))


def draw_properties(rng: np.random.Generator, spine: Spine, sigma: float = 0.08) -> dict[int, tis.TissueProperty]:
    """Tissue properties of every fixed class, every body's marrow and every disc."""
    props = {tid: _jitter(p, rng, sigma) for tid, p in tis.TISSUE_PROPERTIES.items()}
    age_fat = rng.uniform(0.9, 1.1)  # fattier marrow with age: shorter T1
    for v in spine.bodies:
        base = tis.TissueProperty(tis.MARROW.pd, tis.MARROW.t1 / age_fat, tis.MARROW.t2)
        props[tis.MARROW_BASE + v.index] = _jitter(base, rng, sigma * 0.5)
        props[tis.CORTEX_BASE + v.index] = props[tis.BODY_CORTEX]
    for d in spine.discs:
        if d.sacral:
            continue
        nucleus = tis.TissueProperty(tis.NUCLEUS_HEALTHY.pd * (1 - 0.1 * d.grade), tis.NUCLEUS_HEALTHY.t1,
                                   tis.NUCLEUS_T2_BY_GRADE[d.grade])
        props[tis.NUCLEUS_BASE + d.index] = _jitter(nucleus, rng, sigma * 0.7)
        props[tis.ANNULUS_BASE + d.index] = _jitter(tis.ANNULUS, rng, sigma * 0.7)
    return props


def draw_bias(rng: np.random.Generator, strength: float) -> np.ndarray:
    """Coefficients of a second-order polynomial in normalised (i, j, k): 1, x, y, z, x2, y2, z2, xy, xz, yz."""
    coeffs = rng.normal(0.0, strength, 10)
    coeffs[0] = 0.0
    coeffs[3] *= 0.3
    coeffs[6] *= 0.3
    return coeffs


def draw_appearance(rng: np.random.Generator, spine: Spine, regime: str = "realistic") -> Appearance:
    """Tissue properties, sequences, SNR, bias and gain for one case."""
    training = regime == "training"
    sequences = draw_sequences(rng)
    props = draw_properties(rng, spine, sigma=0.15 if training else 0.07)
    app = Appearance(properties=props, sequences=sequences)
    snr_range = (6.0, 45.0) if training else (14.0, 40.0)
    bias_strength = 0.18 if training else 0.08
    for name in ("T1", "T2"):
        app.snr[name] = float(np.exp(rng.uniform(*np.log(snr_range))))
        app.bias[name] = draw_bias(rng, bias_strength)
        app.gain[name] = float(rng.uniform(0.6, 1.6)) if training else float(rng.uniform(0.85, 1.15))
    app.coil_length_mm = float(rng.uniform(120.0, 320.0))
    app.coil_strength = float(rng.uniform(0.0, 1.2 if training else 0.8))
    app.texture_scale = float(rng.uniform(0.5, 1.6)) if training else float(rng.uniform(0.8, 1.2))
    if training:
        # SynthSeg-style: each channel's tissue intensities drawn at random (lesions keep their
        # ratio to the same vertebra's marrow, see render.signal_lut) ...
        for name in ("T1", "T2"):
            if rng.random() < RANDOM_CONTRAST_PROBABILITY:
                app.random_lut[name] = rng.uniform(0.02, 1.0, tis.N_IDS).astype(np.float32)
        app.physical = not app.random_lut
        # ... and the fluid-sensitive channel is a fat-suppressed inversion recovery (STIR / TIRM,
        # Dixon water look: fat and fatty marrow dark) in a share of the physical ones
        if "T2" not in app.random_lut and rng.random() < FAT_SUPPRESSED_PROBABILITY:
            app.fat_suppressed_ti = float(tis.TISSUE_PROPERTIES[tis.FAT].t1 * np.log(2.0) * rng.uniform(0.85, 1.15))
    return app


def draw_acquisition(rng: np.random.Generator, regime: str = "realistic") -> Acquisition:
    """In-plane 0.4-1.0 mm, slices 3-5 mm with 0-30 % gaps, 11-19 slices, FOV, obliquity."""
    inplane = float(rng.uniform(0.4, 1.0))
    thickness = float(rng.uniform(3.0, 5.0))
    gap = float(thickness * rng.choice([0.0, 0.1, 0.2, 0.3], p=[0.3, 0.4, 0.2, 0.1]))
    coverage = rng.uniform(48.0, 72.0)
    n_slices = int(np.clip(np.round(coverage / (thickness + gap)), 11, 19))
    fov_si = float(rng.uniform(250.0, 300.0))
    fov_ap = float(rng.uniform(0.8, 1.0) * fov_si)
    obliquity = tuple(float(a) for a in rng.normal(0.0, 3.0 if regime == "training" else 2.0, 3))
    jitter = tuple(float(a) for a in rng.normal(0.0, [3.0, 8.0, 8.0]))
    separate = bool(rng.random() < 0.15)
    return Acquisition(inplane=inplane, thickness=thickness, gap=gap, n_slices=n_slices, fov_ap=fov_ap,
                       fov_si=fov_si, obliquity_deg=obliquity, centre_jitter=jitter,  # type: ignore[arg-type]
                       t1_separate_grid=separate,
                       t1_inplane=float(rng.uniform(0.5, 1.0)) if separate else None,
                       t1_shift=float(rng.uniform(-0.5, 0.5) * (thickness + gap)) if separate else 0.0)
