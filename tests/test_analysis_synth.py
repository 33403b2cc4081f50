"""Analysis of the synthetic generator's ground-truth label maps reproduces its truth (no network).

This isolates post-processing from segmentation: the label maps are exact (centre-point rule),
the images carry partial volume, texture, bias and noise, and the truth is continuous.
"""

from __future__ import annotations

import gzip
import json
import statistics

import numpy as np
import pytest

from modicseg.analysis.pipeline import analyze_images
from modicseg.cli import main
from modicseg.core.resample import resample_to
from modicseg.report.schema import validate_report
from modicseg.synth.case import CaseOptions, generate_case


def _majority(values: np.ndarray) -> int:
    values = values[values > 0]
    return int(np.bincount(values).argmax()) if values.size else 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from modicseg.synth.demo import make_demo_study

    root = tmp_path_factory.mktemp("demo")
    study = make_demo_study(root / "demo", seed=0)
    out = root / "out"
    labels = root / "demo" / "nifti" / "labels.nii.gz"
    assert main(["analyze", str(study), "--labels", str(labels), "-o", str(out)]) == 0
    return {"root": root, "study": study, "out": out,
            "truth": json.loads((root / "demo" / "truth.json").read_text()),
            "report": json.loads((out / "report.json").read_text())}


def test_demo_study_end_to_end_matches_truth(demo) -> None:
    report, truth = demo["report"], demo["truth"]
    validate_report(report)
    assert report["provenance"]["source_format"] == "dicom"
    found = {(les["level"], les["endplate"]): les for les in report["lesions"]}
    assert len(found) == len(truth["lesions"])
    for t in truth["lesions"]:
        les = found[(t["level"], t["endplate"])]
        assert les["type"] == t["type"]
        assert abs(les["height_fraction"] - t["height_fraction"]) < 0.03
        assert abs(les["volume_mm3"] / t["volume_mm3"] - 1) < 0.15
    assert report["eligibility"]["eligible"] is any(t["trial_eligible"] for t in truth["lesions"])
    heights = {v["level"]: v["height_mm"] for v in truth["vertebrae"]}
    errors = [abs(v["height_mm"] - heights[v["level"]]) for v in report["vertebrae"] if not v["truncated"]]
    assert len(errors) >= 6 and statistics.median(errors) < 1.0


def test_demo_outputs_reference_the_t2_and_hold_no_identifier(demo) -> None:
    import highdicom as hd
    import pydicom

    out = demo["out"]
    assert (out / "labels_seg.dcm").is_file() and (out / "qc.png").is_file()
    seg = hd.seg.segread(out / "labels_seg.dcm")
    series_uid = demo["report"]["provenance"]["series"]["t2"]["series_instance_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in demo["study"].rglob("*") if p.is_file()]
    t2_sops = {h.SOPInstanceUID for h in headers if h.SeriesInstanceUID == series_uid}
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == t2_sops
    for path in out.iterdir():
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert b"CANARY" not in data, path.name


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_generator_truth_is_reproduced(seed) -> None:
    case = generate_case(seed, options=CaseOptions(lesion_count=4))
    t1 = case.t1 if case.t1.same_grid(case.t2) else resample_to(case.t1, case.t2)
    report = analyze_images(case.labels, t1, case.t2)
    truth = dict(case.truth)
    truth["lesions"] = [t for t in truth["lesions"] if t["volume_mm3"] > 0]  # drawn but empty: not in the labels
    truth_instances = np.asarray(case.instances.array)
    by_label = {v["instance_label"]: v for v in truth["vertebrae"]}
    # vertebrae: heights along their own axes, where the field of view does not cut the body
    errors = []
    for v in report.vertebrae:
        tv = by_label[_majority(truth_instances[report.instances == v.label])]
        if not v.truncated:
            errors.append(abs(v.height_mm - tv["height_mm"]))
            angle = np.degrees(np.arccos(np.clip(np.dot(v.axis_ras, tv["axis_ras"]), -1, 1)))
            assert angle < 6.0, (tv["level"], angle)
    assert statistics.median(errors) < 1.0, errors
    # lesions, matched by the truth vertebra under them and the endplate
    found = {}
    for les in report.lesions:
        tv = by_label[_majority(truth_instances[report.lesion_map == les.id])]
        found[(tv["level"], les.endplate)] = les
    assert len(found) == len(truth["lesions"]) == len(report.lesions)
    volume_errors, hf_errors, correct = [], [], 0
    for t in truth["lesions"]:
        les = found[(t["level"], t["endplate"])]
        correct += les.type == t["type"]
        volume_errors.append(abs(les.volume_mm3 / t["volume_mm3"] - 1))
        hf_errors.append(abs(les.height_fraction - t["height_fraction"]))
    assert correct >= len(truth["lesions"]) - 1
    assert statistics.median(volume_errors) < 0.10, volume_errors
    assert statistics.median(hf_errors) < 0.03, hf_errors
    assert report.eligibility.eligible is any(t["trial_eligible"] for t in truth["lesions"])
