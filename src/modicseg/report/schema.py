"""JSON Schema of report.json (documented in docs/report.md) and a validator.

``SCHEMA_VERSION`` follows semantic versioning: a new optional field bumps the minor version, a
removed or renamed field or a changed meaning bumps the major version.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = "1.0.0"

_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_NONNEG = {"type": "number", "minimum": 0}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_VECTOR = {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3}
_LEVEL = {"type": ["string", "null"], "pattern": "^(C[1-7]|T([1-9]|1[0-2])|L[1-5]|S[1-5])$"}
_TYPE_NAME = {"type": ["string", "null"], "enum": ["1", "2", "3", None]}
LESION_TYPES = ["1", "2", "3", "1/2", "2/1", "2/3", "3/2", "unclassified"]

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
                           "method": {"type": "string"}},
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
                    "endplate": {"enum": ["superior", "inferior"]},
                    "type": {"enum": LESION_TYPES},
                    "primary_type": _TYPE_NAME,
                    "secondary_type": _TYPE_NAME,
                    "type_fractions": {
                        "type": "object",
                        "required": ["1", "2", "3"],
                        "additionalProperties": False,
                        "properties": {"1": _FRACTION, "2": _FRACTION, "3": _FRACTION},
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
                },
            },
        },
        "eligibility": {
            "type": "object",
            "required": ["eligible", "reasons", "qualifying_lesions", "criteria"],
            "properties": {
                "eligible": {"type": ["boolean", "null"]},
                "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "qualifying_lesions": {"type": "array", "items": {"type": "integer"}},
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
    a mixed type names its primary and secondary types in order.
    """
    import jsonschema

    jsonschema.validate(data, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    for lesion in data["lesions"]:
        expected = lesion["primary_type"] or "unclassified"
        if lesion["secondary_type"]:
            expected = f"{lesion['primary_type']}/{lesion['secondary_type']}"
        if lesion["type"] != expected:
            raise jsonschema.ValidationError(
                f"lesion {lesion['id']}: type {lesion['type']!r} disagrees with primary/secondary ({expected!r})")
