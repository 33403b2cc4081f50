"""Outcomes by arm (statistics, unblinding last) and a real end-to-end batch on phantom pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from scipy import stats

from modicseg.batch.manifest import StudyEntry, write_manifest
from modicseg.batch.outcomes import distribution_tests, proportion_test, read_arms
from modicseg.io.errors import InputError
from tests.test_longitudinal_pairs import (
    BASELINE_PLUGS,
    FOLLOWUP_PLUGS,
    MOTION,
    Motion,
    Plug,
    make_study,
    write_dicom_study,
    write_nifti_study,
)

ARMS = {"P1": "ArmAlphaXQ", "P2": "ArmBetaXQ", "P3": "ArmAlphaXQ", "P4": "ArmBetaXQ", "P5": "ArmAlphaXQ"}


def test_proportion_and_distribution_tests() -> None:
    small = proportion_test([4, 1], [6, 7])
    assert small["test"].startswith("Fisher") and small["p_value"] == pytest.approx(
        stats.fisher_exact([[4, 2], [1, 6]])[1])
    large = proportion_test([40, 20], [100, 100])
    assert large["test"].startswith("chi-square")
    assert large["p_value"] == pytest.approx(stats.chi2_contingency([[40, 60], [20, 80]])[1])
    assert proportion_test([0, 0], [5, 5])["p_value"] is None
    a, b = [-300.0, -120.0, -50.0, 10.0], [20.0, 80.0, 150.0, 400.0, 35.0]
    result = distribution_tests([a, b])
    assert result["wilcoxon_rank_sum"]["p_value"] == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
    assert result["welch_t_test"]["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert "kruskal_wallis" in distribution_tests([a, b, [1.0, 2.0]])


def test_arms_file_is_checked(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("Subject,Group\nP1,A\nP2,B\n")
    assert read_arms(tmp_path / "a.csv") == {"P1": "A", "P2": "B"}
    (tmp_path / "b.csv").write_text("subject,arm\nP1,A\nP1,B\n")
    with pytest.raises(InputError, match="two arms"):
        read_arms(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("subject,colour\nP1,A\n")
    with pytest.raises(InputError, match="subject and arm"):
        read_arms(tmp_path / "c.csv")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Manifest of five subjects: two good pairs, a patient mismatch, no follow-up, an unreadable study."""
    root = tmp_path_factory.mktemp("cohort")
    grows = [Plug("L4", "inferior", 6.0, ("1",))], [Plug("L4", "inferior", 10.0, ("1",))]
    studies = {
        "P1": (make_study(BASELINE_PLUGS), make_study(FOLLOWUP_PLUGS, MOTION, seed=1)),
        "P2": (make_study(grows[0], seed=2), make_study(grows[1], Motion(-3.0, (0.0, -5.0, 6.0)), seed=3)),
    }
    entries = []
    for subject, (base, follow) in studies.items():
        for tp, study in (("baseline", base), ("m12", follow)):
            folder, labels = write_nifti_study(study, root / subject / tp)
            entries.append(StudyEntry(subject, tp, folder, labels))
    base, follow = studies["P2"]
    for tp, study, patient in (("baseline", base, "CANARY-PAT-7"), ("m12", follow, "CANARY-PAT-8")):
        folder = write_dicom_study(study, root / "P3" / tp, patient)
        _, labels = write_nifti_study(study, root / "P3" / f"{tp}_nifti")
        entries.append(StudyEntry("P3", tp, folder, labels))
    entries.append(StudyEntry("P4", "baseline", root / "P1" / "baseline", root / "P1" / "baseline_labels.nii.gz"))
    (root / "P5" / "baseline").mkdir(parents=True)
    (root / "P5" / "baseline" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    entries.append(StudyEntry("P5", "baseline", root / "P5" / "baseline"))
    entries.append(StudyEntry("P5", "m12", root / "P1" / "m12", root / "P1" / "m12_labels.nii.gz"))
    write_manifest(entries, root / "manifest.csv")
    (root / "arms.csv").write_text("subject,arm\n" + "".join(f"{s},{a}\n" for s, a in ARMS.items()))
    return root / "manifest.csv", root / "arms.csv"


def test_real_batch_then_outcomes_by_arm(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    from modicseg.cli import batch_cmd, outcomes_cmd

    manifest, arms = cohort
    out = tmp_path / "out"
    args = argparse.Namespace(manifest=manifest, output=out, workers=0, scheduler=None, model=None, config=None,
                              content_hash=False, no_refine=False, no_figures=False, no_seg=False, no_confidence=False,
                              no_progress=True)
    assert batch_cmd.run(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["studies"] == {"done": 8, "failed": 1}
    assert summary["comparisons"] == {"done": 2, "failed": 1, "not run": 1}
    kinds = {p["subject"]: p["kind"] for p in summary["problems"] if p["kind"] != "not compared"}
    assert kinds == {"P3": "subject mismatch", "P4": "missing follow-up", "P5": "study failed"}

    p1 = json.loads((out / "compare" / "P1" / "baseline_to_m12" / "change.json").read_text())
    assert {(r["level"], r["endplate"]): r["transition"] for r in p1["lesions"]} == {
        ("L3", "inferior"): "1 -> none", ("L4", "inferior"): "1 -> 2", ("L5", "superior"): "1 -> 1",
        ("L5", "inferior"): "2 -> 2", ("S1", "superior"): "none -> 1"}
    counts = (out / "cohort" / "transition_counts.csv").read_text().splitlines()
    assert counts[0] == "baseline_type,1,2,none,total" and counts[1] == "1,2,1,1,4"

    # blinding: no earlier output holds an arm label; privacy: no patient identifier anywhere
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"ArmAlphaXQ" not in data and b"ArmBetaXQ" not in data, path
            assert b"CANARY" not in data, path

    assert outcomes_cmd.run(argparse.Namespace(outdir=out, arms=arms, output=None)) == 0
    result = json.loads((out / "outcomes" / "outcomes.json").read_text())
    alpha, beta = result["by_arm"]["ArmAlphaXQ"], result["by_arm"]["ArmBetaXQ"]
    assert (alpha["type1_lesions"], alpha["type1_lesions_to_type2"], alpha["type1_patients_with_conversion"]) == \
        (3, 1, 1)
    assert (beta["type1_lesions"], beta["type1_lesions_to_type2"], beta["type1_patients"]) == (1, 0, 1)
    assert beta["type1_volume_change_mm3"]["median"] > 0 > alpha["type1_volume_change_mm3"]["median"]
    assert result["bookkeeping"]["allocated_without_comparison"] == ["P3", "P4", "P5"]
    assert "ArmAlphaXQ" in (out / "outcomes" / "outcomes.md").read_text()
    assert (out / "outcomes" / "outcomes.html").read_text().startswith("<!doctype html>")
