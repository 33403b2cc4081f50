"""The command line as a user runs it: `modicseg inspect` and `modicseg convert`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .dicom_factory import CANARY_BIRTH, CANARY_ID, CANARY_NAME, write_multi_series_study


def modicseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modicseg", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_study")
    write_multi_series_study(root)
    return root


def _no_identifiers(text: str) -> None:
    for canary in (CANARY_NAME, CANARY_ID, CANARY_BIRTH, "CANARY"):
        assert canary not in text


def test_inspect_table_shows_stacks_roles_and_reasons(study) -> None:
    result = modicseg("inspect", str(study))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    _no_identifiers(out + result.stderr)
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isdigit()}
    assert "T1" in lines["3"].split() and "sagittal" in lines["3"]
    assert lines["4"].split()[-2] == "T2" or " T2 " in lines["4"]
    assert "refused" in lines["1.1"]
    assert "1 non-DICOM files" in out
    assert "weighting reasons" in out


def test_inspect_json_lists_stacks_with_roles(study) -> None:
    result = modicseg("inspect", str(study), "--json")
    assert result.returncode == 0, result.stderr
    stacks = json.loads(result.stdout)
    roles = {s["series_number"]: s["role"] for s in stacks if s["role"]}
    assert roles == {3: "t1", 4: "t2"}
    for stack in stacks:
        assert {"series_number", "series_instance_uid", "plane", "weighting", "role"} <= set(stack)
    _no_identifiers(result.stdout)


def test_convert_writes_t1_t2_and_sidecars(study, tmp_path) -> None:
    out = tmp_path / "out"
    result = modicseg("convert", str(study), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["study_T1w.json", "study_T1w.nii.gz",
                                                     "study_T2w.json", "study_T2w.nii.gz"]
    _no_identifiers(result.stdout + result.stderr)


def test_convert_all_reports_refused_stacks(study, tmp_path) -> None:
    out = tmp_path / "all"
    result = modicseg("convert", str(study), "-o", str(out), "--all")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert names == ["003_T1_TSE_SAG.nii.gz", "004_t2_tse_sag.nii.gz", "005_t2_tse_tra.nii.gz"]
    assert result.stderr.count("refused series 1.") == 3


@pytest.mark.parametrize("case", ["empty", "missing", "text_only", "only_axial"])
def test_bad_input_exits_non_zero_without_output(case, tmp_path) -> None:
    from modicseg.io.dicom_write import SeriesSpec, write_mr_series

    from .dicom_factory import axial_affine, phantom_image

    study = tmp_path / "in"
    if case != "missing":
        study.mkdir()
    if case == "text_only":
        (study / "a.txt").write_text("x")
    if case == "only_axial":
        write_mr_series(phantom_image((30, 30, 8), axial_affine((30, 30, 8)), "t2"), study,
                        SeriesSpec(series_number=2, description="t2_tra", repetition_time=4000.0, echo_time=100.0))
    out = tmp_path / "out"
    result = modicseg("convert", str(study), "-o", str(out))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ")
    assert str(study) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_an_mgz_given_as_t1_and_t2_is_one_error_line_and_no_output(tmp_path) -> None:
    import nibabel as nib
    import numpy as np

    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    for name in ("t1.mgz", "t2.mgz"):  # real FreeSurfer MGZ files, as nibabel writes them
        nib.save(nib.MGHImage(np.random.default_rng(0).random((40, 40, 9), dtype=np.float32), affine),
                 str(tmp_path / name))
    out = tmp_path / "out"
    result = modicseg("analyze", "--t1", str(tmp_path / "t1.mgz"), "--t2", str(tmp_path / "t2.mgz"), "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 't1.mgz'}: not a NIfTI file: it is a FreeSurfer MGH/MGZ image (nibabel reads it as "
        "MGHImage); convert the image to a .nii or .nii.gz file (e.g. with nibabel or FreeSurfer's mri_convert)"]
    assert result.stdout == ""
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_inspect_accepts_nifti_inputs(study, tmp_path) -> None:
    out = tmp_path / "nii"
    assert modicseg("convert", str(study), "-o", str(out)).returncode == 0
    for args in ([str(out)], ["--t1", str(out / "study_T1w.nii.gz"), "--t2", str(out / "study_T2w.nii.gz")]):
        result = modicseg("inspect", *args, "--json")
        assert result.returncode == 0, result.stderr
        rows = {row["role"]: row for row in json.loads(result.stdout)}
        assert rows["t2"]["plane"] == "sagittal" and rows["t2"]["shape"] == [64, 80, 11]
        assert rows["t1"]["series_number"] == 3
