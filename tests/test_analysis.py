"""Analysis of label maps: vertebrae, levels, lesions, typing, measures, eligibility (no network)."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from scipy import ndimage

from modicseg.analysis.config import AnalysisConfig, EligibilityConfig, GradingConfig, TypingConfig, load_config
from modicseg.analysis.eligibility import assess
from modicseg.analysis.levels import name_levels, parse_level
from modicseg.analysis.measures import extent_grade
from modicseg.analysis.modic_typing import lesion_type
from modicseg.analysis.pipeline import analyze_images
from modicseg.analysis.vertebrae import find_vertebrae
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import UNCLASSIFIED_CODE
from modicseg.io.errors import InputError
from tests.conftest import REAL_SPINE, REPO
from tests.test_analysis_phantoms import BACKGROUND, DEFAULT_LESIONS, LEVELS, PhantomLesion, make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(DEFAULT_LESIONS)


@pytest.fixture(scope="module")
def phantom_report(phantom):
    return analyze_images(phantom.labels, phantom.t1, phantom.t2)


# --- levels, config, small rules ----------------------------------------------------------------

def test_level_names_anchor_at_lowest_and_count_up() -> None:
    assert name_levels(7) == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert name_levels(3, "L5") == ["L3", "L4", "L5"]
    assert name_levels(2, "Th12") == ["T11", "T12"]
    assert parse_level("th12") == "T12" and parse_level(" l5 ") == "L5"
    with pytest.raises(InputError):
        parse_level("L7")
    # transitional spines: six lumbar vertebrae (lumbarised S1) or four (sacralised L5)
    assert name_levels(4, lumbar_count=6) == ["L4", "L5", "L6", "S1"]
    assert name_levels(4, lumbar_count=4) == ["L2", "L3", "L4", "S1"]
    with pytest.raises(InputError):
        name_levels(3, "L6")  # no L6 in a five-lumbar spine
    with pytest.raises(InputError):
        name_levels(3, lumbar_count=7)
    # thirteen thoracic vertebrae: T13 between T12 and L1
    assert parse_level("Th13") == "T13" and parse_level("t13") == "T13"
    assert name_levels(8, thoracic_count=13) == ["T12", "T13", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert name_levels(3, "L1", lumbar_count=6, thoracic_count=13) == ["T12", "T13", "L1"]
    with pytest.raises(InputError, match="T13 does not exist in a spine with 12 thoracic"):
        name_levels(3, "T13")  # no T13 in a spine with 12 thoracic vertebrae
    with pytest.raises(InputError):
        name_levels(3, thoracic_count=11)


def test_config_file_matches_defaults() -> None:
    data = yaml.safe_load((REPO / "configs" / "analysis.yaml").read_text())
    assert AnalysisConfig.from_dict(data).to_dict() == AnalysisConfig().to_dict()
    assert load_config(REPO / "configs" / "analysis.yaml") == load_config(None)


def test_config_refuses_unknown_keys_and_bad_values(tmp_path) -> None:
    with pytest.raises(InputError, match=r"unknown key 'lesions\.min_volume'"):
        AnalysisConfig.from_dict({"lesions": {"min_volume": 3}})
    with pytest.raises(InputError, match="lower bound"):
        AnalysisConfig.from_dict({"typing": {"bands": {"1": {"t1": [0.9, 0.8], "t2": [1.2, None]}}}})
    path = tmp_path / "a.yaml"
    path.write_text("eligibility:\n  min_height_fraction: 0.2\n  levels: [L1, L5]\n")
    cfg = load_config(path)
    assert cfg.eligibility.min_height_fraction == 0.2 and cfg.eligibility.levels == ("L1", "L5")
    assert cfg.typing.secondary_min_fraction == AnalysisConfig().typing.secondary_min_fraction


def test_udby_grade_boundaries() -> None:
    cfg = GradingConfig()
    assert [extent_grade(f, cfg) for f in (0.0, 0.249, 0.25, 0.5, 0.501, 1.0)] == ["A", "A", "B", "B", "C", "C"]


def test_lesion_type_primary_secondary_and_forbidden_mixes() -> None:
    cfg = TypingConfig()
    codes = np.array([1] * 70 + [2] * 25 + [3] * 5 + [UNCLASSIFIED_CODE] * 10)
    t = lesion_type(codes, cfg)
    assert (t.type, t.primary_type, t.secondary_type) == ("1/2", "1", "2")
    assert t.type_fractions["1"] == pytest.approx(0.7) and t.unclassified_fraction == pytest.approx(10 / 110)
    assert lesion_type(np.array([2] * 60 + [1] * 40), cfg).type == "2/1"
    assert lesion_type(np.array([1] * 88 + [2] * 12), cfg).type == "1"  # below the secondary share
    assert lesion_type(np.array([1] * 60 + [3] * 40), cfg).type == "1"  # 1/3 is not a Modic mix
    assert lesion_type(np.array([3] * 60 + [2] * 40), cfg).type == "3/2"
    assert lesion_type(np.array([UNCLASSIFIED_CODE] * 5), cfg).type == "unclassified"


def _lesion(id_, level, type_, height, endplate="inferior"):
    parts = type_.split("/")
    return SimpleNamespace(id=id_, level=level, endplate=endplate, type=type_, primary_type=parts[0],
                           secondary_type=parts[1] if len(parts) > 1 else None, height_fraction=height)


def test_eligibility_rules_and_reasons() -> None:
    cfg = EligibilityConfig()
    yes = assess([_lesion(1, "L4", "2/1", 0.10)], cfg)
    assert yes.eligible is True and yes.qualifying_lesions == [1] and "secondary type 1" in yes.reasons[0]
    small = assess([_lesion(1, "L4", "1", 0.099)], cfg)
    assert small.eligible is False and "height 10 % < 10 %" in small.reasons[0]
    high = assess([_lesion(1, "T11", "1", 0.5)], cfg)
    assert high.eligible is False and "outside T12–S1" in high.reasons[0]
    wrong_type = assess([_lesion(1, "L5", "2/3", 0.5)], cfg)
    assert wrong_type.eligible is False and "no type-1 component" in wrong_type.reasons[0]
    assert assess([], cfg).eligible is False
    untyped = SimpleNamespace(id=1, level="L5", endplate="superior", type="unclassified", primary_type=None,
                              secondary_type=None, height_fraction=0.4)
    undecided = assess([untyped], cfg, typing_possible=False, typing_note="only T2 available")
    assert undecided.eligible is None and "only T2 available" in undecided.reasons[0]
    # both contrasts present, but the lesion's signal matches no type: say so, not "typing was not possible"
    unclassified = assess([untyped], cfg, typing_possible=True)
    assert unclassified.eligible is None
    assert "lesion 1 (L5 superior endplate) qualifies" in unclassified.reasons[0]
    assert "matches no Modic type" in unclassified.reasons[0] and "not possible" not in unclassified.reasons[0]


# --- phantom with exact geometry ---------------------------------------------------------------

def test_phantom_vertebrae_levels_heights_axes(phantom, phantom_report) -> None:
    report = phantom_report
    assert [v.level for v in report.vertebrae] == list(LEVELS)
    for v in report.vertebrae:
        assert abs(v.height_mm - phantom.heights[v.level]) < 1.0, v
        angle = np.degrees(np.arccos(np.clip(np.dot(v.axis_ras, phantom.axes[v.level]), -1, 1)))
        assert angle < 3.0, (v.level, angle)
        assert v.axis_method == "endplates"
    assert not report.warnings


def test_phantom_lesions_placed_typed_and_measured(phantom, phantom_report) -> None:
    report = phantom_report
    assert len(report.lesions) == len(DEFAULT_LESIONS)
    expected_types = {("L4", "inferior"): "1", ("L5", "superior"): "1/2", ("L2", "superior"): "2",
                      ("S1", "superior"): "3/2"}
    for truth in DEFAULT_LESIONS:
        [found] = report.lesion(truth.level, truth.endplate)
        assert found.type == expected_types[(truth.level, truth.endplate)]
        fraction = truth.depth_mm / phantom.heights[truth.level]
        assert abs(found.height_fraction - fraction) <= 0.03, (truth, found.height_fraction)
        volume = np.pi * truth.radius_ap_mm * truth.radius_lr_mm * truth.depth_mm
        assert abs(found.volume_mm3 / volume - 1) <= 0.15, (truth, found.volume_mm3, volume)
        assert 0 < found.fraction_of_vertebral_volume < 0.2
    l5 = report.lesion("L5", "superior")[0]
    assert l5.type_fractions["1"] == pytest.approx(0.6, abs=0.08)
    assert report.eligibility.eligible is True
    assert sorted(report.eligibility.qualifying_lesions) == sorted(
        [report.lesion("L4", "inferior")[0].id, l5.id])
    # the per-voxel type map covers exactly the lesions, with the phantom's types
    lesion_voxels = report.labels.array == 3
    assert ((report.types.array > 0) == lesion_voxels).all()
    agree = (report.types.array[lesion_voxels] == phantom.types[lesion_voxels]).mean()
    assert agree > 0.97


def test_touching_bodies_are_split_at_the_disc() -> None:
    ph = make_phantom([], touching=("L2", "L4"))
    body = np.isin(ph.labels.array, (1, 3))
    from scipy import ndimage

    assert ndimage.label(body)[1] == len(LEVELS) - 2  # the bridges really join the bodies
    vset = find_vertebrae(ph.labels.array, ph.labels.affine, AnalysisConfig().vertebrae)
    assert len(vset.vertebrae) == len(LEVELS)
    heights = [v.height_mm for v in vset.vertebrae]
    assert max(abs(h - 26.0) for h in heights) < 1.5, heights
    assert any("split" in w for w in vset.warnings)


def test_disc_voxels_inside_a_body_do_not_split_it() -> None:
    """A few disc voxels that a network puts in a degenerate or fractured body must not cut it in two
    (that would add a vertebra and shift every level name counted up from S1)."""
    ph = make_phantom([])
    labels = ph.labels.array.copy()
    cfg = AnalysisConfig().vertebrae
    l3 = find_vertebrae(labels, ph.labels.affine, cfg).vertebrae[LEVELS.index("L3")]
    ijk = np.argwhere(labels == 1)
    rel = ph.labels.world_coordinates(ijk) - l3.centre_ras
    along = rel @ l3.axis_ras
    across = np.linalg.norm(rel - along[:, None] * l3.axis_ras, axis=1)
    blob = ijk[(np.abs(along) < 1.5) & (across < 8.0)]  # a flat patch across the body's middle
    labels[tuple(blob.T)] = 2
    voxel_mm3 = abs(np.linalg.det(ph.labels.affine[:3, :3]))
    disc_mm3 = (ph.labels.array == 2).sum() * voxel_mm3 / (len(LEVELS) - 1)
    assert cfg.min_disc_volume_mm3 < len(blob) * voxel_mm3 < cfg.split_min_disc_fraction * disc_mm3
    vset = find_vertebrae(labels, ph.labels.affine, cfg)
    assert name_levels(len(vset.vertebrae)) == list(LEVELS)
    centres = [round(float(v.centre_ras[2])) for v in vset.vertebrae]
    assert centres[LEVELS.index("L3")] == round(float(l3.centre_ras[2]))


def test_a_sliver_of_sacrum_below_s1_does_not_shift_the_names() -> None:
    """A network's small piece of the second sacral segment is not a vertebra, unless the field of view cuts it."""
    ph = make_phantom([], levels=(*LEVELS, "S2"))
    labels = ph.labels.array.copy()
    cfg = AnalysisConfig().vertebrae
    vset = find_vertebrae(labels, ph.labels.affine, cfg)
    s2 = vset.vertebrae[-1]
    ijk = np.argwhere(vset.instances == s2.label)
    far = np.linalg.norm(ph.labels.world_coordinates(ijk) - s2.centre_ras, axis=1) > 9.5
    labels[tuple(ijk[far].T)] = 0  # what is left: a ball of about 3600 mm³, an eighth of a body
    discs, count = ndimage.label(labels == 2)
    labels[discs == count] = 0  # no disc between the sliver and S1 (the discs are numbered top to bottom)
    sliver = np.argwhere(np.isin(labels, (1, 3)) & (vset.instances == s2.label))
    voxel_mm3 = abs(np.linalg.det(ph.labels.affine[:3, :3]))
    assert cfg.min_volume_mm3 < len(sliver) * voxel_mm3 < cfg.min_volume_fraction * s2.volume_mm3
    assert sliver.min(axis=0)[1] > 0 and sliver.max(axis=0)[1] < labels.shape[1] - 1  # inside the field of view
    kept = find_vertebrae(labels, ph.labels.affine, cfg)
    assert len(kept.vertebrae) == len(LEVELS)
    assert max(np.linalg.norm(v.centre_ras - w.centre_ras) for v, w in
               zip(kept.vertebrae, vset.vertebrae[:-1], strict=True)) < 0.5
    assert any("median body" in w for w in kept.warnings)
    # the same piece with its disc above, cut by the lower edge of the field of view, may be a body the
    # scan barely caught: kept
    labels[discs == count] = 2
    j = int(np.median(sliver[:, 1]))
    cut = find_vertebrae(labels[:, : j + 1], ph.labels.affine, cfg)
    assert len(cut.vertebrae) == len(LEVELS) + 1 and cut.vertebrae[-1].truncated


