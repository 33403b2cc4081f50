"""``modicseg demo`` (what ``make demo`` runs) end to end: study, inspect, NIfTI, two analyses."""

from __future__ import annotations

import json

from modicseg.cli import main
from modicseg.report.models import ReportDocument


def test_demo_runs_the_whole_pipeline(tmp_path, capsys) -> None:
    out = tmp_path / "demo-output"
    assert main(["demo", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    truth = json.loads((out / "study" / "truth.json").read_text())
    assert truth["lesions"], "the demo study should hold Modic changes"
    # the chosen T1/T2 are named in the inspect table and were converted
    assert "T1" in (out / "inspect.txt").read_text()
    assert {"study_T1w.nii.gz", "study_T2w.nii.gz", "study_T1w_on_T2grid.nii.gz"} <= {
        p.name for p in (out / "nifti").iterdir()}
    for folder in ("analysis", "analysis_exact_labels"):
        written = {p.name for p in (out / folder).iterdir()}
        assert {"report.json", "qc.png", "labels.nii.gz", "labels_seg.dcm"} <= written
        # the typed model loads the demo's report.json and writes back the same text
        text = (out / folder / "report.json").read_text()
        assert ReportDocument.load(out / folder / "report.json").to_json() == text
    # post-processing alone reproduces the generator's truth: levels, endplates and types
    exact = json.loads((out / "analysis_exact_labels" / "report.json").read_text())
    found = {(les["level"], les["endplate"], les["type"]) for les in exact["lesions"]}
    assert found == {(les["level"], les["endplate"], les["type"]) for les in truth["lesions"]}
    # the network run names the same vertebrae the generator drew (T12..S1 at least)
    network = json.loads((out / "analysis" / "report.json").read_text())
    levels = [v["level"] for v in network["vertebrae"]]
    assert {"T12", "L1", "L2", "L3", "L4", "L5", "S1"} <= set(levels)
    assert network["provenance"]["segmentation"]["source"] != "labels given"
    assert "generator truth" in printed and "eligibility" in printed
    # run again into the same folder (make demo twice): one study, not two side by side
    files = sorted(p.name for p in (out / "study" / "dicom").rglob("*") if p.is_file())
    assert main(["demo", "-o", str(out)]) == 0
    assert len([p for p in (out / "study" / "dicom").rglob("*") if p.is_file()]) == len(files)
    again = json.loads((out / "analysis" / "report.json").read_text())
    assert [les["level"] for les in again["lesions"]] == [les["level"] for les in network["lesions"]]


def test_demo_refuses_a_study_folder_it_did_not_write(tmp_path, capsys) -> None:
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("a user's file")
    assert main(["demo", "-o", str(tmp_path)]) == 2
    assert "not a demo study" in capsys.readouterr().err
    assert (tmp_path / "study" / "notes.txt").read_text() == "a user's file"
