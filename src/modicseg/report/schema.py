"""JSON Schemas of report.json (documented in docs/report.md), of ``compare``'s change.json
(docs/batch.md) and of a reading package's case.json (docs/review.md), and their validators.

``SCHEMA_VERSION`` follows semantic versioning: a new optional field bumps the minor version, a
removed or renamed field or a changed meaning bumps the major version.

With the environment variable ``MODICSEG_VALIDATE_OUTPUTS=1`` (set by the test suite, inherited
by subprocesses and batch workers) every writer validates what it writes and raises on a
mismatch (needs ``jsonschema``).
"""

from __future__ import annotations

import os
from typing import Any

from modicseg.core.labels import ENDPLATES, LEVEL_PATTERN, MODIC_TYPES, UNCLASSIFIED
from modicseg.core.labels import LESION_TYPES as _LESION_TYPES

SCHEMA_VERSION = "1.2.0"
#: Environment variable that makes every writer validate its JSON against these schemas.
VALIDATE_ENV = "MODICSEG_VALIDATE_OUTPUTS"

_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_NONNEG = {"type": "number", "minimum": 0}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_VECTOR = {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3}
#: A level name, one of core.labels.ALL_LEVELS: L6 exists in a six-lumbar spine (--lumbar-count 6).
_LEVEL = {"type": ["string", "null"], "pattern": LEVEL_PATTERN}
_TYPE_NAME = {"type": ["string", "null"], "enum": [*MODIC_TYPES, None]}
LESION_TYPES = list(_LESION_TYPES)

