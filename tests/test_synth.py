"""The synthetic generator against its own ground truth (issue #3).

Grids are kept small so that the whole file runs in well under a minute and a half.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from modicseg.io.dicom_series import scan_study
from modicseg.io.dicom_volume import build_volume
from modicseg.synth import tissues as tis
from modicseg.synth.anatomy import sample_spine
from modicseg.synth.case import CaseOptions, generate_case, generate_training_sample
from modicseg.synth.grid import make_grid, rotation_matrix
from modicseg.synth.lesions import make_lesion
from modicseg.synth.pairs import generate_pair, write_pair
from modicseg.synth.raster import Rasterizer, centre_samples
from modicseg.synth.write import write_case

SMALL = dict(inplane_mm=1.1, fov_mm=250.0, n_slices=11, thickness_mm=4.0, gap_mm=0.4)


@pytest.fixture(scope="module")
def case():
    return generate_case(11, "case_0011", CaseOptions(**SMALL, lesion_count=2, lesion_types=["1", "2/3"]))


@pytest.fixture(scope="module")
def written(case, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "case_0011"
    write_case(case, root, "both", ("extra-series",), subject_index=10)
    return root


# --- reproducibility ---------------------------------------------------------------------------

def test_seed_reproduces_case_exactly(case):
    again = generate_case(11, "case_0011", CaseOptions(**SMALL, lesion_count=2, lesion_types=["1", "2/3"]))
    for a, b in ((case.t1, again.t1), (case.t2, again.t2), (case.labels, again.labels),
                 (case.types, again.types), (case.instances, again.instances)):
        assert np.array_equal(a.array, b.array)
        assert np.array_equal(a.affine, b.affine)
    assert json.dumps(case.truth, sort_keys=True) == json.dumps(again.truth, sort_keys=True)
    other = generate_case(12, "case_0011", CaseOptions(**SMALL, lesion_count=2, lesion_types=["1", "2/3"]))
    assert not np.array_equal(other.t2.array, case.t2.array) or other.t2.shape != case.t2.shape


def test_training_sample_reproducible_and_labelled():
    kwargs = dict(spacing=(2.0, 2.0, 4.0), shape=(104, 120, 13))
    img1, lab1 = generate_training_sample(np.random.default_rng(5), **kwargs)
    img2, lab2 = generate_training_sample(np.random.default_rng(5), **kwargs)
    assert img1.shape == (2, 104, 120, 13) and img1.dtype == np.float32
    assert lab1.shape == (104, 120, 13) and np.issubdtype(lab1.dtype, np.integer)
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2)
    assert np.isfinite(img1).all()
    assert {1, 2} <= set(np.unique(lab1).tolist()) <= {0, 1, 2, 3}


# --- anatomy and lesion model ------------------------------------------------------------------

def test_anatomy_levels_sizes_and_variants():
    for seed in range(6):
        spine = sample_spine(np.random.default_rng(seed))
        names = [v.level for v in spine.bodies]
        assert names[:3] == ["T10", "T11", "T12"] and names[-1] == "S1"
        lumbar = [v for v in spine.bodies if v.level.startswith("L")]
        assert all(18.0 < v.centre_height < 34.0 for v in lumbar)
        assert all(25.0 < v.depth < 42.0 and 33.0 < v.width < 60.0 for v in lumbar)
        assert 25.0 < spine.lordosis_deg() < 75.0
        # bodies stack from superior to inferior, each disc between its two bodies
        z = [v.centre[2] for v in spine.bodies]
        assert all(a > b for a, b in itertools.pairwise(z))
        for d in spine.anatomical_discs:
            assert d.lower.centre[2] < d.centre[2] < d.upper.centre[2]
    six = sample_spine(np.random.default_rng(0), lumbar_count=6)
    assert [v.level for v in six.bodies if v.level.startswith("L")][-1] == "L6"
    four = sample_spine(np.random.default_rng(0), lumbar_count=4)
    assert "L5" not in [v.level for v in four.bodies]
    broken = sample_spine(np.random.default_rng(0), fracture=True)
    v = broken.vertebra(broken.fracture_level)
    assert v.wedge > 0.1 and v.centre_height < v.height


@pytest.mark.parametrize("target", [0.095, 0.105, 0.35])
def test_height_fraction_calibrated(target):
    spine = sample_spine(np.random.default_rng(3))
    vertebra = spine.vertebra("L4")
    lesion = make_lesion(np.random.default_rng(4), vertebra, "inferior", "1", 0, height_fraction=target)
    size = lesion.measure(vertebra)
    assert abs(size["height_fraction"] - target) < 0.002
    assert (size["height_fraction"] >= 0.10) == (target > 0.1)


def test_voxelised_lesion_volume_matches_analytic():
    """Label-3 voxels x voxel volume on a fine oblique grid vs the continuous model.

    With the centre-point rule each voxel cut by the lesion surface is counted whole or not at
    all, with an error of either sign: the total error behaves like a sum of N_b independent
    errors of at most one voxel (N_b = voxels on the lesion boundary), i.e. of order
    sqrt(N_b) * voxel volume.  We allow 3 sqrt(N_b) voxels; a systematic shift of the surface by
    half a voxel would cost about N_b / 2 voxels (ten times more for these lesions).
    """
    rng = np.random.default_rng(21)
    spine = sample_spine(rng)
    for level, endplate, code, hf in (("L4", "inferior", "1/2", 0.3), ("L5", "superior", "2", 0.12),
                                      ("S1", "superior", "2/3", 0.45)):
        vertebra = spine.vertebra(level)
        lesion = make_lesion(rng, vertebra, endplate, code, 0, height_fraction=hf)
        truth = lesion.measure(vertebra)
        h = 0.5
        shape = (int(vertebra.depth / h) + 14, int((vertebra.height + 8) / h) + 14, int(vertebra.width / h) + 14)
        grid = make_grid(vertebra.centre, shape, (h, h, h), thickness=h,
                         rotation=rotation_matrix((7.0, -5.0, 11.0)), supersample=(1, 1, 1))
        raster = Rasterizer(grid, np.eye(4))
        raster.paint_body(vertebra, [lesion])
        ids = centre_samples(raster.tid)
        primary = ids == tis.lesion_part_id(0, 0)
        secondary = ids == tis.lesion_part_id(0, 1)
        mask = primary | secondary
        boundary = int((mask & ~ndimage.binary_erosion(mask)).sum())
        error = abs(mask.sum() * grid.voxel_volume - truth["volume_mm3"])
        assert error <= 3 * np.sqrt(boundary) * grid.voxel_volume, (code, error, truth["volume_mm3"])
        assert error / truth["volume_mm3"] < 0.02
        if lesion.secondary is not None:
            fraction = secondary.sum() / mask.sum()
            assert abs(fraction - truth["type_fractions"][str(lesion.secondary)]) < 0.03
        else:
            assert not secondary.any()
        # cranio-caudal extent along the body's own axis, from voxel centres
        pts = raster.sampler.voxel_to_subject[:3, :3] @ np.argwhere(mask).T + \
            raster.sampler.voxel_to_subject[:3, 3:4]
        w = vertebra.axis @ (pts - vertebra.centre[:, None])
        assert abs((w.max() - w.min()) - truth["craniocaudal_extent_mm"]) < 2 * h


def test_sparse_torso_outline_equals_exact(monkeypatch):
    """The torso outline is evaluated with x only near the outline; it must equal the per-voxel result."""
    from modicseg.synth import raster
    from modicseg.synth.grid import AXIAL_AXES

    spine = sample_spine(np.random.default_rng(2))
    for axes, shape, spacing in ((AXIAL_AXES, (120, 120, 3), (3.0, 3.0, 10.0)),
                                 (None, (100, 110, 15), (2.0, 2.0, 4.0))):
        kwargs = {} if axes is None else {"axes": axes}
        grid = make_grid(np.array([0.0, -20.0, 0.0]), shape, spacing, rotation=rotation_matrix((3, 4, 5)),
                         **kwargs)
        results = []
        for exact in (False, True):
            monkeypatch.setattr(raster, "TORSO_EVERYWHERE", exact)
            r = Rasterizer(grid, np.eye(4))
            r.paint_soft_tissue(spine)
            results.append(r.tid)
        assert np.array_equal(*results)
        assert (results[0] == tis.AIR).any() and (results[0] == tis.SKIN).any()


def _interior(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return ndimage.binary_erosion(mask, iterations=iterations) if mask.any() else mask


def test_type_signal_ratio_within_rule_bands():
    """Mean lesion signal over the same vertebra's normal marrow lies in each type's band."""
    options = CaseOptions(inplane_mm=0.7, fov_mm=250.0, n_slices=13, thickness_mm=3.0, gap_mm=0.0,
                          noise=False, bias=False, lesion_count=5, lesion_types=["1", "2", "3", "1/2", "2/3"],
                          lesion_height_fractions=[0.35] * 5, separate_t1_grid=False, rescale=False)
    case = generate_case(8, "bands", options)
    seen: dict[int, int] = {}
    for lesion in case.scene.lesions:
        instance = case.scene.spine.vertebra(lesion.level).index + 1
        in_vertebra = case.instances.array == instance
        marrow = _interior((case.labels.array == 1) & in_vertebra & (case.types.array == 0), 2)
        marrow &= ~ndimage.binary_dilation(case.types.array > 0, iterations=2)
        assert marrow.sum() > 50
        for part in ((0, 1) if lesion.secondary else (0,)):
            modic = lesion.part_type(part)
            region = _interior((case.types.array == modic) & in_vertebra)
            if region.sum() < 5:
                continue
            for weighting, image in (("T1", case.t1.array), ("T2", case.t2.array)):
                ratio = image[region].mean() / np.median(image[marrow])
                lo, hi = tis.TYPE_SIGNAL_BANDS[modic][weighting]
                assert lo <= ratio <= hi, (lesion.type_code, modic, weighting, ratio)
            seen[modic] = seen.get(modic, 0) + 1
    assert set(seen) == {1, 2, 3}


# --- writers and the DICOM loader --------------------------------------------------------------

def _sagittal_stack(scan, weighting: str):
    stacks = [s for s in scan.stacks if s.plane == "sagittal" and not s.localizer and s.weighting == weighting]
    assert len(stacks) == 1, [(s.series_description, s.plane, s.weighting) for s in scan.stacks]
    return stacks[0]


def test_loader_reads_generated_dicom_with_intended_geometry(case, written):
    scan = scan_study(written / "dicom")
    assert any(s.localizer for s in scan.stacks)
    assert any(s.plane == "axial" and not s.localizer for s in scan.stacks)
    for weighting, image in (("T1", case.t1), ("T2", case.t2)):
        volume = build_volume(_sagittal_stack(scan, weighting))
        assert volume.shape == image.shape
        assert np.abs(volume.affine - image.affine).max() < 0.01
        corners = np.array([[0, 0, 0], np.asarray(image.shape) - 1])
        assert np.abs(volume.world_coordinates(corners) - image.world_coordinates(corners)).max() < 0.01
        assert np.array_equal(np.asarray(volume.array, dtype=np.float32), image.array)


def test_dicom_tags_are_realistic_and_shared(case, written):
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((written / "dicom").iterdir())]
    assert len({h.FrameOfReferenceUID for h in headers}) == 1
    assert len({h.StudyInstanceUID for h in headers}) == 1
    assert {str(h.PatientName) for h in headers} == {"CANARY^SYNTH0011"}
    assert {h.PatientID for h in headers} == {"CANARYID0011"}
    by_series = {}
    for h in headers:
        by_series.setdefault(h.SeriesInstanceUID, h)
    sag = [h for h in by_series.values() if "LOCALIZER" not in h.ImageType and "tra" not in h.SeriesDescription]
    assert len(sag) == 2
    for h in sag:
        tr, te = float(h.RepetitionTime), float(h.EchoTime)
        assert (400 <= tr <= 800 and 8 <= te <= 20) or (2500 <= tr <= 5000 and 80 <= te <= 120)
        assert [float(v) for v in h.ImageOrientationPatient] == pytest.approx([0, 1, 0, 0, 0, -1], abs=0.2)
        assert float(h.SpacingBetweenSlices) >= float(h.SliceThickness)
        assert float(h.SliceThickness) == pytest.approx(case.grids["T2"].slice_thickness, abs=1e-3)
    names = [p.name for p in (written / "dicom").iterdir()]
    assert all(len(n) == 16 and "." not in n for n in names)  # random names, no order to rely on


def test_variants_enhanced_compressed_and_rescale(tmp_path):
    options = CaseOptions(**SMALL, lesion_count=1, rescale=True)
    case = generate_case(4, "case_0004", options)
    assert case.rescale["T1"] is not None and case.rescale["T2"] is not None
    write_case(case, tmp_path, "dicom", ("enhanced", "compressed"))
    files = list((tmp_path / "dicom").iterdir())
    assert len(files) == 2  # one multi-frame object per series
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    scan = scan_study(tmp_path / "dicom")
    for weighting, image in (("T1", case.t1), ("T2", case.t2)):
        volume = build_volume(_sagittal_stack(scan, weighting))
        assert np.abs(volume.affine - image.affine).max() < 0.01
        assert np.allclose(volume.array, image.array, atol=1e-3)
    assert not (tmp_path / "nifti").exists()


def test_nifti_and_truth_files(case, written):
    import nibabel as nib

    truth = json.loads((written / "truth.json").read_text())
    assert truth["schema_version"] == "1.0" and truth["case_id"] == "case_0011"
    for key in ("T1", "T2", "labels", "types", "instances"):
        assert (written / truth["files"][key]).is_file()
    labels = nib.load(written / truth["files"]["labels"])
    assert np.allclose(labels.affine, case.labels.affine, atol=1e-4)
    assert np.array_equal(np.asarray(labels.dataobj), case.labels.array)
    types = np.asarray(nib.load(written / truth["files"]["types"]).dataobj)
    assert set(np.unique(types[case.labels.array == 3]).tolist()) <= {1, 2, 3}
    assert not types[case.labels.array != 3].any()
    assert [v["level"] for v in truth["vertebrae"]][-1] == "S1"
    for lesion in truth["lesions"]:
        assert lesion["type"] in tis.TYPE_CODES
        assert abs(sum(lesion["type_fractions"].values()) - 1.0) < 1e-3
        assert lesion["height_fraction"] == pytest.approx(
            lesion["craniocaudal_extent_mm"] / next(v["height_mm"] for v in truth["vertebrae"]
                                                    if v["level"] == lesion["level"]), rel=1e-3)


def test_no_canary_outside_dicom_patient_tags(written, tmp_path):
    pair = generate_pair(2, "pair_0000", CaseOptions(**SMALL))
    write_pair(pair, tmp_path / "pair", "both", subject_index=3)
    roots = [written, tmp_path / "pair"]
    checked = 0
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or "dicom" in path.parts:
                continue
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            assert b"CANARY" not in data.upper(), path
            checked += 1
    assert checked >= 10
    dicom_file = next((tmp_path / "pair" / "followup" / "dicom").iterdir())
    assert b"CANARYID0004" in dicom_file.read_bytes()  # positive control: the identity is in DICOM


# --- longitudinal pairs ------------------------------------------------------------------------

def test_pairs_are_consistent(tmp_path):
    options = CaseOptions(**SMALL, lesion_count=3, lesion_types=["1", "1", "2"],
                          lesion_height_fractions=[0.3, 0.2, 0.25])
    fates = {"lesion-00": "type_change", "lesion-01": "disappeared", "lesion-02": "grown", "new": "new"}
    pair = generate_pair(6, "pair_0006", options, fates=fates)
    truth = pair.truth
    base = {les["id"]: les for les in pair.baseline.truth["lesions"]}
    follow = {les["id"]: les for les in pair.followup.truth["lesions"]}
    links = {(lk["baseline_id"], lk["followup_id"]): lk for lk in truth["links"]}
    assert {lk["baseline_id"] for lk in truth["links"]} - {None} == set(base)
    assert {lk["followup_id"] for lk in truth["links"]} - {None} == set(follow)
    changed = links[("lesion-00", "lesion-00")]
    assert changed["type_changed"] and changed["baseline_type"] == "1" and follow["lesion-00"]["type"] == "2"
    assert ("lesion-01", None) in links and "lesion-01" not in follow
    assert follow["lesion-02"]["volume_mm3"] > base["lesion-02"]["volume_mm3"]
    new = [lk for lk in truth["links"] if lk["fate"] == "new"]
    assert len(new) == 1 and new[0]["followup_id"] in follow and new[0]["followup_id"] not in base
    # the recorded transform maps baseline anatomy onto follow-up anatomy
    transform = np.array(truth["baseline_to_followup_ras"])
    assert np.allclose(transform[:3, :3] @ transform[:3, :3].T, np.eye(3), atol=1e-6)
    assert np.linalg.norm(transform[:3, 3]) > 1.0 or not np.allclose(transform[:3, :3], np.eye(3))
    for vb, vf in zip(pair.baseline.truth["vertebrae"], pair.followup.truth["vertebrae"], strict=True):
        assert vb["level"] == vf["level"] and vb["volume_mm3"] == vf["volume_mm3"]
        mapped = transform[:3, :3] @ np.array(vb["centre_ras"]) + transform[:3, 3]
        assert np.allclose(mapped, vf["centre_ras"], atol=1e-3)
    # voxel maps agree after the transform (nearest neighbour; partial volume at the rims)
    fb, ff = pair.baseline.instances, pair.followup.instances
    ijk = np.argwhere(np.ones(ff.shape, dtype=bool))
    world = ff.world_coordinates(ijk)
    back = (world - transform[:3, 3]) @ np.linalg.inv(transform[:3, :3]).T
    idx = np.rint(fb.voxel_coordinates(back)).astype(int)
    ok = np.all((idx >= 0) & (idx < np.array(fb.shape)), axis=1)
    moved = np.zeros(ff.shape, dtype=fb.array.dtype)
    moved[tuple(ijk[ok].T)] = fb.array[tuple(idx[ok].T)]
    a, b = moved > 0, ff.array > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    same = (moved[a & b] == ff.array[a & b]).mean()
    assert dice > 0.8 and same > 0.99, (dice, same)
    # same patient, new study
    write_pair(pair, tmp_path, "dicom", subject_index=5)
    hb = pydicom.dcmread(next((tmp_path / "baseline" / "dicom").iterdir()), stop_before_pixels=True)
    hf = pydicom.dcmread(next((tmp_path / "followup" / "dicom").iterdir()), stop_before_pixels=True)
    assert hb.PatientID == hf.PatientID == "CANARYID0006"
    assert hb.StudyInstanceUID != hf.StudyInstanceUID and hb.StudyDate < hf.StudyDate
    assert hb.FrameOfReferenceUID != hf.FrameOfReferenceUID


# --- CLI and demo ------------------------------------------------------------------------------

def test_cli_synth_writes_cases(tmp_path, monkeypatch):
    from modicseg.cli import main
    from modicseg.synth import case as case_module

    real = case_module.generate_case

    def small(seed, case_id="case_0000", options=None):
        return real(seed, case_id, CaseOptions(**SMALL))

    monkeypatch.setattr(case_module, "generate_case", small)
    assert main(["synth", "-o", str(tmp_path), "--cases", "2", "--seed", "3", "--format", "nifti"]) == 0
    for index in range(2):
        truth = json.loads((tmp_path / f"case_{index:04d}" / "truth.json").read_text())
        assert truth["seed"] == 3 + index
        assert (tmp_path / f"case_{index:04d}" / truth["files"]["T2"]).is_file()
    assert main(["synth", "-o", str(tmp_path), "--cases", "0"]) == 2


def test_demo_study(tmp_path):
    from modicseg.synth.demo import make_demo_study

    dicom = make_demo_study(tmp_path / "demo")
    truth = json.loads((tmp_path / "demo" / "truth.json").read_text())
    assert any(les["primary_type"] == 1 and les["height_fraction"] >= 0.10 for les in truth["lesions"])
    scan = scan_study(dicom)
    roles = {(s.plane, s.weighting, s.localizer) for s in scan.stacks}
    assert ("sagittal", "T1", False) in roles and ("sagittal", "T2", False) in roles
    assert any(s.localizer for s in scan.stacks) and ("axial", "T2", False) in roles


def _bone_and_soft_tissue_images(labels: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """T1/T2 of a look-alike test phantom (labelled voxels 1.0/0.8, the rest 0.3/0.2) and a copy of them."""
    images = {"T1": np.where(labels > 0, 1.0, 0.3).astype(np.float32),
              "T2": np.where(labels > 0, 0.8, 0.2).astype(np.float32)}
    return images, {k: v.copy() for k, v in images.items()}


def test_distractors_look_like_marrow_and_leave_labels_exact():
    from scipy import ndimage

    from modicseg.synth.distractors import add_distractors

    ids = np.full((60, 80, 10), tis.VISCERA, dtype=np.uint8)
    ids[20:40, 30:50, 3:7] = tis.MARROW_BASE  # one vertebral body
    labels = tis.LABEL_LUT[ids]
    spacing = np.array([1.0, 1.0, 4.0])
    images, before = _bone_and_soft_tissue_images(labels)
    painted = add_distractors(images, ids, labels, spacing, np.random.default_rng(3), count=6, margin_mm=3.0)
    assert painted >= 1
    changed = np.abs(images["T1"] - before["T1"]) > 1e-6
    distance = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
    assert changed.any() and distance[changed].min() > 3.0, "a distractor touched the labelled body"
    # the blobs reach marrow-like signal (60-140 % of the marrow's) in both weightings
    assert images["T1"][changed].max() > 0.6 and images["T2"][changed].max() > 0.48
    np.testing.assert_array_equal(images["T1"][labels > 0], before["T1"][labels > 0])


def test_perivertebral_lookalikes_touch_the_bodies_and_leave_labels_exact():
    """Lesion-like blobs (fat, vessels) against the outside of a body: labels and bone untouched."""
    from scipy import ndimage

    from modicseg.synth.distractors import add_perivertebral_lookalikes

    ids = np.full((60, 80, 12), tis.FAT, dtype=np.uint8)
    ids[:, :, :2] = tis.CSF  # not a host: nothing is centred there
    ids[20:40, 30:50, 4:8] = tis.MARROW_BASE  # one vertebral body
    labels = tis.LABEL_LUT[ids]
    spacing = np.array([1.0, 1.0, 4.0])
    images, before = _bone_and_soft_tissue_images(labels)
    painted = add_perivertebral_lookalikes(images, ids, labels, spacing, np.random.default_rng(5), count=8)
    assert 5 <= painted <= 8
    changed = (np.abs(images["T1"] - before["T1"]) > 1e-6) | (np.abs(images["T2"] - before["T2"]) > 1e-6)
    for name in images:  # bone signal and labels untouched
        np.testing.assert_array_equal(images[name][labels > 0], before[name][labels > 0])
    distance = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
    # against the body: painted right outside it (within 1.5 mm), never far from it
    assert changed[distance <= 1.5].any() and distance[changed].max() < 4.0 + 3 * 7.0 + 1.0
    # lesion-like signal: fat-bright (>= 1.2 x marrow) somewhere in T1, and darker than marrow somewhere
    strong = changed & (distance > 1.0)
    assert images["T1"][strong].max() >= 1.2 * 1.0 * 0.95
    assert images["T1"][strong].min() < 1.0


def test_endplate_notches_become_disc_joined_to_the_disc_and_touch_nothing_else():
    """Schmorl-node-like notches: bone under a disc becomes disc (labels exact), filled with disc signal."""
    from scipy import ndimage

    from modicseg.synth.distractors import add_endplate_notches

    ids = np.full((60, 80, 12), tis.FAT, dtype=np.uint8)
    ids[20:40, 10:35, 2:10] = tis.MARROW_BASE  # upper body
    ids[20:40, 35:43, 2:10] = tis.NUCLEUS_BASE  # disc, 8 mm
    ids[20:40, 43:70, 2:10] = tis.MARROW_BASE + 1  # lower body
    labels = tis.LABEL_LUT[ids]
    original = labels.copy()
    spacing = np.array([1.0, 1.0, 4.0])
    images = {"T1": np.select([labels == 1, labels == 2], [1.0, 0.5], 0.3).astype(np.float32),
              "T2": np.select([labels == 1, labels == 2], [0.8, 1.5], 0.2).astype(np.float32)}
    before = {k: v.copy() for k, v in images.items()}
    made = add_endplate_notches(images, ids, labels, spacing, np.random.default_rng(2), count=6)
    assert 4 <= made <= 6
    notch = labels != original
    assert notch.any() and (original[notch] == 1).all() and (labels[notch] == 2).all()  # bone -> disc only
    disc_distance = ndimage.distance_transform_edt(original != 2, sampling=spacing)
    assert disc_distance[notch].max() <= 7.0 + 1.0  # no deeper than the deepest notch
    assert ndimage.label(labels == 2)[1] == 1  # every notch opens into the disc
    assert images["T2"][notch].mean() > 0.8 and images["T1"][notch].mean() < 1.0  # disc-like, not marrow
    changed = (np.abs(images["T1"] - before["T1"]) > 1e-6) | (np.abs(images["T2"] - before["T2"]) > 1e-6)
    assert not changed[original == 0].any() and not changed[original == 2].any()  # soft tissue and disc untouched
    assert disc_distance[changed].max() <= 7.0 + 2.0 + 1.0  # notch and rim only
