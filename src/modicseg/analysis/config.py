"""Analysis thresholds: settings models with documented defaults, loadable from YAML.

``configs/analysis.yaml`` holds the same values as the defaults below; a user file may give any
subset of the keys. They are ``modicseg.core.settings.Settings`` models, like the model and
training settings: an unknown key (a typo) or a value that cannot work is an ``InputError``
naming the file and the dotted key. Physical thresholds are in mm / mm³ and converted per image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, cast

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from modicseg.core.errors import InputError
from modicseg.core.labels import LUMBAR_COUNTS, MODIC_TYPES, THORACIC_COUNTS, level_index, parse_level
from modicseg.core.settings import Settings, one_of
from modicseg.io.classify import FAT_SUPPRESSED_FLUID

#: Name of the fluid-sensitive ratio in each band set of the configuration file.
BAND_KEYS = {"bands": "t2", "stir_bands": "stir"}


def _bounds_in(value: Any) -> Any:
    """[low, high] with null for open: null low = 0, null high = infinity."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("must be [low, high] (null for open)")
    return (0.0 if value[0] is None else value[0], math.inf if value[1] is None else value[1])


def _bounds_out(bounds: tuple[float, float]) -> list[float | None]:
    return [None if math.isinf(v) else float(v) for v in bounds]


#: A ratio interval [low, high): written as a two-element list, null for an open (infinite) bound.
Bounds = Annotated[tuple[float, float], BeforeValidator(_bounds_in), PlainSerializer(_bounds_out)]


def _text(value: Any) -> Any:
    """A number written where a name is meant (``required_type: 1``) is the name."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_text)]


class TypeBand(Settings):
    """A rectangle in (T1 ratio, fluid-sensitive ratio) space: lower bound inclusive, upper bound exclusive.

    ``t2`` bounds the ratio on the fluid-sensitive image: the T2 for ``typing.bands``, the STIR (or
    other fat-suppressed image) for ``typing.stir_bands`` (a :class:`StirBand`), where the
    configuration file calls it ``stir``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the configuration file's name of the fluid-sensitive bound
    fluid_key: ClassVar[str] = "t2"

    t1: Bounds
    t2: Bounds

    @model_validator(mode="before")
    @classmethod
    def _exact_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) != {"t1", cls.fluid_key}:
            raise ValueError(f"needs exactly t1 and {cls.fluid_key}")
        return data

    @field_validator("t1", "t2")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError("lower bound must be below upper")
        return bounds

    def contains(self, r1: Any, r2: Any) -> Any:
        """Boolean (array) of whether the ratios fall in this band."""
        return (r1 >= self.t1[0]) & (r1 < self.t1[1]) & (r2 >= self.t2[0]) & (r2 < self.t2[1])


class StirBand(TypeBand):
    """A band of ``typing.stir_bands``: the same rectangle, its fluid-sensitive bound called ``stir``."""

    fluid_key: ClassVar[str] = "stir"

    t2: Bounds = Field(alias="stir", serialization_alias="stir")


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


def _default_stir_bands() -> dict[str, StirBand]:
    # On a fat-suppressed fluid-sensitive image (STIR, TIRM, fat-saturated T2, Dixon water) normal
    # marrow, about half fat, is dark, so ratios to it differ from the T2's:
    #   type 1 (oedema):     T1 low,  STIR high: water against suppressed marrow, >= 1.5 (1.2 on T2:
    #                        suppressed marrow is dark and uneven, so the bar is higher)
    #   type 2 (fat):        T1 high, STIR low or iso: fat is suppressed with the marrow (< 1.1)
    #   type 3 (sclerosis):  T1 low,  STIR low (< 0.85)
    return {
        "1": StirBand(t1=(0.0, 0.80), stir=(1.50, math.inf)),
        "2": StirBand(t1=(1.20, math.inf), stir=(0.0, 1.10)),
        "3": StirBand(t1=(0.0, 0.80), stir=(0.0, 0.85)),
    }


