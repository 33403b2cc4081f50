"""Trial-grade rules on phantoms with exact types and extents (issue 17).

* mixed 1/2 lesions: a thin type-1 band against the endplate over type-2 fat (and the reverse) is
  typed with both components, whatever its share of the voxels; scattered voxels and partial volume
  with the cortical endplate never make a lesion mixed;
* the extent definition behind the 10 % rule (the change's own span, or from the endplate surface)
  and the borderline flag within one voxel of 10 %;
* every written report validates against its schema, L6 and T13 included.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import AnalysisConfig, TypingConfig
from modicseg.analysis.modic_typing import lesion_type
from modicseg.analysis.pipeline import analyze_images
from modicseg.io.errors import InputError
from modicseg.report.schema import validate_report
from modicseg.report.writers import report_dict, write_report
from tests.test_analysis_phantoms import MARROW, TYPE_SIGNAL, PhantomLesion, make_phantom

DEPTH_MM = 10.0  # mixed lesions: 10 mm from the endplate (38 % of the 26 mm body)
#: (level, endplate, band thickness mm, type against the endplate, type deeper)
BANDS = [("T12", "superior", 1.0, "1", "2"), ("L1", "inferior", 1.0, "2", "1"),
         ("L2", "superior", 2.0, "1", "2"), ("L3", "inferior", 2.0, "2", "1"),
         ("L4", "superior", 3.0, "1", "2"), ("L5", "inferior", 3.0, "2", "1")]


def _found(report, level, endplate):
    [lesion] = report.lesion(level, endplate)
    return lesion


@pytest.fixture(scope="module")
def banded():
    lesions = [PhantomLesion(level, endplate, DEPTH_MM, types=(near, deep), split=band / DEPTH_MM)
               for level, endplate, band, near, deep in BANDS]
    phantom = make_phantom(lesions, seed=3)
    return phantom, analyze_images(phantom.labels, phantom.t1, phantom.t2)


@pytest.mark.parametrize(("level", "endplate", "band", "near", "deep"), BANDS)
def test_a_band_against_the_endplate_is_a_component_of_the_lesion(banded, level, endplate, band, near, deep):
    phantom, report = banded
    lesion = _found(report, level, endplate)
    assert {lesion.primary_type, lesion.secondary_type} == {"1", "2"}, (lesion.type, lesion.type_fractions)
    # the band's voxels keep their own type (no partial volume in the phantom: nothing to correct)
    voxels = report.lesion_map == lesion.id
    assert (report.types.array[voxels] == phantom.types[voxels]).mean() > 0.97
    assert lesion.type_fractions[near] == pytest.approx((phantom.types[voxels] == int(near)).mean(), abs=0.02)
    if band == 1.0:  # about 10 % of the voxels: the bare voxel share would not have named it
        assert lesion.type_fractions[near] < TypingConfig().secondary_min_fraction
        codes = report.types.array[voxels]
        assert lesion_type(codes, TypingConfig()).secondary_type is None


def test_thin_type1_bands_make_the_study_eligible(banded):
    _, report = banded
    assert report.eligibility.eligible is True
    assert sorted(report.eligibility.qualifying_lesions) == sorted(les.id for les in report.lesions)
    thin = _found(report, "T12", "superior")
    assert (thin.type, thin.secondary_type) == ("2/1", "1")
    assert any(reason.startswith(f"lesion {thin.id} (T12 superior endplate) qualifies: type 2/1 (secondary type 1)")
               for reason in report.eligibility.reasons)


# --- noise floor and partial volume ----------------------------------------------------------------

@pytest.fixture(scope="module")
def artefacts():
    """L1: type 1 under a 1 mm cortical endplate line; L2: type 2 with scattered pairs of type-1 voxels
    (17 % of its voxels); L4: type 2 whose endplate row is a partial-volume mix with dark cortex."""
    lesions = [PhantomLesion("L1", "superior", 8.0, types=("1",), gap_mm=1.0),
               PhantomLesion("L2", "superior", 8.0, types=("2",)),
               PhantomLesion("L4", "superior", 8.0, types=("2",))]
    phantom = make_phantom(lesions, seed=4)
    labels = phantom.labels.array
    t1, t2 = phantom.t1.array, phantom.t2.array
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in labels.shape], indexing="ij")
    lesion = labels == 3
    parts, _ = ndimage.label(lesion)
    centres = ndimage.center_of_mass(lesion, parts, range(1, parts.max() + 1))
    order = np.argsort([c[1] for c in centres])  # j grows inferior: L1, L2, L4
    l2 = parts == order[1] + 1
    l4 = parts == order[2] + 1
    pairs = l2 & (ii % 3 < 2) & (jj % 2 == 0) & (kk % 2 == 0)
    t1[pairs] *= TYPE_SIGNAL["1"][0] / TYPE_SIGNAL["2"][0]
    t2[pairs] *= TYPE_SIGNAL["1"][1] / TYPE_SIGNAL["2"][1]
    rim = l4 & ndimage.binary_dilation(labels == 2)  # the lesion's voxels next to the disc
    t1[rim] = 0.4 * t1[rim] + 0.6 * 0.1 * MARROW[0]  # 60 % dark cortex: reads as type 3 (T1 and T2 low)
    t2[rim] = 0.4 * t2[rim] + 0.6 * 0.1 * MARROW[1]
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2)
    return phantom, report, pairs, rim


def test_scattered_voxels_never_make_a_lesion_mixed(artefacts):
    _, report, pairs, _ = artefacts
    lesion = _found(report, "L2", "superior")
    codes = report.types.array[report.lesion_map == lesion.id]
    share = lesion.type_fractions["1"]
    assert share > TypingConfig().secondary_min_fraction  # the bare voxel share would call it 2/1
    assert lesion_type(codes, TypingConfig()).type == "2/1"
    assert lesion.type == "2", lesion.type_fractions
    assert (report.types.array[pairs] == 1).mean() > 0.9  # the voxels themselves are still typed 1


def test_partial_volume_with_the_cortex_does_not_make_a_lesion_mixed(artefacts):
    phantom, report, _, rim = artefacts
    lesion = _found(report, "L4", "superior")
    assert lesion.type == "2", lesion.type_fractions
    assert (report.types.array[rim] == 2).mean() > 0.9  # rim voxels took the deeper voxels' type
    # without the rim rule the dark row is a coherent type-3 layer over the whole endplate: "2/3"
    config = AnalysisConfig()
    config.typing.rim_mm = 0.0
    plain = analyze_images(phantom.labels, phantom.t1, phantom.t2, config=config)
    assert _found(plain, "L4", "superior").type == "2/3"


# --- extent definition and borderline ----------------------------------------------------------------

def test_extent_of_the_change_leaves_the_cortical_endplate_out(artefacts):
    phantom, report, _, _ = artefacts
    lesion = _found(report, "L1", "superior")
    height = phantom.heights["L1"]
    assert lesion.extent_from_endplate_mm == pytest.approx(8.0, abs=0.5)
    assert lesion.extent_of_change_mm == pytest.approx(7.0, abs=0.5)
    assert lesion.extent_from_endplate_mm - lesion.extent_of_change_mm == pytest.approx(1.0, abs=0.25)
    assert lesion.craniocaudal_extent_mm == lesion.extent_of_change_mm  # the default definition
    assert lesion.height_fraction == pytest.approx(lesion.extent_of_change_mm / height, abs=0.01)
    data = report_dict(report)
    assert data["measures"]["extent_definition"] == "change"
    assert data["eligibility"]["criteria"]["extent_definition"] == "change"
    config = AnalysisConfig.from_dict({"grading": {"extent_definition": "endplate"}})
    other = _found(analyze_images(phantom.labels, phantom.t1, phantom.t2, config=config), "L1", "superior")
    assert other.craniocaudal_extent_mm == lesion.extent_from_endplate_mm
    assert other.height_fraction == pytest.approx(lesion.extent_from_endplate_mm / height, abs=0.01)
    with pytest.raises(InputError, match="extent_definition"):
        AnalysisConfig.from_dict({"grading": {"extent_definition": "outer"}})


@pytest.fixture(scope="module")
def near_threshold():
    """L3: type 1 at 10 % of the body height (2.6 mm of 26 mm); L5: type 2 at 23 %; S1: type 1 at 4 %."""
    lesions = [PhantomLesion("L3", "inferior", 2.6, types=("1",)), PhantomLesion("L5", "superior", 6.0, types=("2",)),
               PhantomLesion("S1", "superior", 1.0, radius_ap_mm=10.0, radius_lr_mm=12.0, types=("1",))]
    phantom = make_phantom(lesions, seed=5)
    return phantom, analyze_images(phantom.labels, phantom.t1, phantom.t2)


def test_a_lesion_within_one_voxel_of_ten_percent_is_borderline(near_threshold):
    phantom, report = near_threshold
    l3, l5 = _found(report, "L3", "inferior"), _found(report, "L5", "superior")
    vertebra = next(v for v in report.vertebrae if v.level == "L3")
    voxel = 2 * geo.half_extent_along(phantom.labels.affine, np.array(vertebra.axis_ras)) / vertebra.height_mm
    assert l3.height_fraction_uncertainty == pytest.approx(voxel, rel=1e-6)
    assert 0.025 < voxel < 0.045  # one 0.8 mm voxel of a 26 mm body, the axis a little tilted
    assert abs(l3.height_fraction - 0.10) < voxel and l3.borderline
    assert not l5.borderline and l5.type == "2"
    decision = report.eligibility
    assert decision.eligible is None and decision.status == "borderline"
    assert decision.borderline_lesions == [l3.id] and decision.qualifying_lesions == []
    assert decision.reasons[0].startswith(f"borderline: review lesion {l3.id} (L3 inferior endplate)")
    data = report_dict(report)
    assert data["eligibility"]["status"] == "borderline" and data["eligibility"]["borderline_lesions"] == [l3.id]
    validate_report(data)
    # the bare rule (no margin) says yes or no by the measured fraction alone
    config = AnalysisConfig.from_dict({"eligibility": {"borderline_voxels": 0}})
    bare = analyze_images(phantom.labels, phantom.t1, phantom.t2, config=config).eligibility
    assert bare.eligible is (l3.height_fraction >= 0.10) and bare.status in ("eligible", "not eligible")


def test_a_lesion_well_away_from_the_threshold_is_not_borderline(near_threshold, artefacts):
    _, report = near_threshold
    small = _found(report, "S1", "superior")
    assert small.height_fraction < 0.10 - small.height_fraction_uncertainty and not small.borderline
    assert f"lesion {small.id} (S1 superior endplate) does not qualify: height" in " ".join(report.eligibility.reasons)
    _, clear, _, _ = artefacts  # L1: type 1 at 27 %
    assert clear.eligibility.eligible is True and clear.eligibility.status == "eligible"
    assert clear.eligibility.borderline_lesions == []


# --- every report validates, L6 included ----------------------------------------------------------------

def test_a_six_lumbar_report_is_written_and_validates(tmp_path):
    # the phantom's sixth body (its "L5") is L6 in a spine counted with six lumbar vertebrae
    phantom = make_phantom([PhantomLesion("L5", "inferior", 6.0, types=("1",))], seed=6)
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2, lumbar_count=6)
    assert [v.level for v in report.vertebrae] == ["L1", "L2", "L3", "L4", "L5", "L6", "S1"]
    write_report(report, tmp_path / "out", qc=False, dicom_seg=False)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    validate_report(data)
    assert data["schema_version"] == "1.3.0" and [les["level"] for les in data["lesions"]] == ["L6"]
    assert data["eligibility"]["eligible"] is True and "L6" in data["eligibility"]["criteria"]["levels"]


def test_a_thirteen_thoracic_report_names_t13_and_validates(tmp_path):
    # the phantom's top body (its "T12", above L1) is T13 in a spine counted with 13 thoracic vertebrae
    phantom = make_phantom([PhantomLesion("T12", "inferior", 6.0, types=("1",))], seed=8)
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2, thoracic_count=13)
    assert [v.level for v in report.vertebrae] == ["T13", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert "levels named for a spine with 13 thoracic vertebrae, counted up from S1" in report.warnings
    write_report(report, tmp_path / "out", qc=False, dicom_seg=False)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    validate_report(data)
    assert [les["level"] for les in data["lesions"]] == ["T13"]
    assert data["vertebrae"][0]["level"] == "T13"
    # T13 lies between T12 and L1: inside Th12-S1, so the default trial levels include it
    assert data["eligibility"]["eligible"] is True and "T13" in data["eligibility"]["criteria"]["levels"]
    # the same from the settings (vertebrae.thoracic_count), and a count that does not exist is refused
    config = AnalysisConfig.from_dict({"vertebrae": {"thoracic_count": 13}})
    same = analyze_images(phantom.labels, phantom.t1, phantom.t2, config=config)
    assert [v.level for v in same.vertebrae] == [v.level for v in report.vertebrae]
    with pytest.raises(InputError, match=r"vertebrae\.thoracic_count"):
        AnalysisConfig.from_dict({"vertebrae": {"thoracic_count": 14}})


def test_analyze_thoracic_count_13_on_the_command_line(tmp_path, capsys):
    from modicseg.cli import main
    from modicseg.core.convert import save_nifti

    phantom = make_phantom([PhantomLesion("T12", "inferior", 6.0, types=("1",))], seed=8)
    for name, image in (("t1", phantom.t1), ("t2", phantom.t2), ("labels", phantom.labels)):
        save_nifti(image, str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "out"
    assert main(["analyze", "--t1", str(tmp_path / "t1.nii.gz"), "--t2", str(tmp_path / "t2.nii.gz"), "--labels",
                 str(tmp_path / "labels.nii.gz"), "-o", str(out), "--thoracic-count", "13", "--no-qc",
                 "--no-seg"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("vertebrae: T13 ") and "  lesion 1: T13 inferior" in printed
    assert "warning: levels named for a spine with 13 thoracic vertebrae, counted up from S1" in printed
    validate_report(json.loads((out / "report.json").read_text()))


def test_the_suite_refuses_a_report_that_breaks_its_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    phantom = make_phantom([PhantomLesion("L4", "inferior", 6.0, types=("1",))], seed=7)
    report = analyze_images(phantom.labels, phantom.t1, phantom.t2)
    report.lesions[0].type = "1/3"  # not a Modic mix, and disagrees with primary/secondary
    with pytest.raises(jsonschema.ValidationError):
        write_report(report, tmp_path / "out", qc=False, dicom_seg=False)
    assert not (tmp_path / "out").exists()  # all or nothing


def test_the_new_rules_are_configured_in_mm_and_checked():
    typing = AnalysisConfig().typing
    assert (typing.secondary_noise_floor_mm3, typing.secondary_min_volume_mm3,
            typing.secondary_min_footprint_fraction) == (10.0, 20.0, 0.25)
    config = AnalysisConfig.from_dict({"typing": {"secondary_min_volume_mm3": 50, "partial_volume_tolerance": 0.2},
                                       "eligibility": {"borderline_voxels": 2}})
    assert config.typing.secondary_min_volume_mm3 == 50.0 and config.eligibility.borderline_voxels == 2.0
    for bad in ({"typing": {"secondary_noise_floor_mm3": 30.0}},  # above the component bar
                {"typing": {"secondary_min_footprint_fraction": 0}},
                {"typing": {"partial_volume_tolerance": -0.1}},
                {"eligibility": {"borderline_voxels": -1}}):
        with pytest.raises(InputError):
            AnalysisConfig.from_dict(bad)