def _phantom_with_s2():
    """A phantom down to S2, its vertebrae, and the S1-S2 disc's voxels (the discs are numbered top to bottom)."""
    ph = make_phantom([], levels=(*LEVELS, "S2"))
    vset = find_vertebrae(ph.labels.array, ph.labels.affine, AnalysisConfig().vertebrae)
    discs, count = ndimage.label(ph.labels.array == 2)
    return ph, vset, np.argwhere(discs == count)


def test_bone_behind_and_below_s1_without_a_disc_is_not_a_vertebra() -> None:
    """A body-sized bone part behind and below S1 with no disc between (a network labelled two on a
    real T1 scan) would become "S1" and shift every name; a body right below S1 whose disc the
    segmentation missed is kept."""
    ph, whole, last_disc = _phantom_with_s2()
    cfg = AnalysisConfig()
    labels = ph.labels.array.copy()
    labels[tuple(last_disc.T)] = 0  # no disc between S1 and the part below it
    missed_disc = find_vertebrae(labels, ph.labels.affine, cfg.vertebrae)
    assert len(missed_disc.vertebrae) == len(LEVELS) + 1  # straight below S1: kept
    s1, s2 = whole.vertebrae[-2], whole.vertebrae[-1]
    part = np.argwhere(whole.instances == s2.label)
    labels[tuple(part.T)] = 0
    spacing = np.sqrt((ph.labels.affine[:3, :3] ** 2).sum(axis=0))
    room = ((0, 60), (0, 0), (0, 0))  # 48 mm more behind the spine (i runs posterior; the affine is unchanged)
    labels = np.pad(labels, room)
    t1, t2 = (ScalarImage(np.pad(img.array, room, constant_values=value), img.affine)
              for img, value in ((ph.t1, BACKGROUND[0]), (ph.t2, BACKGROUND[1])))
    moved = part + np.round(np.array([40.0, -22.0, 0.0]) / spacing).astype(int)  # 40 mm back, 22 mm up (i, j)
    assert (moved >= 0).all() and (moved < labels.shape).all() and (labels[tuple(moved.T)] == 0).all()
    labels[tuple(moved.T)] = 1
    step = ph.labels.world_coordinates(moved).mean(axis=0) - s1.centre_ras
    assert abs(step[1]) > 2 * abs(step[2])  # the premise: mostly behind S1, not below it
    report = analyze_images(LabelImage(labels, ph.labels.affine), t1, t2, config=cfg)
    assert [v.level for v in report.vertebrae] == list(LEVELS)
    assert np.linalg.norm(np.array(report.vertebrae[-1].centre_ras) - s1.centre_ras) < 0.5
    assert any("1 bone part(s) behind and below the lowest body" in w for w in report.warnings)
    # masks that label bodies only (no discs at all) keep every body
    bodies_only = np.where(labels == 2, 0, labels)
    assert len(find_vertebrae(bodies_only, ph.labels.affine, cfg.vertebrae).vertebrae) == len(LEVELS) + 1


