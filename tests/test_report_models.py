"""The typed models of report.json, change.json and case.json (modicseg.report.models): round trip,
schema_version checked on load, one clear error naming the file and the field, generated schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modicseg.cli import main
from modicseg.core.errors import InputError
from modicseg.longitudinal.timepoint import load_timepoint
from modicseg.report.models import (
    DOCUMENTS,
    SCHEMA_VERSION,
    ReportDocument,
    ReportFileError,
    UnknownSchemaVersionError,
    schema_text,
)
from modicseg.report.writers import report_dict, report_document
from tests.test_review_helpers import make_analysis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def analysis(tmp_path_factory) -> Path:
    return make_analysis(tmp_path_factory.mktemp("models") / "analysis")


def test_round_trip_keeps_the_file_text(analysis: Path) -> None:
    text = (analysis / "report.json").read_text()
    document = ReportDocument.load(analysis / "report.json")
    assert document.schema_version == SCHEMA_VERSION and document.lesions and document.vertebrae
    assert document.to_json() == text  # same keys, same order, same values
    again = ReportDocument.from_json(document.to_json())
    assert again == document
    lesion = document.lesions[0]
    assert isinstance(lesion.volume_mm3, float) and lesion.type_fractions.get("1") >= 0
    assert document.lesion(lesion.id) is lesion and document.vertebra(lesion.vertebra) is not None


def test_in_memory_report_becomes_the_same_document() -> None:
    from modicseg.analysis.pipeline import analyze_images
    from tests.test_review_helpers import phantom

    labels, t1, t2 = phantom((("L4", "inferior", "1", 6.0),))
    report = analyze_images(labels, t1=t1, t2=t2)
    document = report_document(report)
    assert document.to_dict() == report_dict(report)
    assert ReportDocument.from_json(document.to_json()) == document


def _edited(analysis: Path, target: Path, edit) -> Path:
    import shutil

    shutil.copytree(analysis, target)
    data = json.loads((target / "report.json").read_text())
    edit(data)
    (target / "report.json").write_text(json.dumps(data, indent=2))
    return target


def test_unknown_schema_version_names_the_file_and_version(analysis: Path, tmp_path: Path, capsys) -> None:
    folder = _edited(analysis, tmp_path / "newer", lambda d: d.update(schema_version="2.0.0"))
    with pytest.raises(UnknownSchemaVersionError, match=r"newer/report\.json.*'2\.0\.0'"):
        ReportDocument.load(folder / "report.json")
    with pytest.raises(InputError, match=r"2\.0\.0"):  # a ModicsegError: the CLI's exit 2
        load_timepoint(folder)
    assert main(["compare", str(folder), str(analysis), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "newer/report.json" in err and "2.0.0" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_wrong_type_gives_one_error_naming_file_and_field(analysis: Path, tmp_path: Path) -> None:
    def edit(data):
        data["lesions"][0]["volume_mm3"] = "large"

    folder = _edited(analysis, tmp_path / "edited", edit)
    with pytest.raises(ReportFileError) as caught:
        ReportDocument.load(folder / "report.json")
    message = str(caught.value)
    assert "edited/report.json" in message and "lesions.0.volume_mm3" in message and "'large'" in message
    assert message.count("field ") == 1


def test_a_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{ not json")
    with pytest.raises(ReportFileError, match=r"report\.json.*invalid JSON"):
        ReportDocument.load(tmp_path / "report.json")


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_committed_schemas_are_generated_from_the_models(name: str) -> None:
    committed = (REPO / "docs" / "schemas" / name).read_text(encoding="utf-8")
    assert committed == schema_text(DOCUMENTS[name]), f"docs/schemas/{name} is stale: run make schemas"
