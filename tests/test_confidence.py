"""Lesion confidence (issue 18, items 1-2): the probability that a lesion is real, the verdict that
respects it, the uncertainty map, and the calibrator that ships with the model.

Phantoms with exact lesions get network evidence maps whose values are known, so every confidence
is checked against a number computed by hand; the shipped model runs once on a real held-out volume.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from modicseg.analysis.confidence import (
    CALIBRATION_FILE,
    FEATURES,
    Calibrator,
    fit_calibrator,
    unreported_lesion_evidence,
)
from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.pipeline import analyze_images
from modicseg.core.evidence import NetworkEvidence
from modicseg.core.image import ScalarImage
from modicseg.io.errors import InputError
from modicseg.report.models import ReportDocument
from modicseg.report.writers import write_report
from tests.test_analysis_phantoms import PhantomLesion, make_phantom


def _evidence(labels, probability: np.ndarray, uncertainty: float = 0.1) -> NetworkEvidence:
    affine = labels.affine.copy()
    return NetworkEvidence(ScalarImage(probability.astype(np.float32), affine),
                           ScalarImage(np.zeros(probability.shape, np.float32), affine),
                           ScalarImage(np.full(probability.shape, uncertainty, np.float32), affine))


@pytest.fixture(scope="module")
def phantom():
    # L2 superior: a type-1 change of 8 mm (31 % of the 26 mm body); L4 inferior: type 1 of 6 mm
    return make_phantom([PhantomLesion("L2", "superior", 8.0), PhantomLesion("L4", "inferior", 6.0)], seed=5)


def _probabilities(phantom, report_without, values: dict[str, float]) -> np.ndarray:
    """A lesion-probability map: ``values[level]`` on each lesion's voxels, 0.02 elsewhere."""
    probability = np.full(phantom.labels.shape, 0.02, dtype=np.float32)
    for lesion in report_without.lesions:
        probability[report_without.lesion_map == lesion.id] = values[lesion.level]
    return probability


@pytest.fixture(scope="module")
def plain(phantom):
    return analyze_images(phantom.labels, phantom.t1, phantom.t2)


def test_without_the_network_no_lesion_has_a_confidence(plain):
    assert [les.level for les in plain.lesions] == ["L2", "L4"]
    assert all(les.confidence is None for les in plain.lesions)
    assert plain.eligibility.verdict_confidence is None and plain.eligibility.status == "eligible"


def test_uncalibrated_confidence_is_the_mean_lesion_probability_and_the_verdict_names_it(phantom, plain):
    evidence = _evidence(phantom.labels, _probabilities(phantom, plain, {"L2": 0.9, "L4": 0.7}))
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2, evidence=evidence)
    by_level = {les.level: les for les in report.lesions}
    assert by_level["L2"].confidence == pytest.approx(0.9, abs=1e-6)
    assert by_level["L4"].confidence == pytest.approx(0.7, abs=1e-6)
    assert by_level["L2"].confidence_inputs["probability"] == pytest.approx(0.9, abs=1e-6)
    assert by_level["L2"].confidence_inputs["log10_volume_mm3"] == pytest.approx(
        math.log10(by_level["L2"].volume_mm3))
    assert any("not calibrated" in w for w in report.warnings)
    assert report.eligibility.status == "eligible"
    # P(at least one of the two qualifying lesions is real)
    assert report.eligibility.verdict_confidence == pytest.approx(1 - 0.1 * 0.3, abs=1e-6)
    assert any("confidence 0.90" in r for r in report.eligibility.reasons)


def test_a_doubtful_only_qualifying_lesion_makes_the_verdict_undecided(phantom, plain):
    evidence = _evidence(phantom.labels, _probabilities(phantom, plain, {"L2": 0.42, "L4": 0.30}))
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2, evidence=evidence)
    eligibility = report.eligibility
    assert eligibility.eligible is None and eligibility.status == "undecided"
    assert eligibility.reasons[0].startswith("undecided: review lesion 1 (confidence 0.42), lesion 2 (confidence 0.30)")
    assert eligibility.low_confidence_lesions == [1, 2]
    assert eligibility.qualifying_lesions == []
    assert eligibility.verdict_confidence == 0.0  # no verdict made: first on a doubt-ordered worklist
    # a stricter or laxer threshold moves the decision
    lax = AnalysisConfig()
    lax.eligibility.min_confidence = 0.4
    relaxed = analyze_images(phantom.labels, phantom.t1, phantom.t2, config=lax, evidence=evidence)
    assert relaxed.eligibility.status == "eligible" and relaxed.eligibility.qualifying_lesions == [1, 2]


