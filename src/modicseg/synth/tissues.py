"""Tissue classes, their MR properties, the Modic signal rule bands and the label look-up tables.

Every sub-sample of a rendered grid holds one *tissue id* (uint8).  Fixed classes have fixed ids;
each vertebral body's marrow, each disc's nucleus/annulus and each lesion sub-region get their own
id so that their signal can vary per structure.  Look-up tables turn tissue ids into signal,
training labels, Modic type and vertebra instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modicseg.core import labels as lab

# --- fixed tissue classes ------------------------------------------------------------------
AIR = 0
SKIN = 1
FAT = 2  # subcutaneous, retroperitoneal and epidural fat
MUSCLE = 3
VISCERA = 4
VESSEL = 5  # flowing blood: flow void on TSE
CSF = 6
CORD = 7
ROOTS = 8  # cauda equina
LIGAMENT = 9
BODY_CORTEX = 10  # cortical bone (properties of the CORTEX_BASE ids)
POST_MARROW = 11  # marrow of posterior elements, sacrum below S1 and alae (label 0)
POST_CORTEX = 12
SACRAL_DISC = 13  # rudimentary discs between fused sacral segments (label 0)
N_FIXED = 16

MAX_VERTEBRAE = 16
MAX_DISCS = 16
MAX_LESION_PARTS = 120

MARROW_BASE = 16  # + vertebra index (label 1)
CORTEX_BASE = MARROW_BASE + MAX_VERTEBRAE  # + vertebra index: shell and endplates (label 1)
NUCLEUS_BASE = CORTEX_BASE + MAX_VERTEBRAE  # + disc index (label 2)
ANNULUS_BASE = NUCLEUS_BASE + MAX_DISCS  # + disc index (label 2)
LESION_BASE = ANNULUS_BASE + MAX_DISCS  # + 2 * lesion index + part (label 3)
N_IDS = 256
assert LESION_BASE + MAX_LESION_PARTS <= N_IDS

# --- training labels: the values of modicseg.core.labels ------------------------------------

#: Modic type codes used in truth files and per-voxel type maps.
TYPE_CODES = (*lab.MODIC_TYPES, *lab.MIXED_TYPES)
PURE_TYPES = tuple(int(t) for t in lab.MODIC_TYPES)

#: Lesion signal relative to normal marrow of the same vertebra: type -> {"T1": (lo, hi), "T2": ...}.
#: Type 1 oedema: low T1, high T2; type 2 fat: high T1, iso-to-high T2; type 3 sclerosis: low/low.
#: The generator draws each lesion's ratios from the central 60 % of these bands so that the mean
#: measured over a lesion (with partial volume and texture) stays inside them.
TYPE_SIGNAL_BANDS: dict[int, dict[str, tuple[float, float]]] = {
    1: {"T1": (0.40, 0.70), "T2": (1.40, 2.20)},
    2: {"T1": (1.30, 1.80), "T2": (1.00, 1.50)},
    3: {"T1": (0.20, 0.50), "T2": (0.20, 0.50)},
}


def inner_band(band: tuple[float, float], keep: float = 0.6) -> tuple[float, float]:
    """The central ``keep`` fraction of a band."""
    lo, hi = band
    margin = (hi - lo) * (1.0 - keep) / 2.0
    return lo + margin, hi - margin


@dataclass(frozen=True)
class TissueProperty:
    """Proton density (relative), T1 and effective (TSE) T2 relaxation times at 1.5 T (ms)."""

    pd: float
    t1: float
    t2: float


#: Nominal properties of the fixed classes; marrow, disc and lesion entries are set per case.
TISSUE_PROPERTIES: dict[int, TissueProperty] = {
    AIR: TissueProperty(0.0, 1000.0, 50.0),
    SKIN: TissueProperty(0.70, 600.0, 45.0),
    FAT: TissueProperty(1.00, 260.0, 130.0),
    MUSCLE: TissueProperty(0.80, 1000.0, 50.0),
    VISCERA: TissueProperty(0.85, 700.0, 75.0),
    VESSEL: TissueProperty(0.03, 1200.0, 200.0),
    CSF: TissueProperty(1.00, 4000.0, 1800.0),
    CORD: TissueProperty(0.80, 800.0, 90.0),
    ROOTS: TissueProperty(0.85, 1400.0, 250.0),
    LIGAMENT: TissueProperty(0.12, 900.0, 15.0),
    BODY_CORTEX: TissueProperty(0.08, 900.0, 10.0),
    POST_MARROW: TissueProperty(0.80, 480.0, 75.0),
    POST_CORTEX: TissueProperty(0.08, 900.0, 10.0),
    SACRAL_DISC: TissueProperty(0.55, 900.0, 45.0),
}

#: Normal adult lumbar marrow (about half fat): bright-ish on T1, intermediate on T2.
MARROW = TissueProperty(0.90, 480.0, 80.0)
NUCLEUS_HEALTHY = TissueProperty(0.90, 1100.0, 200.0)
ANNULUS = TissueProperty(0.60, 900.0, 35.0)
#: T2 of the nucleus by degeneration grade 0..3 (grade 3: black disc).
NUCLEUS_T2_BY_GRADE = (200.0, 120.0, 65.0, 40.0)

#: Relative texture amplitude per class (multiplicative smooth noise); others get 0.
TEXTURE_AMPLITUDE = {MUSCLE: 0.10, VISCERA: 0.40, FAT: 0.04, POST_MARROW: 0.06, SKIN: 0.05}
MARROW_TEXTURE = 0.06
LESION_TEXTURE = 0.05


def inversion_recovery_signal(prop: TissueProperty, tr: float, te: float, ti: float) -> float:
    """Magnitude inversion-recovery (STIR / TIRM) signal PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)."""
    return float(prop.pd * abs(1.0 - 2.0 * np.exp(-ti / prop.t1) + np.exp(-tr / prop.t1)) * np.exp(-te / prop.t2))


def fat_suppressed_ratio(modic_type: int, ratios: dict[str, float]) -> float:
    """A lesion part's signal ratio to normal (fatty, so suppressed) marrow on a fat-suppressed
    fluid-sensitive image, from its drawn T1/T2 ratios: oedema (type 1) brighter than on T2, fat
    (type 2) suppressed below the marrow, sclerosis (type 3) dark as on T2."""
    if modic_type == 1:
        return 1.4 * ratios["T2"]
    if modic_type == 2:
        return 0.8 / ratios["T1"]
    return ratios["T2"]


def spin_echo_signal(prop: TissueProperty, tr: float, te: float) -> float:
    """Spin-echo signal PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    return float(prop.pd * (1.0 - np.exp(-tr / prop.t1)) * np.exp(-te / prop.t2))


def label_lut() -> np.ndarray:
    """Tissue id -> training label (0 background, 1 body, 2 disc, 3 lesion)."""
    lut = np.zeros(N_IDS, dtype=np.uint8)
    lut[MARROW_BASE:CORTEX_BASE + MAX_VERTEBRAE] = lab.BODY
    lut[NUCLEUS_BASE:ANNULUS_BASE + MAX_DISCS] = lab.DISC
    lut[LESION_BASE:LESION_BASE + MAX_LESION_PARTS] = lab.LESION
    return lut


def lesion_part_id(lesion_index: int, part: int) -> int:
    """Tissue id of sub-region ``part`` (0 primary, 1 secondary) of lesion ``lesion_index``."""
    if not 0 <= lesion_index < MAX_LESION_PARTS // 2:
        raise ValueError(f"at most {MAX_LESION_PARTS // 2} lesions per case")
    return LESION_BASE + 2 * lesion_index + part


LABEL_LUT = label_lut()
