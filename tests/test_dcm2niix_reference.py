"""Debian's dcm2niix as a second reference: same voxels at the same world positions as ours."""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from modicseg.core.convert import to_nibabel
from modicseg.io.study import StudyRequest, open_study

from .dicom_factory import write_multi_series_study

pytestmark = pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")


def test_our_volumes_match_dcm2niix_in_world_space(tmp_path) -> None:
    study_dir = tmp_path / "study"
    write_multi_series_study(study_dir)
    out = tmp_path / "dcm2niix"
    out.mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-f", "%s_%d", "-o", str(out), str(study_dir)],
                   check=True, capture_output=True, timeout=120)
    study = open_study(StudyRequest(path=study_dir))
    for role, number in (("t1", 3), ("t2", 4)):
        reference = nib.as_closest_canonical(nib.load(next(out.glob(f"{number}_*.nii"))))
        ours = nib.as_closest_canonical(to_nibabel(getattr(study, role)))
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours.affine, reference.affine, atol=0.01)
        np.testing.assert_allclose(np.asarray(ours.dataobj, dtype=np.float64),
                                   reference.get_fdata(), rtol=1e-5, atol=1e-3)