def test_a_rudimentary_disc_under_s1_raises_no_missing_sacrum_warning() -> None:
    """A small S1-S2 disc remnant under S1 is no sign that the sacrum is out of view; a full disc is."""
    ph, whole, last_disc = _phantom_with_s2()
    cfg = AnalysisConfig()
    labels = ph.labels.array.copy()
    labels[whole.instances == whole.vertebrae[-1].label] = 0  # S2 not labelled, as in the training labels
    full = analyze_images(LabelImage(labels, ph.labels.affine), ph.t1, ph.t2, config=cfg)
    assert any("disc lies below" in w for w in full.warnings)
    spacing = np.sqrt((ph.labels.affine[:3, :3] ** 2).sum(axis=0))
    remnant = np.linalg.norm((last_disc - last_disc.mean(axis=0)) * spacing, axis=1) < 4.0
    labels[tuple(last_disc[~remnant].T)] = 0
    remnant_mm3 = remnant.sum() * float(np.prod(spacing))
    disc_mm3 = (ph.labels.array == 2).sum() * float(np.prod(spacing)) / len(LEVELS)
    assert cfg.vertebrae.min_disc_volume_mm3 < remnant_mm3 < cfg.vertebrae.split_min_disc_fraction * disc_mm3
    report = analyze_images(LabelImage(labels, ph.labels.affine), ph.t1, ph.t2, config=cfg)
    assert [v.level for v in report.vertebrae] == list(LEVELS)
    assert not any("disc lies below" in w for w in report.warnings)


