"""Analysis thresholds: dataclasses with documented defaults, loadable from YAML.

``configs/analysis.yaml`` holds the same values as the defaults below; a user file may give any
subset of the keys (unknown keys are refused so that a typo is not silently ignored).
Physical thresholds are in mm / mm³ and converted per image.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modicseg.core.labels import MODIC_TYPES
from modicseg.io.classify import FAT_SUPPRESSED_FLUID
from modicseg.io.errors import InputError

#: Name of the fluid-sensitive ratio in each band set of the configuration file.
BAND_KEYS = {"bands": "t2", "stir_bands": "stir"}


@dataclass(frozen=True)
class TypeBand:
    """A rectangle in (T1 ratio, fluid-sensitive ratio) space: lower bound inclusive, upper bound exclusive.

    ``t2`` bounds the ratio on the fluid-sensitive image: the T2 for ``typing.bands``, the STIR (or
    other fat-suppressed image) for ``typing.stir_bands``, where the configuration file calls it ``stir``.
    """

    t1: tuple[float, float]
    t2: tuple[float, float]

    def contains(self, r1: Any, r2: Any) -> Any:
        """Boolean (array) of whether the ratios fall in this band."""
        return (r1 >= self.t1[0]) & (r1 < self.t1[1]) & (r2 >= self.t2[0]) & (r2 < self.t2[1])


def _default_bands() -> dict[str, TypeBand]:
    # Relative to normal marrow of the same vertebra (ratio 1.0):
    #   type 1 (oedema):     T1 low,  T2 high
    #   type 2 (fat):        T1 high, T2 iso or high
    #   type 3 (sclerosis):  T1 low,  T2 low
    return {
        "1": TypeBand(t1=(0.0, 0.80), t2=(1.20, math.inf)),
        "2": TypeBand(t1=(1.20, math.inf), t2=(0.85, math.inf)),
        "3": TypeBand(t1=(0.0, 0.80), t2=(0.0, 0.80)),
    }


def _default_stir_bands() -> dict[str, TypeBand]:
    # On a fat-suppressed fluid-sensitive image (STIR, TIRM, fat-saturated T2, Dixon water) normal
    # marrow, about half fat, is dark, so ratios to it differ from the T2's:
    #   type 1 (oedema):     T1 low,  STIR high: water against suppressed marrow, >= 1.5 (1.2 on T2:
    #                        suppressed marrow is dark and uneven, so the bar is higher)
    #   type 2 (fat):        T1 high, STIR low or iso: fat is suppressed with the marrow (< 1.1)
    #   type 3 (sclerosis):  T1 low,  STIR low (< 0.85)
    return {
        "1": TypeBand(t1=(0.0, 0.80), t2=(1.50, math.inf)),
        "2": TypeBand(t1=(1.20, math.inf), t2=(0.0, 1.10)),
        "3": TypeBand(t1=(0.0, 0.80), t2=(0.0, 0.85)),
    }


@dataclass
class VertebraConfig:
    """Vertebral-body instances and level naming."""

    min_volume_mm3: float = 1500.0  # body components smaller than this are noise
    min_volume_fraction: float = 0.15  # ... and those under this share of the median body, unless cut by the
    #                                    field of view (a sliver of the sacrum would shift every level name)
    split_min_disc_fraction: float = 0.3  # discs under this share of the median disc do not split bodies
    #                                       (disc voxels inside a body, rudimentary sacral discs)
    min_disc_volume_mm3: float = 100.0  # disc components smaller than this are not used to split
    split_min_side_fraction: float = 0.15  # a disc splits a body when both sides hold this share
    lowest_level: str = "S1"  # name of the lowest vertebra (override when the sacrum is not in view)
    lumbar_count: int = 5  # 4 (sacralised L5) or 6 (lumbarised S1) shift the names counted up from S1


@dataclass
class LesionConfig:
    """Lesion components."""

    min_volume_mm3: float = 20.0  # smaller components are dropped
    max_distance_mm: float = 8.0  # lesion voxels outside the bodies join the nearest body within this distance
    max_endplate_gap_mm: float | None = 3.0  # parts farther than this from both endplates of their body are
    #                                          not Modic changes (haemangioma, fat island, vein); None = keep all


@dataclass
class TypingConfig:
    """Reference marrow and per-voxel typing bands."""

    reference_erosion_mm: float = 2.0  # reference voxels lie this far inside the body (cortex, edges)
    reference_lesion_margin_mm: float = 3.0  # ... and this far from any lesion voxel
    min_reference_voxels: int = 30  # fewer: relax the erosion, then use neighbouring vertebrae
    bands: dict[str, TypeBand] = field(default_factory=_default_bands)  # with a T2
    stir_bands: dict[str, TypeBand] = field(default_factory=_default_stir_bands)  # with a STIR / fat-suppressed image
    # A second type is named when it forms a spatially coherent component (modic_typing.is_component):
    secondary_noise_floor_mm3: float = 10.0  # its connected regions smaller than this never count (scattered voxels)
    secondary_min_volume_mm3: float = 20.0  # a connected region this large names it (a lesion's own minimum) ...
    secondary_min_footprint_fraction: float = 0.25  # ... or regions covering this share of the lesion's
    #                                                 endplate footprint (a thin band against the endplate) ...
    secondary_min_fraction: float = 0.15  # ... or holding this share of the typed voxels
    rim_mm: float = 1.0  # lesion voxels this close to the body's surface (cortex, endplate) take the type
    #                      of the nearest deeper lesion voxel when partial volume with cortex and disc
    #                      explains their signal (within partial_volume_tolerance)
    min_core_fraction: float = 0.25  # ... unless fewer than this share of the lesion lies deeper
    partial_volume_tolerance: float = 0.1  # ratio units (about twice the noise of a clinical TSE, SNR ~20)

    def bands_for(self, fluid_contrast: str | None) -> tuple[str, dict[str, TypeBand]]:
        """(config key, bands) for a fluid-sensitive image of this kind: "STIR" / "T2FS" -> stir_bands."""
        if fluid_contrast in FAT_SUPPRESSED_FLUID:
            return "typing.stir_bands", self.stir_bands
        return "typing.bands", self.bands


#: Definitions of a lesion's cranio-caudal extent (``grading.extent_definition``).
EXTENT_DEFINITIONS = {
    "change": "the signal change's own cranio-caudal span, from its border at the endplate to its deepest "
              "border (the cortical endplate line is not part of the change)",
    "endplate": "from the vertebral body's outer surface at the endplate to the change's deepest border "
                "(the cortical endplate line, about 1 mm, included)",
}


@dataclass
class GradingConfig:
    """Udby extent grade: A below the first threshold, C above the second, B between (inclusive).

    ``extent_definition`` says how the extent behind every height fraction (this grade and the
    trial's 10 % rule) is measured: see EXTENT_DEFINITIONS.
    """

    grade_a_below: float = 0.25
    grade_c_above: float = 0.50
    extent_definition: str = "change"  # the trials' "craniocaudal size of the Modic change"


@dataclass
class EligibilityConfig:
    """Trial rule (BackToBasic, NCT03704363)."""

    min_height_fraction: float = 0.10
    levels: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")  # L6: six-lumbar spines
    required_type: str = "1"  # as primary or secondary type
    borderline_voxels: float = 1.0  # a height fraction within this many voxels (along the vertebra's axis,
    #                                 as a fraction of its height) of the threshold is borderline: review
    min_confidence: float = 0.5  # a qualifying lesion whose confidence (probability it is real) is below this
    #                              makes the verdict "undecided: review lesion N" when no other lesion qualifies


@dataclass
class AnalysisConfig:
    """Every threshold of ``modicseg analyze``."""

    vertebrae: VertebraConfig = field(default_factory=VertebraConfig)
    lesions: LesionConfig = field(default_factory=LesionConfig)
    typing: TypingConfig = field(default_factory=TypingConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    eligibility: EligibilityConfig = field(default_factory=EligibilityConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dictionary (infinite band bounds written as null)."""
        data = dataclasses.asdict(self)
        for key, fluid in BAND_KEYS.items():
            data["typing"][key] = {name: {"t1": _bounds_out(b.t1), fluid: _bounds_out(b.t2)}
                                   for name, b in getattr(self.typing, key).items()}
        data["eligibility"]["levels"] = list(self.eligibility.levels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "configuration") -> AnalysisConfig:
        """Defaults overridden by ``data`` (nested like ``to_dict``); unknown keys are errors."""
        config = cls()
        data = dict(data or {})
        data.pop("schema", None)
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name, values in data.items():
            if name not in sections:
                raise InputError(f"{source}: unknown section '{name}' (known: {', '.join(sections)})")
            if not isinstance(values, dict):
                raise InputError(f"{source}: section '{name}' must be a mapping")
            section = getattr(config, name)
            known = {f.name for f in dataclasses.fields(section)}
            for key, value in values.items():
                if key not in known:
                    raise InputError(f"{source}: unknown key '{name}.{key}' (known: {', '.join(sorted(known))})")
                setattr(section, key, _convert(name, key, value, getattr(section, key), source))
        config.validate(source)
        return config

    def validate(self, source: str = "configuration") -> None:
        """Raise InputError on values that cannot work."""
        for key, fluid in BAND_KEYS.items():
            bands = getattr(self.typing, key)
            if not bands or any(name not in MODIC_TYPES for name in bands):
                raise InputError(f"{source}: typing.{key} must name types among {MODIC_TYPES}")
            for name, band in bands.items():
                for which, (lo, hi) in (("t1", band.t1), (fluid, band.t2)):
                    if not lo < hi:
                        raise InputError(f"{source}: typing.{key}.{name}.{which}: lower bound must be below upper")
        if not 0 < self.typing.secondary_min_fraction <= 0.5:
            raise InputError(f"{source}: typing.secondary_min_fraction must be in (0, 0.5]")
        if not 0 < self.typing.secondary_min_footprint_fraction <= 1:
            raise InputError(f"{source}: typing.secondary_min_footprint_fraction must be in (0, 1]")
        if not 0 <= self.typing.secondary_noise_floor_mm3 <= self.typing.secondary_min_volume_mm3:
            raise InputError(f"{source}: typing.secondary_noise_floor_mm3 must be >= 0 and at most "
                             "typing.secondary_min_volume_mm3")
        if not self.typing.partial_volume_tolerance >= 0 or not self.typing.rim_mm >= 0:
            raise InputError(f"{source}: typing.partial_volume_tolerance and typing.rim_mm must be >= 0")
        if not self.lesions.max_distance_mm >= 0:
            raise InputError(f"{source}: lesions.max_distance_mm must be >= 0")
        if self.lesions.max_endplate_gap_mm is not None and not self.lesions.max_endplate_gap_mm >= 0:
            raise InputError(f"{source}: lesions.max_endplate_gap_mm must be >= 0 (or null)")
        if not 0 < self.grading.grade_a_below <= self.grading.grade_c_above:
            raise InputError(f"{source}: grading thresholds must satisfy 0 < grade_a_below <= grade_c_above")
        if self.grading.extent_definition not in EXTENT_DEFINITIONS:
            raise InputError(f"{source}: grading.extent_definition must be one of {', '.join(EXTENT_DEFINITIONS)}")
        if not self.eligibility.borderline_voxels >= 0:
            raise InputError(f"{source}: eligibility.borderline_voxels must be >= 0")
        if not 0 <= self.eligibility.min_confidence <= 1:
            raise InputError(f"{source}: eligibility.min_confidence must be in [0, 1]")
        from modicseg.analysis.levels import level_index, parse_level

        level_index(self.vertebrae.lowest_level, self.vertebrae.lumbar_count)
        for level in self.eligibility.levels:
            parse_level(level)
        if self.eligibility.required_type not in MODIC_TYPES:
            raise InputError(f"{source}: eligibility.required_type must be one of {MODIC_TYPES}")


def _bounds_out(bounds: tuple[float, float]) -> list[float | None]:
    return [None if math.isinf(v) else float(v) for v in bounds]


def _bounds_in(value: Any, where: str, source: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{source}: {where} must be [low, high] (null for open)")
    lo = 0.0 if value[0] is None else float(value[0])
    hi = math.inf if value[1] is None else float(value[1])
    return lo, hi


def _convert(section: str, key: str, value: Any, default: Any, source: str) -> Any:
    where = f"{section}.{key}"
    if section == "typing" and key in BAND_KEYS:
        fluid = BAND_KEYS[key]
        if not isinstance(value, dict):
            raise InputError(f"{source}: {where} must map type names to {{t1: [lo, hi], {fluid}: [lo, hi]}}")
        bands = {}
        for name, band in value.items():
            if not isinstance(band, dict) or set(band) != {"t1", fluid}:
                raise InputError(f"{source}: {where}.{name} needs exactly t1 and {fluid}")
            bands[str(name)] = TypeBand(t1=_bounds_in(band["t1"], f"{where}.{name}.t1", source),
                                        t2=_bounds_in(band[fluid], f"{where}.{name}.{fluid}", source))
        return bands
    try:
        if isinstance(default, tuple):
            return tuple(str(v) for v in value)
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise InputError(f"{source}: {where}: cannot use {value!r}") from None


def load_config(path: str | Path | None = None) -> AnalysisConfig:
    """Defaults, overridden by a YAML file when given."""
    if path is None:
        return AnalysisConfig()
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read configuration ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if data is not None and not isinstance(data, dict):
        raise InputError(f"{path}: a configuration is a mapping of sections")
    return AnalysisConfig.from_dict(data, source=str(path))
