"""Typed models of the JSON files modicseg writes: report.json (``ReportDocument``), ``compare``'s
change.json (``ChangeDocument``) and a reading package's case.json (``CaseDocument``).

Each model mirrors its file exactly (same keys, same order): ``Model.from_json(text, source=path)``
reads a file's text, ``model.to_json()`` gives it back (keys that were absent stay absent), and
``Model.load(path)`` reads a file. A file that does not fit (a wrong type, a missing field) or has an
unknown ``schema_version`` raises one :class:`ReportFileError` naming the file and the field. The
JSON Schemas in ``docs/schemas/`` are generated from these models (``make schemas``).

Fields added after a file's first version are optional, so older files still load; unknown keys
are kept (a newer minor version loads and writes back unchanged).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from modicseg.core.errors import InputError
from modicseg.core.labels import ENDPLATES, LESION_TYPES, LEVEL_PATTERN, MODIC_TYPES

#: report.json's version (semantic versioning: a new optional field bumps the minor version, a removed
#: or renamed field or a changed meaning bumps the major version).
SCHEMA_VERSION = "1.3.0"
#: change.json's version
CHANGE_SCHEMA_VERSION = "modicseg-change/1"
#: case.json's format tag and the highest package version this code reads
CASE_FORMAT = "modicseg-review-case"

M = TypeVar("M", bound="_Document")


class ReportFileError(InputError):
    """A JSON file modicseg wrote (report.json, change.json, case.json) cannot be read as such."""


class UnknownSchemaVersionError(ReportFileError):
    """The file's ``schema_version`` is one this version of modicseg does not know."""


# --- building blocks ---------------------------------------------------------------------------------

# The vocabularies come from core.labels (Literal[...] of its tuples: one definition).
#: a level name, one of core.labels.ALL_LEVELS (or null: not named)
Level = Annotated[str, StringConstraints(pattern=LEVEL_PATTERN)] | None
TypeName = Literal[MODIC_TYPES] | None  # type: ignore[valid-type]
LesionType = Literal[LESION_TYPES]  # type: ignore[valid-type]
Endplate = Literal[ENDPLATES]  # type: ignore[valid-type]
ExtentGrade = Literal["A", "B", "C"]
AxisMethod = Literal["endplates", "principal axes", "spine tangent"]


def _vector() -> Any:
    return Field(min_length=3, max_length=3)


class _Model(BaseModel):
    """Keys a file has and this model does not know are kept (and written back)."""

    model_config = ConfigDict(extra="allow")