def test_lesion_across_a_disc_is_two_lesions_and_small_ones_are_dropped() -> None:
    ph = make_phantom([PhantomLesion("L4", "inferior", 6.0), PhantomLesion("L5", "superior", 6.0),
                       PhantomLesion("L2", "superior", 1.0, radius_ap_mm=2.0, radius_lr_mm=2.0)])
    labels = ph.labels.array.copy()
    # join the two lesions through the disc between L4 and L5 with a column of lesion voxels
    vset = find_vertebrae(labels, ph.labels.affine, AnalysisConfig().vertebrae)
    l4, l5 = vset.vertebrae[LEVELS.index("L4")], vset.vertebrae[LEVELS.index("L5")]
    disc = np.argwhere(labels == 2)
    rel = ph.labels.world_coordinates(disc) - l5.centre_ras
    direction = (l4.centre_ras - l5.centre_ras) / np.linalg.norm(l4.centre_ras - l5.centre_ras)
    along = rel @ direction
    across = np.linalg.norm(rel - along[:, None] * direction, axis=1)
    bridge = disc[(along > 0) & (along < np.linalg.norm(l4.centre_ras - l5.centre_ras)) & (across < 4)]
    assert len(bridge) > 10
    labels[tuple(bridge.T)] = 3
    from scipy import ndimage

    assert ndimage.label(labels == 3, structure=np.ones((3, 3, 3)))[1] == 2  # L4+L5 joined, and L2
    image = LabelImage(labels, ph.labels.affine)
    cfg = AnalysisConfig()
    cfg.lesions.min_volume_mm3 = 30.0
    report = analyze_images(image, ph.t1, ph.t2, config=cfg)
    places = sorted((les.level, les.endplate) for les in report.lesions)
    assert ("L4", "inferior") in places and ("L5", "superior") in places
    assert all(level != "L2" for level, _ in places)
    assert any("dropped" in w for w in report.warnings)
    # dropped lesion voxels are body voxels in the written label map
    assert (report.labels.array[ph.labels.array == 3] != 0).all()