def test_written_report_carries_confidence_uncertainty_map_and_csv(phantom, plain, tmp_path):
    evidence = _evidence(phantom.labels, _probabilities(phantom, plain, {"L2": 0.8, "L4": 0.45}), uncertainty=0.25)
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2, evidence=evidence)
    write_report(report, tmp_path / "out", dicom_seg=False)
    document = ReportDocument.load(tmp_path / "out" / "report.json")
    assert [round(les.confidence, 2) for les in document.lesions] == [0.8, 0.45]
    assert document.eligibility.verdict_confidence == pytest.approx(1 - 0.2 * 0.55, abs=1e-4)
    assert document.outputs.uncertainty == "uncertainty.nii.gz"
    image = nib.load(tmp_path / "out" / "uncertainty.nii.gz")
    assert np.allclose(image.affine, phantom.labels.affine)
    assert np.allclose(np.asarray(image.dataobj), 0.25, atol=1 / 255)  # stored in 8 bits
    with open(tmp_path / "out" / "lesions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["confidence"]) for r in rows] == [0.8, 0.45]
    # labels given: no confidence, no uncertainty map
    write_report(plain, tmp_path / "plain", dicom_seg=False)
    assert not (tmp_path / "plain" / "uncertainty.nii.gz").exists()
    assert ReportDocument.load(tmp_path / "plain" / "report.json").outputs.uncertainty is None


def test_evidence_on_another_grid_is_refused(phantom):
    shifted = phantom.labels.affine.copy()
    shifted[:3, 3] += 5.0
    shape = phantom.labels.shape
    evidence = NetworkEvidence(*(ScalarImage(np.zeros(shape, np.float32), shifted) for _ in range(3)))
    with pytest.raises(InputError, match="evidence maps are not on the label map's grid"):
        analyze_images(phantom.labels, phantom.t1, phantom.t2, evidence=evidence)


def test_calibrator_orders_lesions_by_their_inputs_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    real = rng.random(n) < 0.5
    x = rng.normal(size=(n, len(FEATURES)))
    x[:, 0] += np.where(real, 1.5, -1.5)  # only "probability" tells real from false
    calibrator = fit_calibrator(x, real, l2=1.0)
    scores = np.array([calibrator.probability(dict(zip(FEATURES, row, strict=True))) for row in x])
    assert scores[real].mean() > 0.75 and scores[~real].mean() < 0.25
    # calibrated on its own data: the mean confidence matches the share of real lesions
    assert scores.mean() == pytest.approx(real.mean(), abs=0.02)
    path = tmp_path / CALIBRATION_FILE
    path.write_text(json.dumps(calibrator.to_dict()))
    loaded = Calibrator.for_checkpoint(tmp_path)
    assert loaded is not None
    row = dict(zip(FEATURES, x[0], strict=True))
    assert loaded.probability(row) == pytest.approx(calibrator.probability(row))
    path.write_text(json.dumps({"features": ["probability"], "mean": [0.0], "scale": [0.0], "coef": [1.0],
                                "intercept": 0.0}))
    with pytest.raises(InputError, match=CALIBRATION_FILE):
        Calibrator.for_checkpoint(tmp_path)


def test_unreported_evidence_is_the_strongest_unreported_region_inside_a_body():
    shape = (20, 20, 20)
    probability = np.zeros(shape, np.float32)
    probability[2:6, 2:6, 2:6] = 0.6  # 64 voxels, unreported, inside the body
    probability[10:14, 10:14, 10:14] = 0.9  # reported
    probability[15:19, 2:6, 2:6] = 0.95  # outside every body
    bodies = np.zeros(shape, bool)
    bodies[:14, :, :] = True
    reported = np.zeros(shape, bool)
    reported[10:14, 10:14, 10:14] = True
    evidence = NetworkEvidence(*(ScalarImage(a, np.eye(4)) for a in (probability, probability, probability)))
    assert unreported_lesion_evidence(evidence, reported, bodies, 1.0, 20.0) == pytest.approx(0.6)
    assert unreported_lesion_evidence(evidence, reported, bodies, 1.0, 100.0) == 0.0  # too small to count


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "modicseg-unet-v1"


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_shipped_model_confidence_leaves_the_labels_alone_and_refuses_a_stale_calibrator(tmp_path):
    """The mirrored pass adds confidence and the uncertainty map but never changes the labels; the shipped
    calibrator belongs to the shipped weights; a calibrator fitted for other weights is not used."""
    from modicseg.io.study import StudyRequest
    from modicseg.pipeline import analyze
    from modicseg.synth.demo import make_demo_study

    study = make_demo_study(tmp_path / "study", seed=0)
    plain = analyze(StudyRequest(path=study), model=SHIPPED, device="cpu", confidence=False)
    sure = analyze(StudyRequest(path=study), model=SHIPPED, device="cpu")
    assert np.array_equal(plain.labels.array, sure.labels.array)
    assert [les.level for les in sure.lesions] == [les.level for les in plain.lesions] and sure.lesions
    assert all(les.confidence is None for les in plain.lesions) and plain.uncertainty is None
    assert all(0.0 <= les.confidence <= 1.0 for les in sure.lesions)
    assert sure.uncertainty is not None and sure.uncertainty.same_grid(sure.labels)
    info = sure.provenance["segmentation"]["confidence"]
    assert info["passes"] == 2
    assert info["calibrated"] is (SHIPPED / CALIBRATION_FILE).is_file()
    # the same weights with a calibrator fitted for another model.pt: not used, and the report says so
    copy = tmp_path / "model"
    copy.mkdir()
    for name in ("model.pt", "config.json", "metadata.json", "model.onnx", "model.onnx.json"):
        if (SHIPPED / name).is_file():
            shutil.copy(SHIPPED / name, copy / name)
    stale = Calibrator(("probability",), np.zeros(1), np.ones(1), np.array([4.0]), -2.0,
                       {"checkpoint_sha256": "0" * 64})
    (copy / CALIBRATION_FILE).write_text(json.dumps(stale.to_dict()))
    other = analyze(StudyRequest(path=study), model=copy, device="cpu")
    assert other.provenance["segmentation"]["confidence"]["calibrated"] is False
    assert any("fitted for other weights" in w for w in other.warnings)
    assert [les.confidence for les in other.lesions] == pytest.approx(
        [les.confidence_inputs["probability"] for les in other.lesions])


def test_cross_fitting_on_one_input_leaves_each_subject_out_and_ranks_by_that_input():
    from modicseg.evaluation.confidence import LesionSample, cross_fitted

    rng = np.random.default_rng(1)
    samples = []
    for i in range(120):
        real = bool(i % 3)
        inputs = {f: float(rng.normal()) for f in FEATURES}
        inputs["probability"] = float(np.clip(rng.normal(0.8 if real else 0.45, 0.12), 0, 1))
        samples.append(LesionSample(f"s{i % 6}", f"s{i % 6}", "0", i, inputs, real, 200.0))
    oof, folds = cross_fitted(samples, features=("probability",))
    assert set(folds) == {f"s{k}" for k in range(6)}
    assert all(c.features == ("probability",) for c in folds.values())
    p = np.array([s.inputs["probability"] for s in samples])
    y = np.array([s.real for s in samples])
    # one increasing input: each fold's confidence is monotone in it (the noise inputs are not used)
    for subject, calibrator in folds.items():
        mine = np.array([s.subject == subject for s in samples])
        order = np.argsort(p[mine])
        assert np.all(np.diff(oof[mine][order]) >= -1e-12) and calibrator.coef[0] > 0
    assert oof[y].mean() > oof[~y].mean() + 0.3
