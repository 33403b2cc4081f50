"""Reading packages: layout, random codes, key outside, blinding, per-reader orders, geometry."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from modicseg.io.errors import InputError
from modicseg.review.key import read_key
from modicseg.review.pack import CODE_ALPHABET, BlindingError, check_blinded, pack
from modicseg.review.package import Package
from modicseg.review.session import load_case
from modicseg.review.volumes import DisplayGrid, write_blinded_nifti
from tests.test_review_helpers import make_analysis, make_cohort

IDENTITY = ("baseline", "1year", "sub-0", "ses-")  # searched in raw bytes too (digits-only IDs: see check_blinded)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("cohort") / "analyses")


@pytest.fixture(scope="module")
def packed(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed")
    return pack([cohort], out / "package", seed=7)


def _all_text(folder: Path) -> str:
    """Every file name and every file's bytes (gzip streams decompressed), as one string."""
    parts = []
    for path in folder.rglob("*"):
        parts.append(path.relative_to(folder).as_posix())
        if path.is_file():
            data = path.read_bytes()
            parts.append(data.decode("latin-1"))
            if data[:2] == b"\x1f\x8b":
                parts.append(gzip.decompress(data).decode("latin-1"))
    return "\n".join(parts)


def test_package_layout_codes_and_key(packed, cohort):
    package = Package.open(packed.package)
    assert len(package.codes) == 4 and package.codes == sorted(package.codes)
    for code in package.codes:
        assert len(code) == 6 and set(code) <= set(CODE_ALPHABET)
        files = {p.name for p in (packed.package / "cases" / code).iterdir()}
        assert files == {"case.json", "confidence.json", "t1.nii.gz", "t2.nii.gz", "anatomy.nii.gz",
                         "vertebrae.nii.gz", "lesions.nii.gz"}
    assert packed.key == packed.package.with_name("package-key.json")
    assert not packed.key.resolve().is_relative_to(packed.package.resolve())
    key = read_key(packed.key, package.package_id)
    assert {(e.subject, e.timepoint) for e in key.values()} == {
        ("001", "baseline"), ("001", "1year"), ("002", "baseline"), ("002", "1year")}
    assert {Path(e.source) for e in key.values()} == {p.parent.resolve() for p in cohort.rglob("report.json")}
    with pytest.raises(InputError, match="another reading package"):
        read_key(packed.key, "0" * 32)


def test_package_is_blinded(packed):
    text = _all_text(packed.package)
    for token in IDENTITY:
        assert token not in text, token
    assert check_blinded(packed.package, ["001", "002", "baseline", "1year"]) == []
    for path in packed.package.rglob("*.nii.gz"):
        raw = path.read_bytes()
        assert raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"  # no file name, no time in the gzip header
        header = nib.load(path).header
        for field in ("descrip", "aux_file", "intent_name", "db_name"):
            assert bytes(header[field]).strip(b"\0") == b"", (path, field)
        assert len(header.extensions) == 0


def test_case_json_holds_only_whitelisted_model_output(packed):
    for code in Package.open(packed.package).codes:
        info = json.loads((packed.package / "cases" / code / "case.json").read_text())
        assert set(info) == {"format", "schema_version", "code", "shape", "voxel_size_mm", "vertebrae", "model",
                             "config", "files"}
        assert "provenance" not in json.dumps(info)
        assert [v["level"] for v in info["vertebrae"]] == ["L3", "L4", "L5", "S1"]


def test_model_rows_reproduce_the_report(packed):
    package = Package.open(packed.package)
    key = read_key(packed.key)
    for code in package.codes:
        report = json.loads((Path(key[code].source) / "report.json").read_text())
        rows = load_case(package.case(code)).model_rows
        assert [(r.level, r.endplate, r.type) for r in rows] == [
            (les["level"], les["endplate"], les["type"]) for les in report["lesions"]]
        for row, les in zip(rows, report["lesions"], strict=True):
            assert row.volume_mm3 == pytest.approx(les["volume_mm3"], rel=1e-3)
            assert row.height_fraction == pytest.approx(les["height_fraction"], abs=1e-3)


def test_key_inside_package_is_refused_and_nothing_written(cohort, tmp_path):
    with pytest.raises(InputError, match="outside the reading package"):
        pack([cohort], tmp_path / "pkg", key=tmp_path / "pkg" / "key.json")
    assert not (tmp_path / "pkg").exists()
    (tmp_path / "existing-key.json").write_text("{}")
    with pytest.raises(InputError, match="never overwritten"):
        pack([cohort], tmp_path / "pkg2", key=tmp_path / "existing-key.json")


def test_reading_orders_are_per_reader_and_stable(packed):
    package = Package.open(packed.package)
    orders = {name: package.worklist(name) for name in ("Alice", "Bob", "Carol", "Dan", "Eve")}
    for order in orders.values():
        assert sorted(order) == package.codes
    assert len({tuple(o) for o in orders.values()}) > 1
    assert package.worklist("  alice ") == orders["Alice"]
    with pytest.raises(InputError):
        package.worklist("   ")