def test_lesion_voxels_far_from_every_body_are_not_placed_on_one() -> None:
    """Lesion voxels on a fragment that is not a vertebra (here a ball in front of L3) must not become
    a lesion of the nearest body; those just outside a body still join it."""
    ph = make_phantom([PhantomLesion("L4", "inferior", 6.0)])
    labels = ph.labels.array.copy()
    cfg = AnalysisConfig()
    l3 = find_vertebrae(labels, ph.labels.affine, cfg.vertebrae).vertebrae[LEVELS.index("L3")]
    centre = l3.centre_ras + (l3.anterior_mm + 20.0) * l3.ap_axis_ras  # 20 mm in front of L3's anterior wall
    ijk = np.argwhere(labels == 0)
    ball = ijk[np.linalg.norm(ph.labels.world_coordinates(ijk) - centre, axis=1) < 4.0]
    assert len(ball) * abs(np.linalg.det(ph.labels.affine[:3, :3])) > 2 * cfg.lesions.min_volume_mm3
    labels[tuple(ball.T)] = 3
    report = analyze_images(LabelImage(labels, ph.labels.affine), ph.t1, ph.t2, config=cfg)
    assert [(les.level, les.endplate) for les in report.lesions] == [("L4", "inferior")]
    assert any(f"{len(ball)} lesion voxel(s) more than 8 mm" in w for w in report.warnings)
    # with a reach beyond the ball's distance it joins L3, as every lesion voxel outside a body did before
    cfg.lesions.max_distance_mm = 30.0
    wide = analyze_images(LabelImage(labels, ph.labels.affine), ph.t1, ph.t2, config=cfg)
    assert any(les.level == "L3" for les in wide.lesions)


