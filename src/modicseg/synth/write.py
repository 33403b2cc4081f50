"""Write a synthetic case as a real DICOM study and as NIfTI, with its truth file.

DICOM: two sagittal TSE series (T1, T2) as MR Image Storage in one flat folder under random file
names, sharing a FrameOfReferenceUID, with fresh UIDs.  Variants: ``enhanced`` (one multi-frame
Enhanced MR object per series), ``compressed`` (a lossless compressed transfer syntax) and
``extra-series`` (a 3-plane localizer and an axial T2 series the loader must not pick).
Patient name and ID are canary strings (``CANARY^SYNTH0001`` / ``CANARYID0001``) that appear in
the DICOM patient tags only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from modicseg.core.convert import save_nifti
from modicseg.core.image import ScalarImage
from modicseg.io.dicom_write import SeriesSpec, StudySpec, write_mr_series
from modicseg.synth.case import render_scene
from modicseg.synth.grid import AXIAL_AXES, CORONAL_AXES, SAGITTAL_AXES, Grid, make_grid
from modicseg.synth.scene import Scene, SynthCase
from modicseg.synth.truth import NIFTI_FILES, subject_name, write_json

VARIANTS = ("enhanced", "compressed", "extra-series")
FORMATS = ("dicom", "nifti", "both")
COMPRESSED_SYNTAXES = (str(JPEG2000Lossless), str(JPEGLSLossless), str(RLELossless))
BASE_DATE = dt.date(2025, 1, 13)


def canary_identity(subject_index: int) -> tuple[str, str]:
    """(PatientName, PatientID) of synthetic subject ``subject_index`` (0-based)."""
    return f"CANARY^SYNTH{subject_index + 1:04d}", f"CANARYID{subject_index + 1:04d}"


def study_spec(subject_index: int, date: dt.date = BASE_DATE) -> StudySpec:
    """Study and patient attributes: canary identity, fresh study / frame-of-reference UIDs."""
    name, pid = canary_identity(subject_index)
    return StudySpec(patient_name=name, patient_id=pid, study_date=date.strftime("%Y%m%d"),
                     accession_number=f"CANARYACC{subject_index + 1:04d}",
                     study_description="LUMBAR SPINE (SYNTHETIC)")


@dataclass
class WrittenSeries:
    """What was written for one series (for tests and manifests)."""

    role: str  # "T1", "T2", "localizer", "axial_T2"
    series_number: int
    description: str
    files: list[Path]


def _image_for_dicom(image: ScalarImage) -> ScalarImage:
    return image.with_array(np.clip(np.rint(image.array), 0, 65535).astype(np.float32))


def _extra_grids(scene: Scene) -> tuple[list[Grid], Grid]:
    """Localizer grids (sagittal, coronal, axial; 3 slices each) and an axial grid through L4-S1."""
    m = scene.subject_to_scanner
    spine = scene.spine
    lumbar = [v for v in spine.bodies if v.level.startswith("L")]
    mid = lumbar[len(lumbar) // 2]
    centre = m[:3, :3] @ mid.centre + m[:3, 3]
    loc = [make_grid(centre, (256, 256, 3), (1.5, 1.5, 12.0), thickness=8.0, axes=axes, supersample=(1, 1, 3))
           for axes in (SAGITTAL_AXES, CORONAL_AXES, AXIAL_AXES)]
    low_discs = [d for d in spine.anatomical_discs if d.upper.level.startswith("L")][-2:]
    disc_centre = np.mean([d.centre for d in low_discs], axis=0)
    axial_centre = m[:3, :3] @ disc_centre + m[:3, 3]
    axial = make_grid(axial_centre, (224, 224, 12), (0.8, 0.8, 4.4), thickness=4.0, axes=AXIAL_AXES,
                      supersample=(1, 1, 3))
    return loc, axial


def _render_extra(case: SynthCase, rng: np.random.Generator) -> tuple[list[ScalarImage], ScalarImage]:
    loc_grids, axial_grid = _extra_grids(case.scene)
    localizers = []
    for grid in loc_grids:
        images, _ = render_scene(case.scene, grid, rng, weightings=("T1",))
        localizers.append(ScalarImage(np.rint(images["T1"] * 600.0), grid.affine.copy()))
    images, _ = render_scene(case.scene, axial_grid, rng, weightings=("T2",))
    axial = ScalarImage(np.rint(images["T2"] * 900.0), axial_grid.affine.copy())
    return localizers, axial


def write_dicom_study(case: SynthCase, out_dir: str | Path, study: StudySpec,
                      variants: tuple[str, ...] = (), rng: np.random.Generator | None = None) -> list[WrittenSeries]:
    """Write the case's T1 and T2 (and variant series) into one flat folder of DICOM files."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; expected {VARIANTS}")
    rng = rng or np.random.default_rng(case.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    syntax = str(rng.choice(COMPRESSED_SYNTAXES)) if "compressed" in variants else None
    extra = "extra-series" in variants
    order = ["T2", "T1"] if rng.random() < 0.5 else ["T1", "T2"]
    numbers = {name: (2 if extra else 1) + i for i, name in enumerate(order)}
    written: list[WrittenSeries] = []
    for name in order:
        image = case.t1 if name == "T1" else case.t2
        seq = case.scene.appearance.sequences[name]
        spec = SeriesSpec(series_number=numbers[name], description=seq.description, repetition_time=seq.tr,
                          echo_time=seq.te, slice_thickness=case.grids[name].slice_thickness,
                          rescale=case.rescale.get(name), enhanced="enhanced" in variants,
                          sequence_variant="SK\\SP\\OSP", scanning_sequence="SE")
        if syntax:
            spec.transfer_syntax = syntax
        files = write_mr_series(image if spec.rescale else _image_for_dicom(image), out, spec, study)
        written.append(WrittenSeries(name, spec.series_number, spec.description, files))
    if extra:
        localizers, axial = _render_extra(case, rng)
        loc_spec = SeriesSpec(series_number=1, description="localizer", repetition_time=8.6, echo_time=4.0,
                              flip_angle=20.0, scanning_sequence="GR", sequence_variant="SP",
                              image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
        files = []
        for image in localizers:
            files += write_mr_series(_image_for_dicom(image), out, loc_spec, study)
        written.append(WrittenSeries("localizer", 1, loc_spec.description, files))
        t2 = case.scene.appearance.sequences["T2"]
        ax_spec = SeriesSpec(series_number=4, description="t2_tse_tra", repetition_time=t2.tr, echo_time=t2.te,
                             slice_thickness=4.0, sequence_variant="SK\\SP\\OSP")
        if syntax:
            ax_spec.transfer_syntax = syntax
        files = write_mr_series(_image_for_dicom(axial), out, ax_spec, study)
        written.append(WrittenSeries("axial_T2", 4, ax_spec.description, files))
    return written


def write_nifti(case: SynthCase, out_dir: str | Path) -> dict[str, Path]:
    """T1w / T2w images and the label, type and vertebra-instance maps as NIfTI."""
    root = Path(out_dir)
    (root / "nifti").mkdir(parents=True, exist_ok=True)
    subject = subject_name(case.case_id)
    items = {"T1": case.t1, "T2": case.t2, "labels": case.labels, "types": case.types,
             "instances": case.instances}
    paths = {}
    for key, image in items.items():
        path = root / NIFTI_FILES[key].format(subject=subject)
        save_nifti(image, str(path))
        paths[key] = path
    for key, image in case.extra_maps.items():
        path = root / f"nifti/{key.replace('instances', 'vertebrae')}.nii.gz"
        save_nifti(image, str(path))
        paths[key] = path
    return paths


def write_case(case: SynthCase, out_dir: str | Path, fmt: str = "both", variants: tuple[str, ...] = (),
               subject_index: int = 0, date: dt.date = BASE_DATE) -> Path:
    """Write ``out_dir``/{dicom/, nifti/, truth.json}; returns ``out_dir``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    truth = dict(case.truth)
    if fmt in ("dicom", "both"):
        written = write_dicom_study(case, root / "dicom", study_spec(subject_index, date), variants)
        truth["dicom"] = {"folder": "dicom", "variants": list(variants), "series": [
            {"role": w.role, "series_number": w.series_number, "series_description": w.description,
             "n_files": len(w.files)} for w in written]}
    if fmt in ("nifti", "both"):
        write_nifti(case, root)
    else:
        truth["files"] = {}
    write_json(truth, root / "truth.json")
    return root
