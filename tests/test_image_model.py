"""The image model: lossless nibabel / SimpleITK round trips and physical-space resampling."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from modicseg.core.convert import from_nibabel, from_sitk, load_nifti, save_nifti, to_nibabel, to_sitk
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.resample import resample_to, resample_to_spacing

from .dicom_factory import phantom_image, sagittal_affine


def _oblique_affine() -> np.ndarray:
    angle = np.radians(12)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 0.9, 4.0])
    affine[:3, 3] = [-12.5, 30.0, -7.25]
    return affine


def test_nibabel_round_trip_is_lossless(tmp_path) -> None:
    image = ScalarImage(np.random.default_rng(1).normal(size=(7, 9, 5)).astype(np.float32), _oblique_affine())
    path = tmp_path / "x.nii.gz"
    save_nifti(image, str(path))
    back = load_nifti(str(path))
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-5)
    assert nib.load(path).get_sform(coded=True)[1] == 1
    assert from_nibabel(to_nibabel(image)).same_grid(image)


def test_sitk_round_trip_keeps_axes_and_lps(tmp_path) -> None:
    array = np.arange(7 * 9 * 5, dtype=np.int16).reshape(7, 9, 5)
    image = LabelImage(array, _oblique_affine())
    itk = to_sitk(image)
    assert itk.GetSize() == (7, 9, 5)  # x, y, z = i, j, k
    # voxel (i, j, k) = (6, 2, 4) lies at the same physical point in both, modulo LPS <-> RAS
    ras = image.world_coordinates(np.array([[6, 2, 4]]))[0]
    lps = itk.TransformIndexToPhysicalPoint((6, 2, 4))
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-6)
    assert itk[6, 2, 4] == array[6, 2, 4]
    back = from_sitk(itk, LabelImage)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-9)
    # and through a file written by ITK, read by nibabel
    sitk.WriteImage(itk, str(tmp_path / "itk.nii.gz"))
    via_file = load_nifti(str(tmp_path / "itk.nii.gz"), LabelImage)
    np.testing.assert_array_equal(via_file.array, array)
    np.testing.assert_allclose(via_file.affine, image.affine, atol=1e-4)


def test_labels_resample_nearest_and_keep_their_values() -> None:
    rng = np.random.default_rng(0)
    labels = LabelImage(rng.integers(0, 4, size=(20, 20, 6)).astype(np.int16), sagittal_affine((20, 20, 6)))
    finer = resample_to_spacing(labels, (0.5, 0.5, 2.0))
    assert set(np.unique(finer.array)) <= {0, 1, 2, 3}
    assert finer.array.dtype == labels.array.dtype
    scalar = ScalarImage(labels.array.astype(np.float32), labels.affine)
    smooth = resample_to_spacing(scalar, (0.5, 0.5, 2.0))
    assert len(np.unique(smooth.array)) > 4  # linear interpolation mixes values


def test_resampling_is_physical_not_index_based() -> None:
    shape = (60, 70, 12)
    fine = sagittal_affine(shape, in_plane=0.8, step=4.0)
    coarse_shape = (40, 45, 16)
    coarse = sagittal_affine(coarse_shape, in_plane=1.25, step=3.0, centre_ras=(1.0, -8.0, 28.0))
    source = phantom_image(coarse_shape, coarse, "t1")
    on_fine = resample_to(source, ScalarImage(np.zeros(shape, np.float32), fine))
    truth = phantom_image(shape, fine, "t1").array
    blob = np.abs(truth - 900) < 1
    assert blob.sum() > 50
    assert np.median(on_fine.array[blob]) == pytest.approx(900, rel=0.02)
    np.testing.assert_allclose(on_fine.affine, fine)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="3-D"):
        ScalarImage(np.zeros((3, 3)), np.eye(4))
    with pytest.raises(ValueError, match="singular"):
        ScalarImage(np.zeros((3, 3, 3)), np.diag([1, 0, 1, 1]))
    with pytest.raises(ValueError, match="integer"):
        LabelImage(np.full((2, 2, 2), 0.5), np.eye(4))
