"""A small, deterministic demo study for the README's main command.

``make_demo_study(out_dir)`` writes a realistic DICOM study -- sagittal T1 and T2 TSE plus a
3-plane localizer and an axial T2 series, so that the loader has to choose -- with at least one
type-1 Modic lesion above the trials' 10 % height threshold, and its ``truth.json``.
"""

from __future__ import annotations

from pathlib import Path

from modicseg.synth.case import CaseOptions, generate_case
from modicseg.synth.write import write_case

DEMO_OPTIONS = CaseOptions(
    lumbar_count=5,
    fracture=False,
    lesion_count=3,
    lesion_types=["1", "2", "1/2"],
    lesion_height_fractions=[0.32, 0.18, 0.12],
    inplane_mm=0.9,
    thickness_mm=4.0,
    gap_mm=0.4,
    n_slices=13,
    fov_mm=270.0,
    separate_t1_grid=False,
    rescale=False,
)


def make_demo_study(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the demo study under ``out_dir``; returns the DICOM folder (``out_dir/dicom``).

    ``out_dir/truth.json`` holds the ground truth and ``out_dir/nifti/`` the same images and maps
    as NIfTI.  The same seed gives the same images and truth (DICOM UIDs are fresh each time).
    """
    root = Path(out_dir)
    case = generate_case(seed, "demo", DEMO_OPTIONS)
    write_case(case, root, fmt="both", variants=("extra-series",), subject_index=0)
    return root / "dicom"
