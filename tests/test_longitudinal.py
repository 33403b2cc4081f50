"""compare: registration, lesion pairing, change classification, outputs, identity, reuse of analyses."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from modicseg.analysis.pipeline import analyze_images
from modicseg.longitudinal.classify import COLUMNS, turned_type2, type1_volume
from modicseg.longitudinal.pipeline import SubjectMismatchError, compare_timepoints
from modicseg.longitudinal.timepoint import from_report, load_timepoint
from modicseg.longitudinal.writers import write_change
from modicseg.report.models import ChangeDocument, Lesion, TypeFractions
from modicseg.report.writers import write_report
from tests.test_longitudinal_pairs import (
    BASELINE_PLUGS,
    EXPECTED,
    FOLLOWUP_PLUGS,
    MOTION,
    make_study,
    write_dicom_study,
    write_nifti_study,
)


@pytest.fixture(scope="module")
def pair():
    base = make_study(BASELINE_PLUGS)
    follow = make_study(FOLLOWUP_PLUGS, MOTION, seed=1)
    return base, follow


@pytest.fixture(scope="module")
def reports(pair):
    base, follow = pair
    return analyze_images(base.labels, base.t1, base.t2), analyze_images(follow.labels, follow.t1, follow.t2)


def _statuses(change) -> dict[tuple[str, str], str]:
    return {(r["level"], r["endplate"]): r["status"] for r in change.rows}


def test_compare_classifies_every_evolution_and_recovers_the_motion(reports, tmp_path: Path) -> None:
    change = compare_timepoints(from_report(reports[0]), from_report(reports[1]))
    assert _statuses(change) == EXPECTED
    rows = {(r["level"], r["endplate"]): r for r in change.rows}
    assert rows[("L4", "inferior")]["transition"] == "1 -> 2"
    assert rows[("L5", "superior")]["size_change"] == "grown"
    assert rows[("L5", "superior")]["volume_change_percent"] > 30
    assert rows[("L5", "superior")]["height_fraction_change"] > 0.1
    assert rows[("L3", "inferior")]["followup_type"] == "none"
    reg = change.registration.to_dict()
    assert reg["rotation_deg"] == pytest.approx(MOTION.angle_deg, abs=1.0)
    assert np.allclose(np.asarray(reg["affine_ras"])[:3, 3], MOTION.shift, atol=1.5)
    assert reg["body_dice"]["chosen"] > 0.9 > reg["body_dice"]["identity"]
    s = change.summary
    assert (s["baseline_type1_lesions"], s["type1_to_type2"], s["regressed"], s["new"]) == (3, 1, 1, 1)
    t1_change = s["type1_volume_followup_mm3"] - s["type1_volume_baseline_mm3"]
    assert s["type1_volume_change_mm3"] == pytest.approx(t1_change)

    write_change(change, tmp_path)
    data = json.loads((tmp_path / "change.json").read_text())
    assert data["schema_version"].startswith("modicseg-change/")
    import jsonschema

    from modicseg.report.schema import validate_change

    validate_change(data)  # (the writer validated it too: the suite sets MODICSEG_VALIDATE_OUTPUTS)
    assert ChangeDocument.load(tmp_path / "change.json").to_dict() == data  # the typed model reads it whole
    broken = json.loads(json.dumps(data))
    broken["lesions"][0]["status"] = "new" if broken["lesions"][0]["status"] != "new" else "same type"
    with pytest.raises(jsonschema.ValidationError):
        validate_change(broken)
    assert len(data["lesions"]) == 5 and data["identity"]["same_patient"] is None
    with open(tmp_path / "change.csv") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == COLUMNS and len(table) == 5
    assert (tmp_path / "qc.png").stat().st_size > 10_000


def test_levels_named_one_off_are_flagged(pair, reports) -> None:
    _, follow = pair
    misnamed = analyze_images(follow.labels, follow.t1, follow.t2, lowest_level="L5")  # every name off by one
    change = compare_timepoints(from_report(reports[0]), from_report(misnamed))
    # on a circular-arc phantom both pairings fit exactly: names win, the near-identity pairing is flagged
    assert any("shifted by one level" in w for w in change.warnings)
    assert not any("shifted by one level" in w for w in compare_timepoints(
        from_report(reports[0]), from_report(reports[1])).warnings)


def test_reused_analysis_folders_give_the_same_result(reports, tmp_path: Path) -> None:
    for name, report in zip(("b", "f"), reports, strict=True):
        write_report(report, tmp_path / name, qc=False, dicom_seg=False)
    reused = [load_timepoint(tmp_path / name) for name in ("b", "f")]
    assert all(np.array_equal(tp.lesion_map, r.lesion_map) for tp, r in zip(reused, reports, strict=True))
    change = compare_timepoints(*reused)  # no T2 in the folders: registration on body masks
    assert _statuses(change) == EXPECTED
    assert "mean squares" in change.registration.method or change.registration.method.startswith("landmarks")


def test_classification_rules() -> None:
    assert turned_type2({"baseline_type": "1", "followup_type": "2"})
    assert turned_type2({"baseline_type": "1/2", "followup_type": "2/1"})
    assert turned_type2({"baseline_type": "2/1", "followup_type": "2"})
    assert not turned_type2({"baseline_type": "2/1", "followup_type": "2/1"})
    assert not turned_type2({"baseline_type": "1", "followup_type": "1/2"})
    assert not turned_type2({"baseline_type": "2", "followup_type": "2"})
    lesion = Lesion.model_construct(volume_mm3=1000.0, unclassified_fraction=0.1,
                                    type_fractions=TypeFractions.model_validate({"1": 0.5, "2": 0.5, "3": 0.0}))
    assert type1_volume(lesion) == pytest.approx(450.0)
    assert type1_volume(None) == 0.0


def test_compare_command_on_dicom_studies(pair, tmp_path: Path) -> None:
    from modicseg.cli import compare_cmd

    base, follow = pair
    studies = {}
    for name, study, patient in (("bl", base, "CANARY-PAT-1"), ("fu", follow, "CANARY-PAT-1"),
                                 ("other", follow, "CANARY-PAT-2")):
        studies[name] = write_dicom_study(study, tmp_path / name, patient)
        write_nifti_study(study, tmp_path / f"{name}_nifti")  # writes tmp_path/<name>_nifti_labels.nii.gz

    def args(followup: str, out: Path) -> argparse.Namespace:
        return argparse.Namespace(
            baseline=studies["bl"], followup=studies[followup], output=out,
            baseline_labels=tmp_path / "bl_nifti_labels.nii.gz",
            followup_labels=tmp_path / f"{followup}_nifti_labels.nii.gz",
            baseline_study=None, followup_study=None, model=None, config=None, subject="P001",
            allow_different_patients=False, no_refine=False, no_qc=False)

    out = tmp_path / "out"
    assert compare_cmd.run(args("fu", out)) == 0
    data = json.loads((out / "change.json").read_text())
    assert data["identity"]["same_patient"] is True
    assert {(r["level"], r["endplate"]): r["status"] for r in data["lesions"]} == EXPECTED
    assert (out / "baseline" / "report.json").is_file() and (out / "followup" / "report.json").is_file()
    for path in out.rglob("*"):
        if path.is_file():
            assert b"CANARY" not in path.read_bytes(), path

    with pytest.raises(SubjectMismatchError):
        compare_cmd.run(args("other", tmp_path / "mismatch"))
    assert not (tmp_path / "mismatch").exists()
