"""DICOM studies: scanning, splitting, classification, choosing T1/T2, building volumes."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from modicseg.core.convert import load_nifti
from modicseg.core.resample import resample_to
from modicseg.io.dicom_series import load_series, scan_study
from modicseg.io.dicom_volume import IrregularSpacingWarning
from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from modicseg.io.errors import GeometryError, InputError, NotAVolumeError, SelectionError
from modicseg.io.study import RegistrationWarning, StudyRequest, open_study, t1_on_t2_grid

from .dicom_factory import (
    CANARY_BIRTH,
    CANARY_ID,
    CANARY_NAME,
    T1_SERIES,
    canary_study,
    phantom_image,
    sagittal_affine,
    write_multi_series_study,
)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("study")
    info = write_multi_series_study(root)
    return root, info


def test_scan_finds_every_stack_and_counts_skipped(study_dir) -> None:
    root, _ = study_dir
    scan = scan_study(root)
    assert scan.folder.skipped["non-DICOM files"] == 1
    by_name = {s.name: s for s in scan.stacks}
    # the localizer series is split into its three orientations
    assert {"1.1", "1.2", "1.3"} <= set(by_name)
    assert {by_name[n].plane for n in ("1.1", "1.2", "1.3")} == {"sagittal", "axial", "coronal"}
    assert all("not a 3-D stack" in by_name[n].refusal for n in ("1.1", "1.2", "1.3"))
    assert by_name["3"].plane == "sagittal" and by_name["3"].weighting == "T1"
    assert by_name["4"].plane == "sagittal" and by_name["4"].weighting == "T2"
    assert by_name["5"].plane == "axial" and by_name["5"].weighting == "T2"
    assert "TR 550 ms" in by_name["3"].weighting_reason


def test_open_study_chooses_sagittal_t1_and_t2_with_exact_geometry(study_dir) -> None:
    root, info = study_dir
    study = open_study(StudyRequest(path=root))
    assert study.t1.provenance.series_number == 3
    assert study.t2.provenance.series_number == 4
    # geometry: affine equal to the one written, spacing from positions (4.0) not SliceThickness (3.5)
    np.testing.assert_allclose(study.t2.affine, info["t2_affine"], atol=1e-4)
    assert study.t2.spacing[2] == pytest.approx(4.0, abs=1e-4)
    # values: rescale (slope 2, intercept -100) applied, equal to the phantom
    np.testing.assert_allclose(study.t1.array, info["t1"].array, atol=1.0)
    np.testing.assert_array_equal(study.t2.array, info["t2"].array)


def test_override_by_series_number_and_uid(study_dir) -> None:
    root, _ = study_dir
    scan = scan_study(root)
    axial_uid = next(s.series_instance_uid for s in scan.stacks if s.series_number == 5)
    with pytest.warns(UserWarning, match="axial"):
        study = open_study(StudyRequest(path=root, t2_series=axial_uid))
    assert study.t2.provenance.series_number == 5
    with pytest.raises(SelectionError, match="no series '42'"):
        open_study(StudyRequest(path=root, t1_series="42"))


def test_files_in_any_order_with_any_names(tmp_path, study_dir) -> None:
    root, info = study_dir
    flat = tmp_path / "flat"
    flat.mkdir()
    for index, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        shutil.copy(path, flat / f"{(index * 7919) % 1000:04d}{'.dcm' if index % 2 else ''}")
    study = open_study(StudyRequest(path=flat))
    np.testing.assert_allclose(study.t2.affine, info["t2_affine"], atol=1e-4)


def _write_t2(tmp_path: Path, shape=(32, 40, 9), step=4.0, **series) -> tuple[Path, list[Path]]:
    folder = tmp_path / "series"
    affine = sagittal_affine(shape, step=step)
    spec = SeriesSpec(series_number=7, description="t2_tse_sag", repetition_time=3000.0, echo_time=90.0,
                      file_names="instance", **series)
    return folder, write_mr_series(phantom_image(shape, affine, "t2"), folder, spec, canary_study())


def test_order_comes_from_positions_not_instance_numbers(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    reference = load_series(folder)
    rng = np.random.default_rng(0)
    numbers = rng.permutation(len(paths)) + 1
    for path, number in zip(paths, numbers, strict=True):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(number)
        ds.save_as(path)
    shuffled = load_series(folder)
    np.testing.assert_array_equal(shuffled.array, reference.array)
    np.testing.assert_allclose(shuffled.affine, reference.affine)


def test_localizer_slice_inside_the_series_does_not_change_spacing(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    expected = load_series(folder)
    # a localizer image carrying the same SeriesInstanceUID but axial orientation
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    loc_affine = np.array([[-2.0, 0, 0, 60], [0, -2.0, 0, 60], [0, 0, 5.0, 10], [0, 0, 0, 1]])
    write_mr_series(phantom_image((64, 64, 1), loc_affine), folder,
                    SeriesSpec(series_number=7, description="t2_tse_sag", repetition_time=8.0, echo_time=4.0,
                               series_instance_uid=series_uid, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")))
    study = open_study(StudyRequest(path=folder), require=("t2",))
    assert study.t2.shape == expected.shape
    np.testing.assert_allclose(study.t2.affine, expected.affine, atol=1e-4)
    with pytest.raises(NotAVolumeError, match="not parallel"):
        load_series(folder)


def test_missing_slice_is_refused_or_resampled_with_warning(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path, shape=(32, 40, 9))
    complete = load_series(folder)
    positions = sorted(paths, key=lambda p: float(pydicom.dcmread(p).SliceLocation))
    positions[4].unlink()
    with pytest.raises(GeometryError, match="1 missing slice"):
        load_series(folder)
    with pytest.warns(IrregularSpacingWarning):
        resampled = load_series(folder, resample_irregular=True)
    assert resampled.shape == complete.shape
    np.testing.assert_allclose(resampled.affine, complete.affine, atol=1e-4)
    # the interpolated slice is the mean of its neighbours; the others are untouched
    k = int(np.argmax(np.abs(resampled.array - complete.array).sum(axis=(0, 1))))
    np.testing.assert_allclose(resampled.array[..., k], (complete.array[..., k - 1] + complete.array[..., k + 1]) / 2)
    untouched = [i for i in range(complete.shape[2]) if i != k]
    np.testing.assert_array_equal(resampled.array[..., untouched], complete.array[..., untouched])


def test_uneven_spacing_is_refused(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = [float(v) + (1.3 if i == 0 else 0.0) for i, v in enumerate(ds.ImagePositionPatient)]
    ds.save_as(paths[3])
    with pytest.raises(GeometryError, match="uneven slice spacing"):
        load_series(folder)


def test_duplicate_position_is_refused(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "extra_copy")
    with pytest.raises(NotAVolumeError, match="duplicate slice positions"):
        load_series(folder)


def test_exact_copy_of_a_file_is_skipped(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    shutil.copy(paths[2], folder / "copy_of_slice")
    scan = scan_study(folder)
    assert scan.folder.skipped["duplicate copies of one SOP instance"] == 1
    assert load_series(folder).shape == (32, 40, 9)


def test_four_d_series_is_refused(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    for t, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.TemporalPositionIdentifier = 2
        ds.save_as(folder / f"t2_{t}")
    with pytest.raises(NotAVolumeError, match="4-D: 2 images per slice position"):
        load_series(folder)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1.99",
                                    "1.2.840.10008.1.2.4.80"],
                         ids=["rle", "jpeg2000-lossless", "deflate", "jpeg-ls"])
def test_compressed_transfer_syntaxes_decode_exactly(tmp_path, syntax) -> None:
    shape = (32, 40, 5)
    affine = sagittal_affine(shape)
    image = phantom_image(shape, affine, "t1")
    write_mr_series(image, tmp_path, SeriesSpec(series_number=3, transfer_syntax=syntax, **T1_SERIES))
    assert str(pydicom.dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID) == syntax
    loaded = load_series(tmp_path)
    np.testing.assert_array_equal(loaded.array, image.array)
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-4)


def test_enhanced_multiframe_matches_classic(tmp_path) -> None:
    shape = (32, 40, 7)
    affine = sagittal_affine(shape, step=4.4)
    image = phantom_image(shape, affine, "t2")
    write_mr_series(image, tmp_path / "enh", SeriesSpec(series_number=3, description="t2_tse_sag",
                                                         repetition_time=3000.0, echo_time=90.0, enhanced=True,
                                                         rescale=(0.5, 0.0)))
    loaded = load_series(tmp_path / "enh")
    assert loaded.provenance.weighting == "T2"
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(loaded.array, image.array)


def test_unsupported_compression_names_file_and_syntax(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no plugin decodes it
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0], enforce_file_format=True)
    with pytest.raises(InputError) as info:
        load_series(folder)
    assert paths[0].name in str(info.value) and "MPEG2" in str(info.value)


def test_truncated_file_is_named(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 1500])
    with pytest.raises(InputError) as info:
        load_series(folder)
    assert paths[5].name in str(info.value)


def test_corrupt_header_is_named(tmp_path) -> None:
    folder, paths = _write_t2(tmp_path)
    data = bytearray(paths[1].read_bytes())
    data[140:400] = b"\xff" * 260
    paths[1].write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        scan_study(folder)
    assert paths[1].name in str(info.value)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_tag_is_named(tmp_path, tag) -> None:
    folder, paths = _write_t2(tmp_path)
    ds = pydicom.dcmread(paths[4])
    delattr(ds, tag)
    ds.save_as(paths[4])
    with pytest.raises(NotAVolumeError) as info:
        load_series(folder)
    assert tag in str(info.value) and paths[4].name in str(info.value)


def test_empty_and_non_mr_folders(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty folder"):
        scan_study(empty)
    text = tmp_path / "text"
    text.mkdir()
    (text / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no MR images"):
        scan_study(text)


def test_only_axial_series_gives_clear_selection_error(tmp_path) -> None:
    from .dicom_factory import axial_affine

    shape = (40, 40, 9)
    write_mr_series(phantom_image(shape, axial_affine(shape), "t2"), tmp_path,
                    SeriesSpec(series_number=5, description="t2_tse_tra", repetition_time=4000.0, echo_time=100.0))
    with pytest.raises(SelectionError, match="no usable sagittal T1"):
        open_study(StudyRequest(path=tmp_path))


def test_t1_resampled_onto_t2_grid_in_physical_space(tmp_path) -> None:
    study_spec = canary_study()
    t1_shape, t2_shape = (40, 50, 9), (64, 80, 11)
    t1_affine = sagittal_affine(t1_shape, in_plane=1.2, step=4.4, centre_ras=(0.0, -5.0, 25.0))
    t2_affine = sagittal_affine(t2_shape)
    write_mr_series(phantom_image(t1_shape, t1_affine, "t1"), tmp_path / "t1",
                    SeriesSpec(series_number=3, **T1_SERIES), study_spec)
    write_mr_series(phantom_image(t2_shape, t2_affine, "t2"), tmp_path / "t2",
                    SeriesSpec(series_number=4, description="t2_tse_sag", repetition_time=3500.0, echo_time=95.0),
                    study_spec)
    study = open_study(StudyRequest(path=tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        t1_on_t2, t2 = t1_on_t2_grid(study)
    assert t1_on_t2.same_grid(t2)
    truth = phantom_image(t2_shape, t2_affine, "t1").array
    inside = np.abs(truth - 900) < 1  # the bright blob of the T1 phantom
    assert np.median(t1_on_t2.array[inside]) == pytest.approx(900, rel=0.05)


def test_different_frames_of_reference_are_registered_with_warning(tmp_path) -> None:
    shape = (64, 80, 15)
    affine = sagittal_affine(shape, in_plane=1.0, step=3.0)
    # the T1 subject moved 6 mm up and 4 mm forward: its frame of reference differs
    from modicseg.core.image import ScalarImage

    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3] - np.array([0.0, 4.0, 6.0])
    from .dicom_factory import world_phantom

    moved = ScalarImage(world_phantom(xyz, "t1").reshape(shape).astype(np.float32), affine)
    write_mr_series(moved, tmp_path / "t1", SeriesSpec(series_number=3, **T1_SERIES), canary_study())
    write_mr_series(phantom_image(shape, affine, "t2"), tmp_path / "t2",
                    SeriesSpec(series_number=4, description="t2_tse_sag", repetition_time=3500.0, echo_time=95.0),
                    canary_study())
    study = open_study(StudyRequest(path=tmp_path))
    with pytest.warns(RegistrationWarning, match="different frames of reference"):
        t1_on_t2, _ = t1_on_t2_grid(study)
    truth = phantom_image(shape, affine, "t1").array
    blob = np.abs(truth - 900) < 1
    assert np.median(t1_on_t2.array[blob]) == pytest.approx(900, rel=0.1)


def test_nifti_inputs_explicit_and_bids(tmp_path, study_dir) -> None:
    root, info = study_dir
    from modicseg.cli import main

    out = tmp_path / "nii"
    assert main(["convert", str(root), "-o", str(out)]) == 0
    explicit = open_study(StudyRequest(t1=out / "study_T1w.nii.gz", t2=out / "study_T2w.nii.gz"))
    bids = open_study(StudyRequest(path=out))
    for study in (explicit, bids):
        np.testing.assert_allclose(study.t2.affine, info["t2_affine"], atol=1e-4)
        np.testing.assert_array_equal(study.t2.array, info["t2"].array)
    single = open_study(StudyRequest(t2=out / "study_T2w.nii.gz"), require=("t2",))
    assert single.t1 is None
    with pytest.raises(SelectionError, match="no T1 image"):
        open_study(StudyRequest(t2=out / "study_T2w.nii.gz"))
    roundtrip = load_nifti(str(out / "study_T2w.nii.gz"))
    assert resample_to(roundtrip, study.t2).same_grid(study.t2)


def test_no_identifier_in_converted_outputs(tmp_path, study_dir) -> None:
    root, _ = study_dir
    from modicseg.cli import main

    out = tmp_path / "conv"
    assert main(["convert", str(root), "-o", str(out), "--t1-on-t2-grid"]) == 0
    assert main(["convert", str(root), "-o", str(tmp_path / "all"), "--all"]) == 0
    for path in list(out.iterdir()) + list((tmp_path / "all").iterdir()):
        raw = path.read_bytes()
        import gzip

        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        for canary in (CANARY_NAME, CANARY_ID, CANARY_BIRTH, "CANARY"):
            assert canary.encode() not in raw, f"{canary} leaked into {path.name}"
        assert "CANARY" not in path.name
    sidecar = json.loads((out / "study_T1w.json").read_text())
    assert sidecar["series_number"] == 3 and sidecar["weighting"] == "T1"


def test_dicomdir_study_layout_is_read(tmp_path, study_dir) -> None:
    from pydicom.fileset import FileSet

    root, info = study_dir
    fileset = FileSet()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.txt"):
        fileset.add(str(path))
    media = tmp_path / "media"
    fileset.write(str(media))
    assert (media / "DICOMDIR").is_file()
    scan = scan_study(media)
    assert scan.folder.skipped["DICOMDIR files"] == 1
    study = open_study(StudyRequest(path=media))
    np.testing.assert_allclose(study.t2.affine, info["t2_affine"], atol=1e-4)
    assert study.t1.provenance.series_number == 3


def test_stacks_of_a_split_series_are_named_the_same_whatever_the_file_order(study_dir) -> None:
    from modicseg.io.dicom_headers import frames_of
    from modicseg.io.dicom_scan import read_header
    from modicseg.io.stacks import split_series

    root, _ = study_dir
    frames = [f for path in sorted((root / "loc").iterdir()) for f in frames_of(read_header(path), path)]
    assert len(frames) == 3
    orders = [split_series(list(order)) for order in (frames, frames[::-1], frames[1:] + frames[:1])]
    planes = [[stack.frames[0].orientation for stack in stacks] for stacks in orders]
    assert planes[0] == planes[1] == planes[2] and len({tuple(p) for p in planes[0]}) == 3
