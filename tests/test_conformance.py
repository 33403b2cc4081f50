"""The DICOM loader against real scanner series and the NIfTI dcm2niix made of them.

Comparison rule of ../shared/dicom-conformance/README.md: permute/flip our axes onto the
reference's, then directions within 1e-4, corner voxel positions within 0.02 mm, and values equal to
the reference's stored values rescaled by the DICOM RescaleSlope/Intercept (relative 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from modicseg.io.dicom_series import load_series
from modicseg.io.errors import InputError, NotAVolumeError

from .conftest import conformance_cases

CASES = conformance_cases()
if not CASES:
    pytest.skip("../shared/dicom-conformance not available", allow_module_level=True)


def _meta(case: Path) -> dict:
    return json.loads((case / "case.json").read_text())


def _to_reference_order(array: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray):
    """Permute and flip (array, affine) so that each axis matches the reference's axis."""
    ours = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    theirs = ref_affine[:3, :3] / np.linalg.norm(ref_affine[:3, :3], axis=0)
    perm, flips = [], []
    for ref_axis in range(3):
        cos = theirs[:, ref_axis] @ ours
        match = int(np.argmax(np.abs(cos)))
        assert abs(cos[match]) > 0.999, f"no axis of ours matches reference axis {ref_axis}"
        perm.append(match)
        flips.append(cos[match] < 0)
    assert sorted(perm) == [0, 1, 2]
    array = np.transpose(array, perm)
    new = np.eye(4)
    new[:3, :3] = affine[:3, :3][:, perm]
    new[:3, 3] = affine[:3, 3]
    for axis, flip in enumerate(flips):
        if flip:
            n = array.shape[axis]
            new[:3, 3] = new[:3, 3] + (n - 1) * new[:3, axis]
            new[:3, axis] = -new[:3, axis]
            array = np.flip(array, axis=axis)
    return array, new


def _corners(shape) -> np.ndarray:
    return np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                     for k in (0, shape[2] - 1)])


@pytest.mark.parametrize("case", [c for c in CASES if _meta(c)["expect"] == "volume"], ids=lambda p: p.name)
def test_volume_case_matches_reference(case: Path) -> None:
    meta = _meta(case)
    ref = nib.load(case / "expected.nii")
    ref_values = np.asarray(ref.dataobj.get_unscaled())
    ref_affine = ref.get_sform()

    image = load_series(case / "dicom")
    array, affine = _to_reference_order(image.array, image.affine, ref_affine)

    assert array.shape == tuple(meta["expected"]["shape"])
    our_dirs = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    ref_dirs = ref_affine[:3, :3] / np.linalg.norm(ref_affine[:3, :3], axis=0)
    assert np.max(np.abs(our_dirs - ref_dirs)) < 1e-4
    corners = _corners(array.shape)
    distance = np.linalg.norm((corners @ affine.T)[:, :3] - (corners @ ref_affine.T)[:, :3], axis=1)
    assert distance.max() < 0.02, f"corner positions differ by {distance.max():.4f} mm"

    (slope, intercept), = meta["dicom_rescale_slope_intercept"]
    expected = ref_values.astype(np.float64) * slope + intercept
    np.testing.assert_allclose(array.astype(np.float64), expected, rtol=1e-6, atol=1e-6 * max(1.0, abs(slope)))


@pytest.mark.parametrize("case", [c for c in CASES if _meta(c)["expect"] == "error"], ids=lambda p: p.name)
def test_error_case_is_refused_with_a_reason(case: Path) -> None:
    with pytest.raises(NotAVolumeError) as info:
        load_series(case / "dicom")
    message = str(info.value)
    # the message names the problem in words a user can act on
    assert any(word in message for word in ("4-D", "mosaic", "echo", "not parallel", "stacks", "image type")), message


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_any_case_gives_volume_or_clear_error(case: Path) -> None:
    try:
        load_series(case / "dicom")
    except InputError as exc:
        assert str(exc)