_SERIES = {
    "type": ["object", "null"],
    "required": ["series_number", "series_description", "series_instance_uid", "weighting", "shape",
                 "voxel_size_mm"],
    "properties": {
        "series_number": {"type": ["integer", "null"]},
        "series_description": {"type": ["string", "null"]},
        "series_instance_uid": {"type": ["string", "null"]},
        "weighting": {"type": ["string", "null"]},
        "source_format": {"type": ["string", "null"]},
        "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3},
        "voxel_size_mm": _VECTOR,
        "orientation": {"type": "string"},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://modicseg.invalid/schemas/report-1.json",
    "title": "modicseg analysis report",
    "type": "object",
    "required": ["schema_version", "provenance", "typing", "vertebrae", "lesions", "eligibility", "outputs",
                 "config", "warnings"],
    "properties": {
        "schema_version": {"type": "string", "pattern": r"^1\.\d+\.\d+$"},
        "provenance": {
            "type": "object",
            "required": ["tool", "version", "segmentation", "grid"],
            "properties": {
                "tool": {"const": "modicseg"},
                "version": {"type": "string"},
                "segmentation": {
                    "type": "object",
                    "required": ["source", "checkpoint_sha256"],
                    "properties": {
                        "source": {"enum": ["network", "labels given"]},
                        "checkpoint_sha256": {"type": ["string", "null"]},
                    },
                },
                "source_format": {"type": ["string", "null"]},
                "reference_grid": {"enum": ["t1", "t2"]},
                "series": {"type": "object", "properties": {"t1": _SERIES, "t2": _SERIES}},
                "series_choice": {"type": "object", "additionalProperties": {"type": "string"}},
                # since 1.1.0: every refused stack of a DICOM study and why ("instead_of": the role it
                # would have filled, when the analysis went on without it: --allow-missing-contrast)
                "refused_series": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["series", "refusal", "instead_of"],
                        "properties": {
                            "series": {"type": "string"},
                            "series_number": {"type": ["integer", "null"]},
                            "series_description": {"type": ["string", "null"]},
                            "plane": {"type": "string"},
                            "weighting": {"type": "string"},
                            "n_images": {"type": "integer"},
                            "refusal": {"type": "string"},
                            "instead_of": {"enum": ["t1", "t2", None]},
                        },
                    },
                },
                "t1_resampled_onto_t2": {"type": "boolean"},
                "grid": {
                    "type": "object",
                    "required": ["shape", "voxel_size_mm", "orientation", "affine_ras"],
                },
            },
        },
        "typing": {
            "type": "object",
            "required": ["possible", "reason"],
            "properties": {"possible": {"type": "boolean"}, "reason": {"type": ["string", "null"]},
                           "method": {"type": "string"},
                           # since 1.1.0: the fluid-sensitive image and the bands that typed the lesions
                           "fluid_contrast": {"enum": ["T2", "STIR", "T2FS", None]},
                           "bands": {"enum": ["typing.bands", "typing.stir_bands", None]}},
        },
        "vertebrae": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "level", "height_mm", "volume_mm3", "ap_depth_mm", "centre_ras", "axis_ras",
                             "truncated", "axis_method", "reference_t1", "reference_t2", "reference_voxels",
                             "reference_method"],
                "properties": {
                    "label": {"type": "integer", "minimum": 1},
                    "level": _LEVEL,
                    "height_mm": _NONNEG,
                    "volume_mm3": _NONNEG,
                    "ap_depth_mm": _NONNEG,
                    "centre_ras": _VECTOR,
                    "axis_ras": _VECTOR,
                    "truncated": {"type": "boolean"},
                    "axis_method": {"enum": ["endplates", "principal axes", "spine tangent"]},
                    "reference_t1": _NUMBER_OR_NULL,
                    "reference_t2": _NUMBER_OR_NULL,
                    "reference_voxels": {"type": "integer", "minimum": 0},
                    "reference_method": {"type": "string"},
                },
            },
        },
        "lesions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "level", "vertebra", "endplate", "type", "primary_type", "secondary_type",
                             "type_fractions", "unclassified_fraction", "volume_mm3", "fraction_of_vertebral_volume",
                             "craniocaudal_extent_mm", "height_fraction", "ap_depth_mm", "ap_depth_fraction",
                             "extent_grade", "centre_ras", "voxels"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "level": _LEVEL,
                    "vertebra": {"type": "integer", "minimum": 1},
                    "endplate": {"enum": list(ENDPLATES)},
                    "type": {"enum": LESION_TYPES},
                    "primary_type": _TYPE_NAME,
                    "secondary_type": _TYPE_NAME,
                    "type_fractions": {
                        "type": "object",
                        "required": list(MODIC_TYPES),
                        "additionalProperties": False,
                        "properties": dict.fromkeys(MODIC_TYPES, _FRACTION),
                    },
                    "unclassified_fraction": _FRACTION,
                    "volume_mm3": _NONNEG,
                    "fraction_of_vertebral_volume": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "craniocaudal_extent_mm": _NONNEG,
                    "height_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "ap_depth_mm": _NONNEG,
                    "ap_depth_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "extent_grade": {"enum": ["A", "B", "C"]},
                    "centre_ras": _VECTOR,
                    "voxels": {"type": "integer", "minimum": 1},
                    # since 1.2.0: both extent definitions, the height fraction's uncertainty, borderline
                    "extent_of_change_mm": {"type": ["number", "null"], "minimum": 0},
                    "extent_from_endplate_mm": {"type": ["number", "null"], "minimum": 0},
                    "height_fraction_uncertainty": {"type": ["number", "null"], "minimum": 0},
                    "borderline": {"type": "boolean"},
                },
            },
        },
        # since 1.2.0: which extent the height fractions use
        "measures": {
            "type": "object",
            "required": ["extent_definition"],
            "properties": {"extent_definition": {"enum": ["change", "endplate"]},
                           "extent": {"type": "string"}},
        },
        "eligibility": {
            "type": "object",
            "required": ["eligible", "reasons", "qualifying_lesions", "criteria"],
            "properties": {
                "eligible": {"type": ["boolean", "null"]},
                "status": {"enum": ["eligible", "not eligible", "borderline", "undecided"]},  # since 1.2.0
                "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "qualifying_lesions": {"type": "array", "items": {"type": "integer"}},
                "borderline_lesions": {"type": "array", "items": {"type": "integer"}},  # since 1.2.0
                "criteria": {"type": "object"},
            },
        },
        "outputs": {
            "type": "object",
            "required": ["labels_seg"],
            "properties": {
                "labels_seg": {
                    "type": "object",
                    "required": ["written", "reason"],
                    "properties": {"written": {"type": "boolean"}, "reason": {"type": ["string", "null"]}},
                },
            },
        },
        "config": {"type": "object"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def validate_report(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when ``data`` does not follow the schema.

    Needs the ``jsonschema`` package (a dev dependency); also checks what the schema cannot say:
    a mixed type names its primary and secondary types in order, the eligibility's status agrees
    with its decision, and the lesions it names exist.
    """
    import jsonschema

    jsonschema.validate(data, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    _check_types(data["lesions"])
    ids = {lesion["id"] for lesion in data["lesions"]}
    eligibility = data["eligibility"]
    named = set(eligibility["qualifying_lesions"]) | set(eligibility.get("borderline_lesions", []))
    if not named <= ids:
        raise jsonschema.ValidationError(f"eligibility names lesions {sorted(named - ids)} that the report lacks")
    if bool(eligibility["qualifying_lesions"]) != (eligibility["eligible"] is True):
        raise jsonschema.ValidationError("eligibility: eligible must be true exactly when a lesion qualifies")
    status = eligibility.get("status")
    if status is not None:
        expected = {True: "eligible", False: "not eligible"}.get(eligibility["eligible"])  # type: ignore[arg-type]
        if expected is None:
            expected = "borderline" if eligibility.get("borderline_lesions") else "undecided"
        if status != expected:
            raise jsonschema.ValidationError(f"eligibility: status {status!r} disagrees with the decision "
                                             f"({expected!r})")


def _check_types(lesions: list[dict[str, Any]]) -> None:
    import jsonschema

    for lesion in lesions:
        if "type" not in lesion or "primary_type" not in lesion:
            continue
        expected = lesion["primary_type"] or UNCLASSIFIED
        if lesion.get("secondary_type"):
            expected = f"{lesion['primary_type']}/{lesion['secondary_type']}"
        if lesion["type"] != expected:
            raise jsonschema.ValidationError(
                f"lesion {lesion.get('id')}: type {lesion['type']!r} disagrees with primary/secondary ({expected!r})")


# --- change.json (modicseg compare) -----------------------------------------------------------------

_CHANGE_TYPE = {"type": "string", "pattern": "^(none|unclassified|[123](/[123])?)$"}
_OPTIONAL_NUMBER = {"type": ["number", "null"]}
_TIMEPOINT = {
    "type": "object",
    "required": ["analysis", "lesions", "vertebrae", "levels", "eligible"],
    "properties": {
        "analysis": {"type": ["string", "null"]},
        "lesions": {"type": "integer", "minimum": 0},
        "vertebrae": {"type": "integer", "minimum": 0},
        "levels": {"type": "array", "items": _LEVEL},
        "analysis_version": {"type": ["string", "null"]},
        "segmentation": {"type": ["string", "null"]},
        "eligible": {"type": ["boolean", "null"]},
    },
}
CHANGE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://modicseg.invalid/schemas/change-1.json",
    "title": "modicseg baseline vs follow-up comparison (change.json)",
    "type": "object",
    "required": ["schema_version", "tool", "subject", "identity", "baseline", "followup", "registration", "summary",
                 "lesions", "definitions", "warnings"],
    "properties": {
        "schema_version": {"const": "modicseg-change/1"},
        "tool": {"type": "object", "required": ["name", "version"], "properties": {"name": {"const": "modicseg"}}},
        "subject": {"type": ["string", "null"]},
        "identity": {"type": "object", "required": ["same_patient"],
                     "properties": {"same_patient": {"type": ["boolean", "null"]}}},
        "baseline": _TIMEPOINT,
        "followup": _TIMEPOINT,
        "registration": {
            "type": "object",
            "required": ["method", "affine_ras", "rotation_deg", "translation_mm"],
            "properties": {
                "method": {"type": "string"},
                "affine_ras": {"type": "array", "minItems": 4, "maxItems": 4,
                               "items": {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 4}},
                "rotation_deg": _NONNEG,
                "translation_mm": _NONNEG,
                "level_shift": {"type": ["integer", "null"]},
                "landmark_rms_mm": _OPTIONAL_NUMBER,
                "body_dice": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
                "vertebra_pairs": {"type": "object"},
            },
        },
        "summary": {
            "type": "object",
            "required": ["baseline_lesions", "followup_lesions", "same_type", "type_change", "regressed", "new",
                         "baseline_type1_lesions", "type1_to_type2", "type1_regressed", "type1_volume_baseline_mm3",
                         "type1_volume_followup_mm3", "type1_volume_change_mm3", "type1_volume_change_percent"],
            "properties": {
                **{key: {"type": "integer", "minimum": 0} for key in (
                    "baseline_lesions", "followup_lesions", "same_type", "type_change", "regressed", "new",
                    "baseline_type1_lesions", "type1_to_type2", "type1_regressed")},
                "type1_volume_baseline_mm3": _NONNEG,
                "type1_volume_followup_mm3": _NONNEG,
                "type1_volume_change_mm3": _NUMBER,
                "type1_volume_change_percent": _OPTIONAL_NUMBER,
            },
        },
        "lesions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["level", "endplate", "status", "transition", "baseline_type", "followup_type",
                             "baseline_id", "followup_id", "matched_by", "volume_baseline_mm3",
                             "volume_followup_mm3", "volume_change_mm3", "size_change"],
                "properties": {
                    "level": _LEVEL,
                    "followup_level": _LEVEL,
                    "endplate": {"enum": [*ENDPLATES, None]},
                    "status": {"enum": ["same type", "type change", "regressed", "new"]},
                    "transition": {"type": "string", "pattern": r"^\S+ -> \S+$"},
                    "baseline_type": _CHANGE_TYPE,
                    "followup_type": _CHANGE_TYPE,
                    "baseline_id": {"type": ["integer", "null"]},
                    "followup_id": {"type": ["integer", "null"]},
                    "matched_by": {"type": "string"},
                    "overlap_dice": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "volume_baseline_mm3": _NONNEG,
                    "volume_followup_mm3": _NONNEG,
                    "volume_change_mm3": _NUMBER,
                    "volume_change_percent": _OPTIONAL_NUMBER,
                    "size_change": {"enum": ["grown", "shrunk", "stable", "new", "gone", "none"]},
                    "type1_volume_baseline_mm3": _NONNEG,
                    "type1_volume_followup_mm3": _NONNEG,
                    "type1_volume_change_mm3": _NUMBER,
                    "height_fraction_baseline": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "height_fraction_followup": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "height_fraction_change": _OPTIONAL_NUMBER,
                    "extent_grade_baseline": {"enum": ["A", "B", "C", None]},
                    "extent_grade_followup": {"enum": ["A", "B", "C", None]},
                },
            },
        },
        "definitions": {"type": "object", "additionalProperties": {"type": "string"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def validate_change(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a change.json does not follow CHANGE_SCHEMA, or its rows
    disagree with their status (a new lesion has no baseline, a regressed one no follow-up)."""
    import jsonschema

    jsonschema.validate(data, CHANGE_SCHEMA, cls=jsonschema.Draft202012Validator)
    for row in data["lesions"]:
        if row["transition"] != f"{row['baseline_type']} -> {row['followup_type']}":
            raise jsonschema.ValidationError(f"row {row}: transition disagrees with its types")
        if (row["status"] == "new") != (row["baseline_type"] == "none") or \
                (row["status"] == "regressed") != (row["followup_type"] == "none"):
            raise jsonschema.ValidationError(f"row {row}: status {row['status']!r} disagrees with its types")


# --- case.json (review pack) ---------------------------------------------------------------------

_CASE_LESION = {
    "type": "object",
    "required": ["id", "level", "vertebra", "endplate", "type"],
    "properties": {key: value for key, value in REPORT_SCHEMA["properties"]["lesions"]["items"]["properties"].items()
                   if key not in ("centre_ras",)},
    "additionalProperties": False,
}
CASE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://modicseg.invalid/schemas/review-case-1.json",
    "title": "modicseg reading-package case (case.json)",
    "type": "object",
    "required": ["format", "schema_version", "code", "shape", "voxel_size_mm", "vertebrae", "model", "config",
                 "files"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "modicseg-review-case"},
        "schema_version": {"type": "integer", "minimum": 1},
        "code": {"type": "string", "pattern": "^[A-Z0-9]{4,12}$"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3},
        "voxel_size_mm": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                          "minItems": 3, "maxItems": 3},
        "vertebrae": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "voxels", "volume_mm3", "centre_ras", "axis_ras", "ap_axis_ras", "height_mm",
                             "superior_mm", "inferior_mm", "ap_depth_mm", "truncated", "axis_method", "level"],
                "properties": {
                    "label": {"type": "integer", "minimum": 1},
                    "voxels": {"type": "integer", "minimum": 0},
                    "volume_mm3": _NONNEG,
                    "centre_ras": _VECTOR, "axis_ras": _VECTOR, "ap_axis_ras": _VECTOR,
                    "height_mm": _NONNEG,
                    "truncated": {"type": "boolean"},
                    "axis_method": {"enum": ["endplates", "principal axes", "spine tangent"]},
                    "level": _LEVEL,
                },
            },
        },
        "model": {
            "type": "object",
            "required": ["lesions", "eligibility"],
            "additionalProperties": False,
            "properties": {
                "lesions": {"type": "array", "items": _CASE_LESION},
                "eligibility": {"type": "object", "required": ["eligible", "reasons"],
                                "properties": {"eligible": {"type": ["boolean", "null"]},
                                               "status": {"enum": ["eligible", "not eligible", "borderline",
                                                                   "undecided"]},
                                               "reasons": {"type": "array", "items": {"type": "string"}}}},
            },
        },
        "config": {"type": "object"},
        "files": {"type": "object", "additionalProperties": {"type": "string", "pattern": r"^[a-z0-9_]+\.nii\.gz$"}},
    },
}


def validate_case(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a reading package's case.json does not follow CASE_SCHEMA."""
    import jsonschema

    jsonschema.validate(data, CASE_SCHEMA, cls=jsonschema.Draft202012Validator)
    _check_types(data["model"]["lesions"])
    labels = [v["label"] for v in data["vertebrae"]]
    if labels != list(range(1, len(labels) + 1)):
        raise jsonschema.ValidationError(f"case {data['code']}: vertebra labels {labels} are not 1..N")


def validating() -> bool:
    """Whether writers validate what they write (``MODICSEG_VALIDATE_OUTPUTS`` set and not "0")."""
    return os.environ.get(VALIDATE_ENV, "") not in ("", "0")
