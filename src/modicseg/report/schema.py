"""JSON Schemas of report.json (documented in docs/report.md), of ``compare``'s change.json
(docs/batch.md) and of a reading package's case.json (docs/review.md), and their validators.

The schemas are generated from the typed models in :mod:`modicseg.report.models` (the same text as
``docs/schemas/*.schema.json``, written by ``make schemas``). ``SCHEMA_VERSION`` follows semantic
versioning: a new optional field bumps the minor version, a removed or renamed field or a changed
meaning bumps the major version.

With the environment variable ``MODICSEG_VALIDATE_OUTPUTS=1`` (set by the test suite, inherited
by subprocesses and batch workers) every writer validates what it writes and raises on a
mismatch (needs ``jsonschema``).
"""

from __future__ import annotations

import os
from typing import Any

from modicseg.core.labels import LESION_TYPES as _LESION_TYPES
from modicseg.core.labels import UNCLASSIFIED
from modicseg.report.models import SCHEMA_VERSION, CaseDocument, ChangeDocument, ReportDocument

__all__ = ["LESION_TYPES", "SCHEMA_VERSION", "VALIDATE_ENV", "validate_case", "validate_change", "validate_report",
           "validating"]  # and REPORT_SCHEMA, CHANGE_SCHEMA, CASE_SCHEMA (module __getattr__)

#: Environment variable that makes every writer validate its JSON against these schemas.
VALIDATE_ENV = "MODICSEG_VALIDATE_OUTPUTS"
LESION_TYPES = list(_LESION_TYPES)

#: the schemas' names here and their models (generated on first use: REPORT_SCHEMA, CHANGE_SCHEMA, CASE_SCHEMA)
_MODELS: dict[str, type[ReportDocument | ChangeDocument | CaseDocument]] = {
    "REPORT_SCHEMA": ReportDocument, "CHANGE_SCHEMA": ChangeDocument, "CASE_SCHEMA": CaseDocument}
_SCHEMAS: dict[str, dict[str, Any]] = {}


def __getattr__(name: str) -> dict[str, Any]:
    """REPORT_SCHEMA, CHANGE_SCHEMA and CASE_SCHEMA, generated from the models when first asked for."""
    if name not in _MODELS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _SCHEMAS:
        _SCHEMAS[name] = _MODELS[name].json_schema()
    return _SCHEMAS[name]


def validate_report(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when ``data`` does not follow the schema.

    Needs the ``jsonschema`` package (a dev dependency); also checks what the schema cannot say:
    a mixed type names its primary and secondary types in order, the eligibility's status agrees
    with its decision, and the lesions it names exist.
    """
    import jsonschema

    jsonschema.validate(data, __getattr__("REPORT_SCHEMA"), cls=jsonschema.Draft202012Validator)
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
        expected = {True: "eligible", False: "not eligible"}.get(eligibility["eligible"])
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


def validate_change(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a change.json does not follow CHANGE_SCHEMA, or its rows
    disagree with their status (a new lesion has no baseline, a regressed one no follow-up)."""
    import jsonschema

    jsonschema.validate(data, __getattr__("CHANGE_SCHEMA"), cls=jsonschema.Draft202012Validator)
    for row in data["lesions"]:
        if row["transition"] != f"{row['baseline_type']} -> {row['followup_type']}":
            raise jsonschema.ValidationError(f"row {row}: transition disagrees with its types")
        if (row["status"] == "new") != (row["baseline_type"] == "none") or \
                (row["status"] == "regressed") != (row["followup_type"] == "none"):
            raise jsonschema.ValidationError(f"row {row}: status {row['status']!r} disagrees with its types")


def validate_case(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a reading package's case.json does not follow CASE_SCHEMA."""
    import jsonschema

    jsonschema.validate(data, __getattr__("CASE_SCHEMA"), cls=jsonschema.Draft202012Validator)
    _check_types(data["model"]["lesions"])
    labels = [v["label"] for v in data["vertebrae"]]
    if labels != list(range(1, len(labels) + 1)):
        raise jsonschema.ValidationError(f"case {data['code']}: vertebra labels {labels} are not 1..N")


def validating() -> bool:
    """Whether writers validate what they write (``MODICSEG_VALIDATE_OUTPUTS`` set and not "0")."""
    return os.environ.get(VALIDATE_ENV, "") not in ("", "0")