def test_identifier_in_report_aborts_pack(tmp_path):
    folder = make_analysis(tmp_path / "in" / "sub-4711" / "ses-followup")
    report = json.loads((folder / "report.json").read_text())
    report["eligibility"]["reasons"] = ["reader note: patient 4711 seen at followup"]
    (folder / "report.json").write_text(json.dumps(report))
    with pytest.raises(BlindingError, match="4711"):
        pack([tmp_path / "in"], tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "pkg-key.json").exists()


def test_check_blinded_finds_header_text(tmp_path):
    from modicseg.core.image import LabelImage

    image = LabelImage(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    write_blinded_nifti(image, tmp_path / "ok.nii.gz")
    assert check_blinded(tmp_path, ["PATIENT-0042"]) == []
    nii = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    nii.header["descrip"] = b"PATIENT-0042 2024-01-01"
    nib.save(nii, tmp_path / "bad.nii.gz")
    with open(tmp_path / "named.nii.gz", "wb") as raw, gzip.GzipFile("PATIENT-0042.nii", "wb", fileobj=raw,
                                                                         mtime=1700000000) as fh:
        fh.write(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).to_bytes())
    problems = check_blinded(tmp_path, ["PATIENT-0042"])
    assert any(p.startswith("bad.nii.gz") and "PATIENT-0042" in p for p in problems)
    assert any(p.startswith("named.nii.gz") and "PATIENT-0042" in p for p in problems)
    assert any(p.startswith("named.nii.gz") and "gzip header carries a time" in p for p in problems)
    assert not any(p.startswith("ok.nii.gz") for p in problems)


@pytest.mark.parametrize("columns", [
    [[0, -0.8, 0], [0, 0, -0.8], [4.0, 0, 0]],  # scanner sagittal: i posterior, j inferior, k right
    [[-0.7, 0, 0], [0, -0.7, 0], [0, 0, 3.0]],  # axial
    [[0, 0.6, 0.05], [0.1, 0, -0.6], [-3.5, 0.2, 0]],  # oblique, flipped
])
def test_display_grid_is_exact_and_scaled(columns):
    affine = np.eye(4)
    affine[:3, :3] = np.array(columns).T
    shape = (5, 6, 7)
    grid = DisplayGrid(shape, affine)
    array = np.arange(np.prod(shape)).reshape(shape)
    shown = grid.to_display(array)
    assert np.array_equal(grid.from_display(shown), array)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert sorted(grid.scale) == pytest.approx(sorted(spacing))
    ijk = np.array([[1, 2, 3], [4, 0, 6]])
    index = grid.index_to_display(ijk).astype(int)
    assert [shown[tuple(i)] for i in index] == [array[tuple(i)] for i in ijk]
    # slider toward the patient's right, rows toward inferior, columns toward posterior
    world = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) @ affine[:3, :3].T
    assert (np.diff(grid.to_display(world[..., 0]), axis=0) > 0).all()
    assert (np.diff(grid.to_display(world[..., 2]), axis=1) < 0).all()
    assert (np.diff(grid.to_display(world[..., 1]), axis=2) < 0).all()


def test_cli_pack(cohort, tmp_path, capsys):
    from modicseg.cli import review_cmd

    parser = argparse.ArgumentParser()
    review_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["review", "pack", str(cohort), "-o", str(tmp_path / "p"), "--key",
                              str(tmp_path / "secret" / "k.json"), "--seed", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "4 cases" in out and str(tmp_path / "secret" / "k.json") in out
    assert Package.open(tmp_path / "p").codes == sorted(read_key(tmp_path / "secret" / "k.json"))


def test_sources_from_folders_and_manifest(cohort, tmp_path):
    from modicseg.review.sources import find_sources

    (single,) = find_sources([cohort / "sub-001" / "ses-baseline"])
    assert (single.subject, single.timepoint) == ("001", "baseline")
    assert single.t1.name == "t1.nii.gz" and single.t2.name == "t2.nii.gz"
    manifest = tmp_path / "m.csv"
    manifest.write_text("analysis,subject,timepoint,arm,t1,t2\n"
                        f"{cohort / 'sub-001' / 'ses-baseline'},P-17,week0,placebo,"
                        f"{cohort / 'sub-001' / 'ses-baseline' / 't1.nii.gz'},\n")
    (source,) = find_sources([manifest])
    assert (source.subject, source.timepoint, source.arm) == ("P-17", "week0", "placebo")
    assert "placebo" in source.identifiers() and "P-17" in source.identifiers()
    with pytest.raises(InputError, match="appears twice"):
        find_sources([manifest, manifest])
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no analysis folder"):
        find_sources([tmp_path / "nothing"])
