"""Fat-suppressed fluid-sensitive input (STIR / TIRM, fat-saturated T2, Dixon water) instead of a T2.

Recognising the series, choosing it when the study has no T2 (and the T2 when it has one), saying so
in ``inspect``, NIfTI input that marks a file as STIR, and typing with the STIR bands.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.pipeline import analyze_images
from modicseg.cli import main
from modicseg.core.convert import save_nifti
from modicseg.core.image import Provenance, ScalarImage
from modicseg.io.classify import classify_weighting
from modicseg.io.dicom_series import scan_study
from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from modicseg.io.errors import InputError
from modicseg.io.study import StudyRequest, open_study
from modicseg.report.schema import validate_report
from modicseg.report.writers import report_dict
from tests.dicom_factory import T1_SERIES, T2_SERIES, canary_study, phantom_image, sagittal_affine
from tests.test_analysis_phantoms import Phantom, PhantomLesion, make_phantom

STIR_SERIES = dict(description="STIR_SAG", repetition_time=4000.0, echo_time=40.0, inversion_time=150.0,
                   scanning_sequence="SE\\IR")
T2FS_SERIES = dict(description="t2_tse_fs_sag", repetition_time=3800.0, echo_time=90.0)
SERIES = {"t1": (3, T1_SERIES), "t2": (4, T2_SERIES), "stir": (6, STIR_SERIES), "t2fs": (7, T2FS_SERIES)}


# --- classification --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """One folder per sagittal series (T1, T2, STIR, fat-saturated T2), copied together into studies."""
    root = tmp_path_factory.mktemp("series")
    shape = (32, 40, 9)
    affine = sagittal_affine(shape)
    study = canary_study()
    for name, (number, spec) in SERIES.items():
        contrast = "t1" if name == "t1" else "t2"
        write_mr_series(phantom_image(shape, affine, contrast), root / name, SeriesSpec(series_number=number, **spec),
                        study)
    return root


def _study(library: Path, tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "_".join(names)
    for name in names:
        shutil.copytree(library / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def frame(library):
    """A real frame header to vary (TR, TE, TI, description, image type, scan options)."""
    return scan_study(library / "t2").stacks[0].first


@pytest.mark.parametrize("description, tr, te, ti, image_type, scan_options, expected", [
    ("STIR_SAG", 4000, 40, 150, None, (), "STIR"),
    ("sag t2 tse", 4000, 70, 230, None, (), "STIR"),  # TI decides even when the description says T2
    ("t2_tirm_sag", 4000, 70, None, None, (), "STIR"),  # no TI in the header: the description decides
    ("Sag FSE-IR", 3500, 45, None, None, (), "STIR"),
    ("Sag T2 FSE", 3500, 95, None, None, (), "T2"),  # FSE is fast spin echo, not fat suppression
    ("SAG T2FS", 3500, 95, None, None, (), "T2FS"),
    ("t2_tse_fs_sag", 3500, 95, None, None, (), "T2FS"),
    ("T2 SPAIR sag", 3500, 95, None, None, (), "T2FS"),
    ("t2_tse_dixon_sag_W", 3500, 95, None, None, (), "T2FS"),
    ("t2_tse_dixon_sag_in", 3500, 95, None, None, (), "T2"),  # in-phase Dixon image: fat is bright
    ("mDIXON_T2W_sag", 3500, 95, None, None, (), "T2"),
    ("t2_tse_sag", 3500, 95, None, ("DERIVED", "PRIMARY", "DIXON", "WATER"), (), "T2FS"),
    ("t2_tse_sag", 3500, 95, None, None, ("PFP", "FS"), "T2FS"),
    ("t2_tse_sag", 3500, 95, None, None, ("PFP",), "T2"),
    ("T1_TSE_FS_SAG", 550, 11, None, None, (), "T1"),  # a fat-saturated T1 is still a T1
    ("t2_flair_sag", 9000, 100, 2500, None, (), "other"),
])
def test_weighting_of_fat_suppressed_series(frame, description, tr, te, ti, image_type, scan_options,
                                            expected) -> None:
    varied = dataclasses.replace(frame, series_description=description, repetition_time=float(tr),
                                 echo_time=float(te), inversion_time=None if ti is None else float(ti),
                                 image_type=image_type or frame.image_type, scan_options=scan_options)
    weighting, reason = classify_weighting(varied)
    assert weighting == expected, reason


def test_scan_options_fat_saturation_read_from_the_file(library, tmp_path) -> None:
    import pydicom

    folder = tmp_path / "t2"
    shutil.copytree(library / "t2", folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ScanOptions = ["PFP", "FS"]
        ds.save_as(path)
    [stack] = scan_study(folder).stacks
    assert stack.first.scan_options == ("PFP", "FS")
    assert stack.weighting == "T2FS" and "scan options" in stack.weighting_reason


# --- choosing the fluid-sensitive image --------------------------------------------------------------

def test_t1_and_stir_study_uses_the_stir_and_inspect_names_it(library, tmp_path, capsys) -> None:
    root = _study(library, tmp_path, "t1", "stir")
    study = open_study(StudyRequest(path=root))
    assert study.t1.provenance.series_number == 3
    assert study.t2.provenance.series_number == 6
    assert study.t2.provenance.weighting == "STIR"  # in the T2 role, but still known as a STIR
    assert study.fluid_contrast == "STIR"
    assert "no usable sagittal T2" in study.choice["t2"]

    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isdigit()}
    assert "T2 (STIR)" in rows["6"] and "STIR" in rows["6"].split()
    chosen = out[out.index("chosen:"):]
    fluid = next(line for line in chosen.splitlines() if line.strip().startswith("fluid-sensitive"))
    assert "series 6 'STIR_SAG' (STIR)" in fluid and "no usable sagittal T2" in fluid
    assert "no sagittal" not in out  # nothing is missing

    assert main(["inspect", str(root), "--json"]) == 0
    stacks = {s["series_number"]: s for s in json.loads(capsys.readouterr().out)}
    assert {n: s["role"] for n, s in stacks.items() if s["role"]} == {3: "t1", 6: "t2"}
    assert stacks[6]["weighting"] == "STIR"
    assert "no usable sagittal T2" in stacks[6]["role_reason"]


def test_t2_stays_the_default_when_stir_exists_too(library, tmp_path, capsys) -> None:
    root = _study(library, tmp_path, "t1", "t2", "stir")
    study = open_study(StudyRequest(path=root))
    assert study.t2.provenance.series_number == 4
    assert study.t2.provenance.weighting == "T2" and study.fluid_contrast == "T2"
    assert "not used: STIR series 6" in study.choice["t2"]
    assert main(["inspect", str(root), "--json"]) == 0
    stacks = {s["series_number"]: s for s in json.loads(capsys.readouterr().out)}
    assert {n: s["role"] for n, s in stacks.items() if s["role"]} == {3: "t1", 4: "t2"}
    assert stacks[6]["role"] is None and stacks[6]["weighting"] == "STIR"
    # the user can still ask for the STIR; it keeps its weighting
    chosen = open_study(StudyRequest(path=root, t2_series="6"))
    assert chosen.t2.provenance.series_number == 6 and chosen.fluid_contrast == "STIR"
    assert chosen.choice["t2"].startswith("chosen with --t2-series 6")


@pytest.mark.parametrize("names, number, contrast", [
    (("t1", "stir", "t2fs"), 6, "STIR"),  # a STIR before a fat-saturated T2
    (("t1", "t2fs"), 7, "T2FS"),
    (("t1", "t2", "t2fs"), 4, "T2"),
])
def test_order_of_preference_for_the_fluid_sensitive_image(library, tmp_path, names, number, contrast) -> None:
    study = open_study(StudyRequest(path=_study(library, tmp_path, *names)))
    assert study.t2.provenance.series_number == number
    assert study.fluid_contrast == contrast


# --- NIfTI input -------------------------------------------------------------------------------------

def test_nifti_stir_by_option_file_name_and_sidecar(library, tmp_path) -> None:
    root = _study(library, tmp_path, "t1", "stir")
    out = tmp_path / "nii"
    assert main(["convert", str(root), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["study_STIR.nii.gz", "study_T1w.nii.gz"]
    t1, stir = out / "study_T1w.nii.gz", out / "study_STIR.nii.gz"
    for request in (StudyRequest(path=out), StudyRequest(t1=t1, stir=stir)):
        study = open_study(request)
        assert study.fluid_contrast == "STIR" and study.t2.provenance.series_number == 6
        assert "STIR" in study.choice["t2"]
    # a STIR passed as --t2 keeps its contrast from the modicseg sidecar ...
    assert open_study(StudyRequest(t1=t1, t2=stir)).fluid_contrast == "STIR"
    # ... or from a dcm2niix sidecar (inversion time in seconds)
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(stir, plain / "scan.nii.gz")
    assert open_study(StudyRequest(t1=t1, t2=plain / "scan.nii.gz")).fluid_contrast == "T2"  # no sidecar
    (plain / "scan.json").write_text(json.dumps({"SeriesDescription": "sag", "RepetitionTime": 4.0,
                                                 "EchoTime": 0.04, "InversionTime": 0.15}))
    dcm2niix = open_study(StudyRequest(t1=t1, t2=plain / "scan.nii.gz"))
    assert dcm2niix.fluid_contrast == "STIR" and "InversionTime 150 ms" in dcm2niix.t2.provenance.weighting_reason
    with pytest.raises(InputError, match="pass one of them"):
        open_study(StudyRequest(t1=t1, t2=stir, stir=stir))


def test_bids_folder_with_t2_and_stir_uses_the_t2(library, tmp_path) -> None:
    out = tmp_path / "both"
    assert main(["convert", str(_study(library, tmp_path, "t1", "t2")), "-o", str(out)]) == 0
    assert main(["convert", str(_study(library, tmp_path, "t1", "stir")), "-o", str(tmp_path / "stir")]) == 0
    shutil.copy(tmp_path / "stir" / "study_STIR.nii.gz", out / "study_STIR.nii.gz")
    study = open_study(StudyRequest(path=out))
    assert study.fluid_contrast == "T2" and study.t2.provenance.series_number == 4
    assert "not used: STIR study_STIR.nii.gz" in study.choice["t2"]


# --- typing with the STIR bands ----------------------------------------------------------------------

#: STIR signal: normal (fatty) marrow dark, disc and fluid bright; lesion ratios to marrow by type
STIR_MARROW, STIR_DISC, STIR_BACKGROUND = 150.0, 600.0, 40.0
STIR_RATIO = {1: 2.4, 2: 0.5, 3: 0.45}  # oedema bright, fat suppressed, sclerosis dark
STIR_LESIONS = [
    PhantomLesion("L2", "superior", 6.0, types=("1",)),
    PhantomLesion("L3", "inferior", 5.0, types=("2",)),
    PhantomLesion("L4", "superior", 8.0, types=("1", "2"), split=0.6),
    PhantomLesion("S1", "superior", 12.0, types=("3",)),
]
STIR_TRUTH = {("L2", "superior"): "1", ("L3", "inferior"): "2", ("L4", "superior"): "1/2", ("S1", "superior"): "3"}
#: the same lesions typed with the T2 bands: the fat lesion (dark on STIR) matches no band
T2_BANDS_ON_STIR = {("L2", "superior"): "1", ("L3", "inferior"): "unclassified", ("L4", "superior"): "1",
                    ("S1", "superior"): "3"}


def stir_image(phantom: Phantom, seed: int = 1, noise: float = 0.02) -> ScalarImage:
    """A STIR of the phantom: its exact labels and lesion types, marrow dark, a smooth coil bias."""
    labels = phantom.labels.array
    stir = np.full(labels.shape, STIR_BACKGROUND, dtype=np.float64)
    stir[np.isin(labels, (1, 3))] = STIR_MARROW
    stir[labels == 2] = STIR_DISC
    for code, ratio in STIR_RATIO.items():
        stir[phantom.types == code] = STIR_MARROW * ratio
    affine = phantom.labels.affine
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in labels.shape], indexing="ij"), axis=-1)
    z = (ijk @ affine[:3, :3].T + affine[:3, 3])[..., 2]
    gain = 1.0 + 0.15 * z / np.abs(z).max()
    rng = np.random.default_rng(seed)
    stir = stir * gain * (1 + noise * rng.standard_normal(labels.shape))
    return ScalarImage(stir.astype(np.float32), affine, Provenance(weighting="STIR", plane="sagittal"))


@pytest.fixture(scope="module")
def stir_phantom() -> tuple[Phantom, ScalarImage]:
    phantom = make_phantom(STIR_LESIONS)
    return phantom, stir_image(phantom)


def _types(report) -> dict[tuple[str, str], str]:
    return {(les.level, les.endplate): les.type for les in report.lesions}


def test_stir_bands_type_the_phantom_and_t2_bands_would_not(stir_phantom) -> None:
    phantom, stir = stir_phantom
    lesion = phantom.labels.array == 3
    marrow = (phantom.labels.array == 1)
    # the image is STIR-like: marrow darker than disc, fat lesion darker than marrow, oedema brighter
    assert np.median(stir.array[marrow]) < 0.3 * np.median(stir.array[phantom.labels.array == 2])
    assert np.median(stir.array[phantom.types == 2]) < 0.6 * np.median(stir.array[marrow])

    report = analyze_images(phantom.labels, phantom.t1, stir)  # the weighting says STIR
    assert report.typing["fluid_contrast"] == "STIR" and report.typing["bands"] == "typing.stir_bands"
    assert _types(report) == STIR_TRUTH
    assert ((report.types.array > 0) == lesion).all()
    agree = (report.types.array[lesion] == phantom.types[lesion]).mean()
    assert agree > 0.97
    assert report.eligibility.eligible is True

    # the same images typed as if the STIR were a T2: the fat lesion is lost, the mix is half typed
    as_t2 = analyze_images(phantom.labels, phantom.t1, stir, fluid_contrast="T2")
    assert as_t2.typing["bands"] == "typing.bands"
    assert _types(as_t2) == T2_BANDS_ON_STIR
    fat = phantom.types == 2
    assert (as_t2.types.array[fat] == 4).mean() > 0.97  # unclassified


def test_stir_bands_come_from_the_configuration(stir_phantom) -> None:
    phantom, stir = stir_phantom
    config = AnalysisConfig.from_dict({"typing": {"stir_bands": {
        "1": {"t1": [0.0, 0.8], "stir": [3.0, None]},  # a bar above the phantom's oedema (2.4)
        "2": {"t1": [1.2, None], "stir": [0.0, 1.1]},
        "3": {"t1": [0.0, 0.8], "stir": [0.0, 0.85]}}}})
    report = analyze_images(phantom.labels, phantom.t1, stir, config=config)
    assert report.lesion("L2", "superior")[0].type == "unclassified"
    assert report.lesion("L3", "inferior")[0].type == "2"
    assert report_dict(report)["config"]["typing"]["stir_bands"]["1"] == {"t1": [0.0, 0.8], "stir": [3.0, None]}
    with pytest.raises(InputError, match=r"typing\.stir_bands\.2\.stir: lower bound"):
        AnalysisConfig.from_dict({"typing": {"stir_bands": {"2": {"t1": [1.2, None], "stir": [1.1, 0.5]}}}})
    with pytest.raises(InputError, match="needs exactly t1 and stir"):
        AnalysisConfig.from_dict({"typing": {"stir_bands": {"2": {"t1": [1.2, None], "t2": [0.0, 1.1]}}}})


def test_analyze_t1_and_stir_study_end_to_end(stir_phantom, tmp_path) -> None:
    phantom, stir = stir_phantom
    study = tmp_path / "study"
    spec = canary_study()
    write_mr_series(phantom.t1, study / "t1", SeriesSpec(series_number=3, **T1_SERIES), spec)
    write_mr_series(stir, study / "stir", SeriesSpec(series_number=6, **STIR_SERIES), spec)
    labels = tmp_path / "labels.nii.gz"
    save_nifti(phantom.labels, str(labels))
    out = tmp_path / "out"
    assert main(["analyze", str(study), "--labels", str(labels), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    assert report["typing"]["possible"] is True
    assert report["typing"]["fluid_contrast"] == "STIR"
    assert report["typing"]["bands"] == "typing.stir_bands"
    assert report["provenance"]["series"]["t2"]["series_number"] == 6
    assert report["provenance"]["series"]["t2"]["weighting"] == "STIR"
    assert "no usable sagittal T2" in report["provenance"]["series_choice"]["t2"]
    assert {(les["level"], les["endplate"]): les["type"] for les in report["lesions"]} == STIR_TRUTH
    assert report["eligibility"]["eligible"] is True
    assert (out / "qc.png").is_file() and (out / "labels_seg.dcm").is_file()