class _Document(_Model):
    """A whole file: read with ``from_json`` / ``load``, written with ``to_json``."""

    file_kind: ClassVar[str] = "file"
    schema_id: ClassVar[str] = ""
    schema_title: ClassVar[str] = ""

    @classmethod
    def _check_version(cls, data: Any, source: str) -> None:  # overridden per file
        return None

    @classmethod
    def from_dict(cls: type[M], data: Any, source: str | Path = "<json>") -> M:
        """The model of a parsed JSON object; a misfit raises ReportFileError naming ``source``."""
        source = str(source)
        if not isinstance(data, dict):
            raise ReportFileError(f"{source}: not a {cls.file_kind} (a JSON object was expected)")
        cls._check_version(data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ReportFileError(f"{source}: not a valid {cls.file_kind}: {_describe(exc)}") from None

    @classmethod
    def from_json(cls: type[M], text: str | bytes, source: str | Path = "<json>") -> M:
        """The model of a file's text; invalid JSON or a misfit raises ReportFileError naming ``source``."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReportFileError(f"{source}: not a {cls.file_kind}: invalid JSON ({exc})") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls: type[M], path: str | Path) -> M:
        """Read ``path``; an unreadable or invalid file raises ReportFileError naming it."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportFileError(f"{path}: cannot read ({exc})") from None
        return cls.from_json(text, source=path)

    def to_dict(self) -> dict[str, Any]:
        """The file's content as plain JSON values (keys that were never set are left out)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def to_json(self, indent: int | None = 2) -> str:
        """The file's text (``indent`` 2, non-ASCII kept, a final newline)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of the file, as written to docs/schemas/."""
        schema = cls.model_json_schema(mode="validation")
        schema["title"] = cls.schema_title or schema.get("title", cls.__name__)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": cls.schema_id, **schema}


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as 'field.path: message' (the first few)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        got = error.get("input")
        shown = "" if error["type"] == "missing" or isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"field {where}: {error['msg']}{shown}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# --- report.json -------------------------------------------------------------------------------------

class Segmentation(_Model):
    source: Literal["network", "labels given"]
    checkpoint_sha256: str | None


class SeriesSummary(_Model):
    series_number: int | None
    series_description: str | None
    series_instance_uid: str | None
    weighting: str | None
    source_format: str | None = None
    shape: list[int] = _vector()
    voxel_size_mm: list[float] = _vector()
    orientation: str | None = None


class RefusedSeries(_Model):
    series: str
    series_number: int | None = None
    series_description: str | None = None
    plane: str | None = None
    weighting: str | None = None
    n_images: int | None = None
    refusal: str
    instead_of: Literal["t1", "t2"] | None


class Grid(_Model):
    shape: Any
    voxel_size_mm: Any
    orientation: Any
    affine_ras: Any


class Provenance(_Model):
    tool: Literal["modicseg"]
    version: str
    segmentation: Segmentation
    source_format: str | None = None
    reference_grid: Literal["t1", "t2"] | None = None
    series: dict[str, SeriesSummary | None] | None = None
    series_choice: dict[str, str] | None = None
    refused_series: list[RefusedSeries] | None = None  # since 1.1.0
    t1_resampled_onto_t2: bool | None = None
    grid: Grid


class Typing(_Model):
    possible: bool
    reason: str | None
    method: str | None = None
    fluid_contrast: Literal["T2", "STIR", "T2FS"] | None = None  # since 1.1.0
    bands: Literal["typing.bands", "typing.stir_bands"] | None = None  # since 1.1.0


class Measures(_Model):  # since 1.2.0
    extent_definition: Literal["change", "endplate"]
    extent: str | None = None
    height_fraction: str | None = None
    height_fraction_uncertainty: str | None = None


class Vertebra(_Model):
    """One vertebral body of report.json."""

    label: int = Field(ge=1)  # 1 = most superior body found
    level: Level
    height_mm: float = Field(ge=0)
    volume_mm3: float = Field(ge=0)
    ap_depth_mm: float = Field(ge=0)
    centre_ras: list[float] = _vector()
    axis_ras: list[float] = _vector()
    truncated: bool
    axis_method: AxisMethod
    reference_t1: float | None
    reference_t2: float | None
    reference_voxels: int = Field(ge=0)
    reference_method: str


class TypeFractions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type1: float = Field(alias="1", ge=0, le=1)
    type2: float = Field(alias="2", ge=0, le=1)
    type3: float = Field(alias="3", ge=0, le=1)

    def get(self, name: str, default: float = 0.0) -> float:
        """The fraction of Modic type ``name`` ("1", "2" or "3")."""
        return float({"1": self.type1, "2": self.type2, "3": self.type3}.get(name, default))


class Lesion(_Model):
    """One Modic change of report.json."""

    id: int = Field(ge=1)
    level: Level
    vertebra: int = Field(ge=1)
    endplate: Endplate
    type: LesionType
    primary_type: TypeName
    secondary_type: TypeName
    type_fractions: TypeFractions
    unclassified_fraction: float = Field(ge=0, le=1)
    volume_mm3: float = Field(ge=0)
    fraction_of_vertebral_volume: float | None = Field(ge=0, le=1)
    craniocaudal_extent_mm: float = Field(ge=0)
    height_fraction: float | None = Field(ge=0, le=1)
    ap_depth_mm: float = Field(ge=0)
    ap_depth_fraction: float | None = Field(ge=0, le=1)
    extent_grade: ExtentGrade
    centre_ras: list[float] = _vector()
    voxels: int = Field(ge=1)
    # since 1.2.0: both extent definitions, the height fraction's uncertainty, borderline
    extent_of_change_mm: float | None = Field(default=None, ge=0)
    extent_from_endplate_mm: float | None = Field(default=None, ge=0)
    height_fraction_uncertainty: float | None = Field(default=None, ge=0)
    borderline: bool = False
    # since 1.3.0: probability (0..1) that the lesion is real, from the network's own uncertainty and the
    # lesion's features, calibrated on held-out real scans (docs/confidence.md); null when the labels were given
    confidence: float | None = Field(default=None, ge=0, le=1)
    confidence_inputs: dict[str, float] | None = None

    @property
    def type1_volume_mm3(self) -> float:
        """Volume (mm³) of the lesion's voxels typed 1."""
        return self.volume_mm3 * (1.0 - self.unclassified_fraction) * self.type_fractions.type1


class Eligibility(_Model):
    eligible: bool | None
    status: Literal["eligible", "not eligible", "borderline", "undecided"] | None = None  # since 1.2.0
    reasons: list[str] = Field(min_length=1)
    qualifying_lesions: list[int]
    borderline_lesions: list[int] | None = None  # since 1.2.0
    criteria: dict[str, Any]
    # since 1.3.0: probability (0..1) that the verdict is right, from the lesions' confidences (null when
    # the labels were given); qualifying lesions below eligibility.min_confidence make the verdict undecided
    verdict_confidence: float | None = Field(default=None, ge=0, le=1)
    low_confidence_lesions: list[int] | None = None


class SegOutput(_Model):
    written: bool
    reason: str | None


class Outputs(_Model):
    labels_seg: SegOutput
    uncertainty: str | None = None  # since 1.3.0: file of the network's per-voxel uncertainty (0..1), or null


_REPORT_VERSION = re.compile(r"^1\.\d+\.\d+$")


class ReportDocument(_Document):
    """report.json of ``modicseg analyze`` (docs/report.md)."""

    file_kind: ClassVar[str] = "report.json"
    schema_id: ClassVar[str] = "https://modicseg.invalid/schemas/report-1.json"
    schema_title: ClassVar[str] = "modicseg analysis report"

    schema_version: str = Field(pattern=_REPORT_VERSION.pattern)
    provenance: Provenance
    typing: Typing
    measures: Measures | None = None  # since 1.2.0
    vertebrae: list[Vertebra]
    lesions: list[Lesion]
    eligibility: Eligibility
    outputs: Outputs
    config: dict[str, Any]
    warnings: list[str]

    @classmethod
    def _check_version(cls, data: Any, source: str) -> None:
        version = data.get("schema_version")
        if not isinstance(version, str) or not _REPORT_VERSION.match(version):
            raise UnknownSchemaVersionError(
                f"{source}: unknown report schema_version {version!r} (this modicseg reads 1.x.y, "
                f"writes {SCHEMA_VERSION}); was it written by a newer modicseg?")

    def lesion(self, lesion_id: int) -> Lesion:
        """The lesion with id ``lesion_id`` (KeyError when absent)."""
        for lesion in self.lesions:
            if lesion.id == int(lesion_id):
                return lesion
        raise KeyError(lesion_id)

    def vertebra(self, label: int) -> Vertebra | None:
        """The vertebra with label ``label``, or None."""
        return next((v for v in self.vertebrae if v.label == int(label)), None)


# --- change.json (modicseg compare) --------------------------------------------------------------

ChangeType = str  # "none", "unclassified" or a lesion type; constrained by the pattern below
_CHANGE_TYPE = r"^(none|unclassified|[123](/[123])?)$"


class ChangeTool(_Model):
    name: Literal["modicseg"]
    version: Any = None


class Identity(_Model):
    same_patient: bool | None


class TimepointSummary(_Model):
    analysis: str | None
    lesions: int = Field(ge=0)
    vertebrae: int = Field(ge=0)
    levels: list[Level]
    analysis_version: str | None = None
    segmentation: str | None = None
    eligible: bool | None


class ChangeRegistration(_Model):
    method: str
    affine_ras: list[list[float]] = Field(min_length=4, max_length=4)
    rotation_deg: float = Field(ge=0)
    translation_mm: float = Field(ge=0)
    level_shift: int | None = None
    landmark_rms_mm: float | None = None
    body_dice: dict[str, float | None] | None = None
    vertebra_pairs: dict[str, Any] | None = None


class ChangeSummary(_Model):
    baseline_lesions: int = Field(ge=0)
    followup_lesions: int = Field(ge=0)
    same_type: int = Field(ge=0)
    type_change: int = Field(ge=0)
    regressed: int = Field(ge=0)
    new: int = Field(ge=0)
    baseline_type1_lesions: int = Field(ge=0)
    type1_to_type2: int = Field(ge=0)
    type1_regressed: int = Field(ge=0)
    type1_volume_baseline_mm3: float = Field(ge=0)
    type1_volume_followup_mm3: float = Field(ge=0)
    type1_volume_change_mm3: float
    type1_volume_change_percent: float | None


class LesionChange(_Model):
    """One baseline/follow-up lesion pair of change.json."""

    level: Level
    endplate: Endplate | None
    status: Literal["same type", "type change", "regressed", "new"]
    transition: str = Field(pattern=r"^\S+ -> \S+$")
    baseline_type: ChangeType = Field(pattern=_CHANGE_TYPE)
    followup_type: ChangeType = Field(pattern=_CHANGE_TYPE)
    baseline_id: int | None
    followup_id: int | None
    matched_by: str
    overlap_dice: float | None = Field(default=None, ge=0, le=1)
    volume_baseline_mm3: float = Field(ge=0)
    volume_followup_mm3: float = Field(ge=0)
    volume_change_mm3: float
    volume_change_percent: float | None = None
    size_change: Literal["grown", "shrunk", "stable", "new", "gone", "none"]
    type1_volume_baseline_mm3: float | None = Field(default=None, ge=0)
    type1_volume_followup_mm3: float | None = Field(default=None, ge=0)
    type1_volume_change_mm3: float | None = None
    height_fraction_baseline: float | None = Field(default=None, ge=0, le=1)
    height_fraction_followup: float | None = Field(default=None, ge=0, le=1)
    height_fraction_change: float | None = None
    extent_grade_baseline: ExtentGrade | None = None
    extent_grade_followup: ExtentGrade | None = None
    followup_level: Level = None
    # the lesions' confidences (probability each is real; null when unmatched or labels were given)
    confidence_baseline: float | None = Field(default=None, ge=0, le=1)
    confidence_followup: float | None = Field(default=None, ge=0, le=1)


class ChangeDocument(_Document):
    """change.json of ``modicseg compare`` (docs/batch.md)."""

    file_kind: ClassVar[str] = "change.json"
    schema_id: ClassVar[str] = "https://modicseg.invalid/schemas/change-1.json"
    schema_title: ClassVar[str] = "modicseg baseline vs follow-up comparison (change.json)"

    schema_version: Literal["modicseg-change/1"]
    tool: ChangeTool
    subject: str | None
    identity: Identity
    baseline: TimepointSummary
    followup: TimepointSummary
    registration: ChangeRegistration
    summary: ChangeSummary
    lesions: list[LesionChange]
    definitions: dict[str, str]
    warnings: list[str]

    @classmethod
    def _check_version(cls, data: Any, source: str) -> None:
        version = data.get("schema_version")
        if version != CHANGE_SCHEMA_VERSION:
            raise UnknownSchemaVersionError(
                f"{source}: unknown change.json schema_version {version!r} (this modicseg reads "
                f"{CHANGE_SCHEMA_VERSION!r})")


# --- case.json (review pack) ---------------------------------------------------------------------

class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseVertebra(_Model):
    label: int = Field(ge=1)
    voxels: int = Field(ge=0)
    volume_mm3: float = Field(ge=0)
    centre_ras: list[float] = _vector()
    axis_ras: list[float] = _vector()
    ap_axis_ras: list[float] = _vector()
    height_mm: float = Field(ge=0)
    superior_mm: float
    inferior_mm: float
    ap_depth_mm: float
    truncated: bool
    axis_method: AxisMethod
    level: Level


class CaseLesion(_Closed):
    """A lesion of the model's reading in a case: a report lesion's fields without its position."""

    id: int = Field(ge=1)
    level: Level
    vertebra: int = Field(ge=1)
    endplate: Endplate
    type: LesionType
    primary_type: TypeName = None
    secondary_type: TypeName = None
    type_fractions: TypeFractions | None = None
    unclassified_fraction: float | None = Field(default=None, ge=0, le=1)
    volume_mm3: float | None = Field(default=None, ge=0)
    fraction_of_vertebral_volume: float | None = Field(default=None, ge=0, le=1)
    craniocaudal_extent_mm: float | None = Field(default=None, ge=0)
    height_fraction: float | None = Field(default=None, ge=0, le=1)
    ap_depth_mm: float | None = Field(default=None, ge=0)
    ap_depth_fraction: float | None = Field(default=None, ge=0, le=1)
    extent_grade: ExtentGrade | None = None
    voxels: int | None = Field(default=None, ge=1)
    extent_of_change_mm: float | None = Field(default=None, ge=0)
    extent_from_endplate_mm: float | None = Field(default=None, ge=0)
    height_fraction_uncertainty: float | None = Field(default=None, ge=0)
    borderline: bool | None = None


class CaseEligibility(_Model):
    eligible: bool | None
    status: Literal["eligible", "not eligible", "borderline", "undecided"] | None = None
    reasons: list[str]


class CaseModel(_Closed):
    lesions: list[CaseLesion]
    eligibility: CaseEligibility


class CaseDocument(_Document):
    """case.json of a reading package's case (docs/review.md)."""

    model_config = ConfigDict(extra="forbid")
    file_kind: ClassVar[str] = "case.json"
    schema_id: ClassVar[str] = "https://modicseg.invalid/schemas/review-case-1.json"
    schema_title: ClassVar[str] = "modicseg reading-package case (case.json)"

    format: Literal["modicseg-review-case"]
    schema_version: int = Field(ge=1)
    code: str = Field(pattern=r"^[A-Z0-9]{4,12}$")
    shape: list[Annotated[int, Field(ge=1)]] = _vector()
    voxel_size_mm: list[Annotated[float, Field(gt=0)]] = _vector()
    vertebrae: list[CaseVertebra]
    model: CaseModel
    config: dict[str, Any]
    files: dict[str, Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+\.nii\.gz$")]]


#: every file model, by the name of its schema in docs/schemas/
DOCUMENTS: dict[str, type[_Document]] = {
    "report.schema.json": ReportDocument,
    "change.schema.json": ChangeDocument,
    "review-case.schema.json": CaseDocument,
}


def schema_text(model: type[_Document]) -> str:
    """The text of ``model``'s schema file in docs/schemas/ (``make schemas``)."""
    return json.dumps(model.json_schema(), indent=2, ensure_ascii=False) + "\n"