def _check_level(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except InputError as exc:
        raise ValueError(str(exc)) from None


class VertebraConfig(Settings):
    """Vertebral-body instances and level naming."""

    min_volume_mm3: float = 1500.0  # body components smaller than this are noise
    min_volume_fraction: float = 0.15  # ... and those under this share of the median body, unless cut by the
    #                                    field of view (a sliver of the sacrum would shift every level name)
    split_min_disc_fraction: float = 0.3  # discs under this share of the median disc do not split bodies
    #                                       (disc voxels inside a body, rudimentary sacral discs)
    min_disc_volume_mm3: float = 100.0  # disc components smaller than this are not used to split
    split_min_side_fraction: float = 0.15  # a disc splits a body when both sides hold this share
    split_max_disc_distance_mm: float = Field(default=15.0, ge=0)  # ... and the body comes this close to its centre
    separating_disc_offset_mm: float = Field(default=15.0, ge=0)  # a disc separates two bodies when its centre
    #                                   lies this close to the line joining theirs (bone under S1 has no disc above)
    sacrum_check_height_factor: float = Field(default=2.5, ge=0)  # a normal-sized disc below the lowest body
    #                                   whose centre lies within this many of that body's heights ...
    sacrum_check_margin_mm: float = Field(default=10.0, ge=0)  # ... plus this of its centre warns that the sacrum
    #                                   may be outside the field of view (the lowest body may not be S1)
    lowest_level: Text = "S1"  # name of the lowest vertebra (override when the sacrum is not in view)
    lumbar_count: int = 5  # 4 (sacralised L5) or 6 (lumbarised S1) shift the names counted up from S1
    thoracic_count: int = 12  # 13: a T13 between T12 and L1 (names counted up from S1: ..., L1, T13, T12, ...)

    @field_validator("lumbar_count")
    @classmethod
    def _lumbar_count(cls, value: int) -> int:
        return one_of(value, LUMBAR_COUNTS)

    @field_validator("thoracic_count")
    @classmethod
    def _thoracic_count(cls, value: int) -> int:
        return one_of(value, THORACIC_COUNTS)

    @model_validator(mode="after")
    def _level_exists(self) -> VertebraConfig:
        _check_level(level_index, self.lowest_level, self.lumbar_count, self.thoracic_count)
        return self


class LesionConfig(Settings):
    """Lesion components."""

    min_volume_mm3: float = 20.0  # smaller components are dropped
    max_distance_mm: float = Field(default=8.0, ge=0)  # lesion voxels outside the bodies join the nearest
    #                                                    body within this distance
    max_endplate_gap_mm: float | None = Field(default=3.0, ge=0)  # parts farther than this from both endplates
    #                     of their body are not Modic changes (haemangioma, fat island, vein); None = keep all
    require_signal_change: bool = True  # parts that look, for the most part, like the vertebra's normal marrow on
    #                     every image given (inside the range no typing band sets apart) are not counted
    count_at_field_edge: bool = False  # parts at an end of a body cut by the cranio-caudal edge of the field of view
    #                     (no endplate in view there, e.g. S1 cut by the lower edge) are not counted


class TypingConfig(Settings):
    """Reference marrow and per-voxel typing bands."""

    reference_erosion_mm: float = 2.0  # reference voxels lie this far inside the body (cortex, edges)
    reference_lesion_margin_mm: float = 3.0  # ... and this far from any lesion voxel
    min_reference_voxels: int = 30  # fewer: relax the erosion, then use neighbouring vertebrae
    bands: dict[str, TypeBand] = Field(default_factory=_default_bands)  # with a T2
    stir_bands: dict[str, StirBand] = Field(default_factory=_default_stir_bands)  # with a STIR / fat-suppressed image
    # A second type is named when it forms a spatially coherent component (modic_typing.is_component):
    secondary_noise_floor_mm3: float = Field(default=10.0, ge=0)  # its connected regions smaller than this never
    #                                                               count (scattered voxels)
    secondary_min_volume_mm3: float = 20.0  # a connected region this large names it (a lesion's own minimum) ...
    secondary_min_footprint_fraction: float = Field(default=0.25, gt=0, le=1)  # ... or regions covering this share
    #                                     of the lesion's endplate footprint (a thin band against the endplate) ...
    secondary_min_fraction: float = Field(default=0.15, gt=0, le=0.5)  # ... or holding this share of the typed voxels
    rim_mm: float = Field(default=1.0, ge=0)  # lesion voxels this close to the body's surface (cortex, endplate)
    #                      take the type of the nearest deeper lesion voxel when partial volume with cortex and disc
    #                      explains their signal (within partial_volume_tolerance)
    min_core_fraction: float = 0.25  # ... unless fewer than this share of the lesion lies deeper
    partial_volume_tolerance: float = Field(default=0.1, ge=0)  # ratio units (about twice the noise of a clinical
    #                                                             TSE, SNR ~20)

    @field_validator("bands", "stir_bands", mode="before")
    @classmethod
    def _type_names(cls, bands: Any) -> Any:
        if not isinstance(bands, dict):
            return bands  # pydantic says what a mapping needs
        if not bands or any(str(name) not in MODIC_TYPES for name in bands):
            raise ValueError(f"must name types among {MODIC_TYPES}")
        return {str(name): band for name, band in bands.items()}

    @model_validator(mode="after")
    def _noise_floor_below_component(self) -> TypingConfig:
        if not self.secondary_noise_floor_mm3 <= self.secondary_min_volume_mm3:
            raise ValueError("secondary_noise_floor_mm3 must be at most secondary_min_volume_mm3")
        return self

    def bands_for(self, fluid_contrast: str | None) -> tuple[str, dict[str, TypeBand]]:
        """(config key, bands) for a fluid-sensitive image of this kind: "STIR" / "T2FS" -> stir_bands."""
        if fluid_contrast in FAT_SUPPRESSED_FLUID:
            return "typing.stir_bands", cast("dict[str, TypeBand]", self.stir_bands)
        return "typing.bands", self.bands


#: Definitions of a lesion's cranio-caudal extent (``grading.extent_definition``).
EXTENT_DEFINITIONS = {
    "change": "the signal change's own cranio-caudal span, from its border at the endplate to its deepest "
              "border (the cortical endplate line is not part of the change)",
    "endplate": "from the vertebral body's outer surface at the endplate to the change's deepest border "
                "(the cortical endplate line, about 1 mm, included)",
}


class GradingConfig(Settings):
    """Udby extent grade: A below the first threshold, C above the second, B between (inclusive).

    ``extent_definition`` says how the extent behind every height fraction (this grade and the
    trial's 10 % rule) is measured: see EXTENT_DEFINITIONS.
    """

    grade_a_below: float = 0.25
    grade_c_above: float = 0.50
    extent_definition: str = "change"  # the trials' "craniocaudal size of the Modic change"

    @field_validator("extent_definition")
    @classmethod
    def _known_definition(cls, value: str) -> str:
        return one_of(value, tuple(EXTENT_DEFINITIONS))

    @model_validator(mode="after")
    def _ordered(self) -> GradingConfig:
        if not 0 < self.grade_a_below <= self.grade_c_above:
            raise ValueError("thresholds must satisfy 0 < grade_a_below <= grade_c_above")
        return self


class EligibilityConfig(Settings):
    """Trial rule (BackToBasic, NCT03704363)."""

    min_height_fraction: float = 0.10
    levels: tuple[Text, ...] = ("T12", "T13", "L1", "L2", "L3", "L4", "L5", "L6", "S1")  # T13 / L6: spines with
    #                                   13 thoracic / 6 lumbar vertebrae (Th12-S1 stays the whole range)
    required_type: Text = "1"  # as primary or secondary type
    borderline_voxels: float = Field(default=1.0, ge=0)  # a height fraction within this many voxels (along the
    #                     vertebra's axis, as a fraction of its height) of the threshold is borderline: review
    min_confidence: float = Field(default=0.5, ge=0, le=1)  # a qualifying lesion whose confidence (probability it
    #                              is real) is below this makes the verdict "undecided: review lesion N" when no other
    #                              lesion qualifies

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, levels: tuple[str, ...]) -> tuple[str, ...]:
        for level in levels:
            _check_level(parse_level, level)
        return levels

    @field_validator("required_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return one_of(value, MODIC_TYPES)


class AnalysisConfig(Settings):
    """Every threshold of ``modicseg analyze``."""

    vertebrae: VertebraConfig = Field(default_factory=VertebraConfig)
    lesions: LesionConfig = Field(default_factory=LesionConfig)
    typing: TypingConfig = Field(default_factory=TypingConfig)
    grading: GradingConfig = Field(default_factory=GradingConfig)
    eligibility: EligibilityConfig = Field(default_factory=EligibilityConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dictionary (infinite band bounds written as null, STIR bounds as ``stir``)."""
        data = self.model_dump(mode="json", by_alias=True)
        data["eligibility"]["levels"] = list(self.eligibility.levels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "configuration") -> AnalysisConfig:
        """Defaults overridden by ``data`` (nested like ``to_dict``); unknown keys are errors."""
        data = dict(data or {})
        data.pop("schema", None)
        return cls.from_data(data, source)


def load_config(path: str | Path | None = None) -> AnalysisConfig:
    """Defaults, overridden by a YAML file when given."""
    if path is None:
        return AnalysisConfig()
    from modicseg.core.settings import read_yaml

    return AnalysisConfig.from_dict(read_yaml(path), source=str(path))