def test_single_contrast_reports_geometry_without_types(phantom) -> None:
    report = analyze_images(phantom.labels, t1=None, t2=phantom.t2)
    assert report.typing["possible"] is False and "T2" in report.typing["reason"]
    assert report.lesions and all(les.type == "unclassified" and les.primary_type is None for les in report.lesions)
    assert all(les.height_fraction > 0 for les in report.lesions)
    assert report.eligibility.eligible is None
    assert set(np.unique(report.types.array)) <= {0, UNCLASSIFIED_CODE}


def test_lowest_level_override_and_missing_sacrum_warning() -> None:
    ph = make_phantom([], levels=("L1", "L2", "L3", "L4", "L5"))
    report = analyze_images(ph.labels, ph.t1, ph.t2, lowest_level="L5")
    assert [v.level for v in report.vertebrae] == ["L1", "L2", "L3", "L4", "L5"]
    six = analyze_images(ph.labels, ph.t1, ph.t2, lumbar_count=6)
    assert [v.level for v in six.vertebrae] == ["L3", "L4", "L5", "L6", "S1"]
    assert any("6 lumbar vertebrae" in w for w in six.warnings)
    # a field of view that cuts the lowest body: the name S1 is doubtful
    last = report.vertebrae[-1]
    j = int(ph.labels.voxel_coordinates(np.array([last.centre_ras]))[0][1])
    crop = (slice(None), slice(0, j), slice(None))
    images = [type(img)(img.array[crop], img.affine) for img in (ph.labels, ph.t1, ph.t2)]
    cut = analyze_images(*images)
    assert cut.vertebrae[-1].level == "S1"
    assert any("lowest vertebra" in w for w in cut.warnings)


# --- real anatomy --------------------------------------------------------------------------------

REAL_CASES = ["vb1_06", "vb1_07", "vb1_15"]


@functools.cache
def _real_case(case: str):
    from modicseg.core.convert import load_nifti

    folder = REAL_SPINE / case
    if not (folder / "vertebrae.nii.gz").is_file():
        pytest.skip(f"{folder} missing")
    info = json.loads((folder / "case.json").read_text())
    source = load_nifti(folder / "vertebrae.nii.gz", LabelImage)
    vset = find_vertebrae((source.array > 0).astype(np.uint8), source.affine, AnalysisConfig().vertebrae)
    return info, source, vset


@pytest.mark.parametrize("case", REAL_CASES)
def test_real_spine_levels_and_heights(case, shared_dir) -> None:
    info, source, vset = _real_case(case)
    names = name_levels(len(vset.vertebrae), "S1")
    assert names == info["levels_superior_to_inferior"]
    for vertebra, name in zip(vset.vertebrae, names, strict=True):
        values, counts = np.unique(source.array[vset.instances == vertebra.label], return_counts=True)
        assert info["levels"][str(values[np.argmax(counts)])] == name
        assert 14.0 < vertebra.height_mm < 32.0, (name, vertebra.height_mm)
        assert abs(vertebra.axis_ras[2]) > 0.7  # cranio-caudal, not antero-posterior


