"""Analysis-like output folders for the review tests (no test functions here).

A straight column of elliptic-cylinder vertebral bodies with discs on a sagittal grid with thick
slices, T1/T2 signal per tissue and Modic type, analysed with the real ``analyze_images`` and
written like ``modicseg analyze`` does (report.json, labels.nii.gz, types.nii.gz) plus
t1.nii.gz / t2.nii.gz on the same grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modicseg.core.convert import save_nifti
from modicseg.core.image import LabelImage, ScalarImage
from tests.dicom_factory import sagittal_affine

LEVELS = ("L3", "L4", "L5", "S1")
SIGNAL = {"marrow": (400.0, 250.0), "disc": (300.0, 600.0), "background": (60.0, 120.0)}
TYPE_RATIO = {"1": (0.6, 1.6), "2": (1.6, 1.3), "3": (0.45, 0.5)}
DEFAULT_LESIONS = (("L4", "inferior", "1", 9.0), ("L5", "superior", "2", 6.0))


def phantom(lesions=DEFAULT_LESIONS, in_plane: float = 1.0, step: float = 4.0, seed: int = 0,
            body_mm: float = 24.0, disc_mm: float = 8.0):
    """(labels, t1, t2) images; lesions are (level, endplate, type, depth_mm) plugs from the endplate."""
    rng = np.random.default_rng(seed)
    pitch = body_mm + disc_mm
    length = len(LEVELS) * pitch + 24
    shape = (int(round(64 / in_plane)), int(round(length / in_plane)), 11)
    affine = sagittal_affine(shape, in_plane=in_plane, step=step, centre_ras=(0.0, 0.0, 0.0))
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    x, y, z = (ijk @ affine[:3, :3].T + affine[:3, 3]).T
    disc_shape = (y / 15) ** 2 + (x / 17) ** 2 < 1
    labels = np.zeros(len(x), np.uint8)
    t1 = np.full(len(x), SIGNAL["background"][0])
    t2 = np.full(len(x), SIGNAL["background"][1])
    top = (len(LEVELS) * pitch - disc_mm) / 2
    for n, level in enumerate(LEVELS):
        sup = top - n * pitch
        inf = sup - body_mm
        body = disc_shape & (z <= sup) & (z > inf)
        labels[body] = 1
        t1[body], t2[body] = SIGNAL["marrow"]
        if n < len(LEVELS) - 1:
            disc = disc_shape & (z <= inf) & (z > inf - disc_mm)
            labels[disc] = 2
            t1[disc], t2[disc] = SIGNAL["disc"]
        for les_level, endplate, mtype, depth in lesions:
            if les_level != level:
                continue
            plug = body & ((y / 8) ** 2 + (x / 9) ** 2 < 1)
            plug &= (z > sup - depth) if endplate == "superior" else (z <= inf + depth)
            labels[plug] = 3
            r1, r2 = TYPE_RATIO[mtype]
            t1[plug] = SIGNAL["marrow"][0] * r1
            t2[plug] = SIGNAL["marrow"][1] * r2
    t1 *= 1 + 0.02 * rng.standard_normal(len(x))
    t2 *= 1 + 0.02 * rng.standard_normal(len(x))
    return (LabelImage(labels.reshape(shape), affine), ScalarImage(t1.reshape(shape).astype(np.float32), affine),
            ScalarImage(t2.reshape(shape).astype(np.float32), affine))


def make_analysis(folder: Path, lesions=DEFAULT_LESIONS, seed: int = 0, in_plane: float = 1.0,
                  provenance_extra: dict | None = None) -> Path:
    """An analysis folder like ``modicseg analyze`` writes, plus t1/t2.nii.gz."""
    from modicseg.analysis.pipeline import analyze_images

    labels, t1, t2 = phantom(lesions, in_plane=in_plane, seed=seed)
    report = analyze_images(labels, t1=t1, t2=t2)
    if provenance_extra:
        report.provenance.update(provenance_extra)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from modicseg.report.writers import write_report

        write_report(report, folder, qc=False, dicom_seg=False)
    except ImportError:  # the report stage not there: write the same files by hand
        save_nifti(report.labels, str(folder / "labels.nii.gz"))
        save_nifti(report.types, str(folder / "types.nii.gz"))
        data = {"schema_version": 1, "provenance": report.provenance,
                "vertebrae": [vars(v) for v in report.vertebrae], "lesions": [vars(les) for les in report.lesions],
                "eligibility": {"eligible": report.eligibility.eligible, "reasons": report.eligibility.reasons},
                "config": report.config.to_dict()}
        (folder / "report.json").write_text(json.dumps(data, default=float))
    save_nifti(t1, str(folder / "t1.nii.gz"))
    save_nifti(t2, str(folder / "t2.nii.gz"))
    return folder


def make_cohort(root: Path, subjects=("001", "002"), timepoints=("baseline", "1year")) -> Path:
    """``root/sub-XXX/ses-YYY/`` analysis folders with a few different lesions."""
    variants = [DEFAULT_LESIONS, (("L4", "inferior", "2", 7.0),), (("L3", "superior", "1", 5.0),
                ("L5", "inferior", "3", 6.0)), ()]
    n = 0
    for subject in subjects:
        for timepoint in timepoints:
            make_analysis(root / f"sub-{subject}" / f"ses-{timepoint}", variants[n % len(variants)], seed=n)
            n += 1
    return root
