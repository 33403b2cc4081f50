"""``modicseg analyze`` outputs: files, schema, CSV, NIfTI grid, DICOM SEG, privacy, atomicity."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from modicseg.cli import main
from modicseg.core.convert import load_nifti, save_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.dicom_series import load_series
from modicseg.report.schema import SCHEMA_VERSION, validate_report
from tests.dicom_factory import CANARY_BIRTH, CANARY_ID, CANARY_NAME
from tests.test_analysis_phantoms import DEFAULT_LESIONS, make_phantom, write_phantom_dicom

OUTPUT_FILES = {"report.json", "lesions.csv", "vertebrae.csv", "labels.nii.gz", "types.nii.gz", "labels_seg.dcm",
                "qc.png", "t1.nii.gz", "t2.nii.gz"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    phantom = make_phantom(DEFAULT_LESIONS)
    study = write_phantom_dicom(phantom, root / "study")
    labels = root / "labels.nii.gz"
    save_nifti(phantom.labels, str(labels))
    out = root / "out"
    assert main(["analyze", str(study), "--labels", str(labels), "-o", str(out)]) == 0
    return {"root": root, "study": study, "labels": labels, "out": out, "phantom": phantom,
            "report": json.loads((out / "report.json").read_text())}


def test_all_outputs_written_and_report_valid(run) -> None:
    out = run["out"]
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    report = run["report"]
    validate_report(report)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["outputs"]["labels_seg"] == {"written": True, "reason": None}
    assert report["provenance"]["segmentation"] == {"source": "labels given", "checkpoint_sha256": None}
    assert report["provenance"]["series"]["t2"]["series_number"] == 4
    assert report["provenance"]["series"]["t1"]["series_number"] == 3
    assert [v["level"] for v in report["vertebrae"]] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert {(les["level"], les["endplate"], les["type"]) for les in report["lesions"]} == {
        ("L2", "superior", "2"), ("L4", "inferior", "1"), ("L5", "superior", "1/2"), ("S1", "superior", "3/2")}
    assert report["eligibility"]["eligible"] is True


def test_schema_rejects_broken_reports(run) -> None:
    import jsonschema

    broken = json.loads(json.dumps(run["report"]))
    broken["lesions"][0]["type"] = "1/3"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    broken = json.loads(json.dumps(run["report"]))
    broken["lesions"][0]["secondary_type"] = "3"  # type string no longer matches
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    del broken["eligibility"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


def test_csv_tables_match_the_json(run) -> None:
    with open(run["out"] / "lesions.csv") as fh:
        rows = list(csv.DictReader(fh))
    lesions = run["report"]["lesions"]
    assert [int(r["id"]) for r in rows] == [les["id"] for les in lesions]
    for row, les in zip(rows, lesions, strict=True):
        assert row["type"] == les["type"] and row["level"] == les["level"]
        assert float(row["height_fraction"]) == pytest.approx(les["height_fraction"], abs=1e-3)
        assert float(row["volume_mm3"]) == pytest.approx(les["volume_mm3"], rel=1e-3)
    with open(run["out"] / "vertebrae.csv") as fh:
        vrows = list(csv.DictReader(fh))
    assert [r["level"] for r in vrows] == [v["level"] for v in run["report"]["vertebrae"]]


def test_label_and_type_maps_lie_on_the_t2_grid(run) -> None:
    t2 = load_series(run["study"] / "t2")
    labels = load_nifti(run["out"] / "labels.nii.gz", LabelImage)
    types = load_nifti(run["out"] / "types.nii.gz", LabelImage)
    assert labels.same_grid(t2) and types.same_grid(t2)
    np.testing.assert_array_equal(labels.array, run["phantom"].labels.array)
    assert set(np.unique(types.array)) <= {0, 1, 2, 3, 4}
    assert ((types.array > 0) == (labels.array == 3)).all()


def test_dicom_seg_reads_back_and_lines_up_with_the_t2_series(run) -> None:
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(run["out"] / "labels_seg.dcm")
    t2_files = sorted((run["study"] / "t2").iterdir())
    t2_headers = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in t2_files)}
    series_uid = next(iter(t2_headers.values())).SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert seg.FrameOfReferenceUID == next(iter(t2_headers.values())).FrameOfReferenceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Vertebral body", "Intervertebral disc", "Modic change"]
    # every frame sits on a T2 image at that image's position, and holds the labels of that slice
    labels = run["phantom"].labels.array
    t2 = load_series(run["study"] / "t2")
    inv = np.linalg.inv(t2.affine)
    pixels = seg.get_volume(combine_segments=True, relabel=False) if hasattr(seg, "get_volume") else None
    del pixels
    for frame_index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = t2_headers[source_uid]
        position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(position, np.asarray(source.ImagePositionPatient, dtype=float), atol=1e-3)
        ras = position * [-1, -1, 1]
        k = int(round((inv[:3, :3] @ ras + inv[:3, 3])[2]))
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        value = [s.SegmentLabel for s in seg.SegmentSequence][segment - 1]
        code = {"Vertebral body": 1, "Intervertebral disc": 2, "Modic change": 3}[value]
        mask = seg.pixel_array[frame_index].astype(bool)  # (rows, columns) = (j, i)
        np.testing.assert_array_equal(mask, (labels[:, :, k] == code).T)


def test_no_patient_identifier_in_any_output(run) -> None:
    canaries = [s.encode() for s in (CANARY_NAME, CANARY_ID, CANARY_BIRTH, "CANARY")]
    for path in run["out"].iterdir():
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for canary in canaries:
            assert canary not in data, (path.name, canary)
    import pydicom

    seg = pydicom.dcmread(run["out"] / "labels_seg.dcm")
    assert str(seg.PatientName) == "" and seg.PatientID == "" and seg.PatientBirthDate == ""
    assert seg.StudyDate == "" and seg.get("StudyTime", "") == ""


def test_seg_keeps_patient_identifiers_only_on_request(run, tmp_path) -> None:
    import pydicom

    out = tmp_path / "out"
    assert main(["analyze", str(run["study"]), "--labels", str(run["labels"]), "-o", str(out), "--no-qc",
                 "--seg-keep-patient-identifiers"]) == 0
    seg = pydicom.dcmread(out / "labels_seg.dcm")
    source = pydicom.dcmread(next((run["study"] / "t2").iterdir()), stop_before_pixels=True)
    assert str(seg.PatientName) == str(source.PatientName) == CANARY_NAME
    assert seg.PatientID == source.PatientID and seg.StudyDate == source.StudyDate
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    # the request covers the SEG only: the other outputs still hold no identifier
    for path in out.iterdir():
        if path.name != "labels_seg.dcm":
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            assert CANARY_NAME.encode() not in data and CANARY_ID.encode() not in data, path.name


def test_nifti_input_writes_no_seg_and_says_why(run, tmp_path) -> None:
    ph = run["phantom"]
    save_nifti(ph.t1, str(tmp_path / "t1.nii.gz"))
    save_nifti(ph.t2, str(tmp_path / "t2.nii.gz"))
    out = tmp_path / "out"
    assert main(["analyze", "--t1", str(tmp_path / "t1.nii.gz"), "--t2", str(tmp_path / "t2.nii.gz"),
                 "--labels", str(run["labels"]), "-o", str(out), "--no-qc"]) == 0
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    assert not (out / "labels_seg.dcm").exists() and not (out / "qc.png").exists()
    assert report["outputs"]["labels_seg"]["written"] is False
    assert "NIfTI" in report["outputs"]["labels_seg"]["reason"]
    assert [les["type"] for les in report["lesions"]] == [les["type"] for les in run["report"]["lesions"]]


def test_single_contrast_study(run, tmp_path) -> None:
    save_nifti(run["phantom"].t2, str(tmp_path / "t2.nii.gz"))
    out = tmp_path / "out"
    assert main(["analyze", "--t2", str(tmp_path / "t2.nii.gz"), "--labels", str(run["labels"]),
                 "-o", str(out), "--no-qc"]) == 0
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    assert report["typing"]["possible"] is False
    assert {les["type"] for les in report["lesions"]} == {"unclassified"}
    assert report["eligibility"]["eligible"] is None


def test_bad_labels_fail_cleanly_and_write_nothing(run, tmp_path, capsys) -> None:
    bad = run["phantom"].labels.array.copy()
    bad[0, 0, 0] = 7
    save_nifti(LabelImage(bad, run["phantom"].labels.affine), str(tmp_path / "bad.nii.gz"))
    out = tmp_path / "out"
    assert main(["analyze", str(run["study"]), "--labels", str(tmp_path / "bad.nii.gz"), "-o", str(out)]) == 2
    assert "values [7]" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_analyze_without_labels_needs_a_model(run, tmp_path, capsys, monkeypatch) -> None:
    # point the model stage at an empty folder, so that no shipped model can be found
    monkeypatch.setenv("MODICSEG_MODEL", str(tmp_path / "no-model"))
    assert main(["analyze", str(run["study"]), "-o", str(tmp_path / "out")]) == 2
    assert "--labels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_python_api_mirrors_the_cli(run, tmp_path) -> None:
    import modicseg
    from modicseg.analysis import Report
    from modicseg.report.writers import report_dict

    report = modicseg.analyze(run["study"], labels=run["labels"])
    assert isinstance(report, Report) and isinstance(report, modicseg.Report)
    data = report_dict(report)
    validate_report(data)
    assert [les.type for les in report.lesions] == [les["type"] for les in run["report"]["lesions"]]
    assert isinstance(report.labels, LabelImage) and isinstance(report.t2, ScalarImage)
    written = modicseg.write_report(report, tmp_path / "api")
    assert {p.name for p in written} == OUTPUT_FILES
    assert all(Path(p).is_file() for p in written)


def test_analyze_runs_the_network_when_given_a_model(run, tmp_path) -> None:
    """An untrained tiny network: whatever it segments, analyze completes and records the checkpoint."""
    torch = pytest.importorskip("torch")
    from modicseg.model.checkpoint import save_checkpoint
    from modicseg.model.config import ModelConfig
    from modicseg.model.network import build_network

    config = ModelConfig.from_dict({
        "spacing_mm": [4.0, 1.0, 1.0], "patch_size": [8, 32, 32], "network": {"filters": [4, 8, 16]},
        "inference": {"roi_size": [8, 64, 64], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1}}).resolved()
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model", build_network(config), config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "out"
        assert main(["analyze", str(run["study"]), "--model", str(checkpoint), "--device", "cpu", "-o", str(out),
                     "--no-qc"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    segmentation = report["provenance"]["segmentation"]
    assert segmentation["source"] == "network" and len(segmentation["checkpoint_sha256"]) == 64
    assert load_nifti(out / "labels.nii.gz", LabelImage).same_grid(load_series(run["study"] / "t2"))