def test_real_spine_same_subject_heights_agree(shared_dir) -> None:
    # same subject, same grid, two manual masks
    heights = [[v.height_mm for v in _real_case(case)[2].vertebrae] for case in ("vb1_06", "vb1_07")]
    assert np.median(np.abs(np.subtract(*heights))) < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_garbage_label_maps_do_not_break_the_analysis(seed) -> None:
    """Random blobby label maps (what an untrained or confused network gives): no crash, valid report."""
    from scipy import ndimage

    from modicseg.report.schema import validate_report
    from modicseg.report.writers import report_dict
    from tests.dicom_factory import sagittal_affine

    rng = np.random.default_rng(seed)
    shape = (60, 80, 9)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(3, 3, 1))
    labels = np.digitize(field, np.quantile(field, [0.4, 0.65, 0.85])).astype(np.uint8)
    affine = sagittal_affine(shape, in_plane=0.9, step=4.0)
    image = LabelImage(labels, affine)
    from modicseg.core.image import ScalarImage

    t1 = ScalarImage(rng.uniform(50, 500, shape).astype(np.float32), affine)
    t2 = ScalarImage(rng.uniform(50, 500, shape).astype(np.float32), affine)
    cfg = AnalysisConfig()
    cfg.vertebrae.min_volume_mm3 = 50.0
    report = analyze_images(image, t1, t2, config=cfg)
    validate_report(report_dict(report))


def test_level_agreement_counts_bodies_named_like_the_reference() -> None:
    from modicseg.analysis.level_agreement import level_agreement

    ph = make_phantom([])
    vset = find_vertebrae(ph.labels.array, ph.labels.affine, AnalysisConfig().vertebrae)
    reference = vset.instances * 10  # instance values need not be level codes
    levels = {10 * (i + 1): name for i, name in enumerate(LEVELS)}
    right = level_agreement(ph.labels.array, ph.labels.affine, reference, levels)
    assert right["levels_named_right"] == len(LEVELS) and right["levels_missed"] == 0
    assert all(abs(p["height_mm"] - ph.heights[p["level"]]) < 1.0 for p in right["per_level"])  # 26 mm bodies
    # a network that misses S1: every name above it shifts by one
    no_s1 = np.where(vset.instances == len(LEVELS), 0, ph.labels.array).astype(np.uint8)
    shifted = level_agreement(no_s1, ph.labels.affine, reference, levels)
    assert shifted["levels_named_right"] == 0 and shifted["levels_missed"] == 1
    assert shifted["per_level"][LEVELS.index("L5")]["named"] == "S1"


def test_a_lesion_away_from_both_endplates_is_not_a_modic_change() -> None:
    """A round focus in the middle of a body (haemangioma-like) is not counted; one reaching the
    endplate is; with the rule switched off both are."""
    ph = make_phantom([PhantomLesion("L3", "superior", 5.0)])
    labels = ph.labels.array.copy()
    vset = find_vertebrae(labels, ph.labels.affine, AnalysisConfig().vertebrae)
    l2 = vset.vertebrae[LEVELS.index("L2")]
    body = np.argwhere(vset.instances == l2.label)
    distance = np.linalg.norm(ph.labels.world_coordinates(body) - l2.centre_ras, axis=1)
    focus = body[distance < 6.0]  # 6 mm ball at the centre: 7 mm from each endplate of a 26 mm body
    labels[tuple(focus.T)] = 3
    image = LabelImage(labels, ph.labels.affine)
    report = analyze_images(image, ph.t1, ph.t2)
    assert [(les.level, les.endplate) for les in report.lesions] == [("L3", "superior")]
    assert any("from both endplates" in w and "not counted" in w for w in report.warnings)
    assert (report.labels.array[tuple(focus.T)] == 1).all()  # written back as body
    keep_all = AnalysisConfig()
    keep_all.lesions.max_endplate_gap_mm = None
    keep_all.lesions.require_signal_change = False  # the focus is labelled only: its signal is normal marrow
    both = analyze_images(image, ph.t1, ph.t2, config=keep_all)
    assert sorted(les.level for les in both.lesions) == ["L2", "L3"]
