"""The independent lesion painter (modicseg.evaluation.independent_painter): exact truth inside the
body, at the chosen endplate, paint only near the truth, ratios to normal marrow in the type bands,
deterministic for a seed. Real-data tests read ../shared (skipped without it); one phantom test
always runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from modicseg.core.convert import load_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.evaluation.independent_painter import (
    RATIO_BANDS,
    contrast_kind,
    endplate_candidates,
    paint_lesions,
    superior_axis,
)

from .conftest import SHARED

DIXON = SHARED / "real-spine-dixon"
REAL = SHARED / "real-spine"
MAX_REACH_MM = 5.0  # the border ramp (scale <= 1 mm, weights < 2 % dropped) ends within ~4.4 mm


def _load(folder):
    image = load_nifti(folder / "image.nii.gz", ScalarImage)
    bodies = np.asarray(load_nifti(folder / "vertebrae.nii.gz", LabelImage).array)
    import json

    names = {int(k): v for k, v in json.loads((folder / "case.json").read_text())["levels"].items()}
    return image, bodies, names


def _marrow_reference(original: np.ndarray, body: np.ndarray, truth: np.ndarray, spacing: np.ndarray) -> float:
    """Median of the unpainted body at least 2 mm inside the mask and 3 mm from the lesion."""
    inside = ndimage.distance_transform_edt(body, sampling=spacing)
    away = ndimage.distance_transform_edt(~truth, sampling=spacing)
    marrow = body & ~truth & (inside >= 2.0) & (away >= 3.0)
    return float(np.median(original[marrow]))


def _touches_endplate(truth: np.ndarray, body: np.ndarray, affine: np.ndarray, endplate: str) -> bool:
    """Some truth voxel's neighbour one step further toward the endplate side lies outside the body,
    and the truth lies on that side of the body's centre (world superior from the affine)."""
    axis, sign = superior_axis(affine)
    step = sign if endplate == "superior" else -sign
    shifted = np.zeros_like(body)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    if step > 0:
        src[axis], dst[axis] = slice(1, None), slice(None, -1)
    else:
        src[axis], dst[axis] = slice(None, -1), slice(1, None)
    shifted[tuple(dst)] = body[tuple(src)]  # shifted[v] = body[v + step]
    at_face = truth & ~shifted
    z_truth = (np.argwhere(truth) @ affine[:3, :3].T)[:, 2].mean()
    z_body = (np.argwhere(body) @ affine[:3, :3].T)[:, 2].mean()
    on_side = z_truth > z_body if endplate == "superior" else z_truth < z_body
    return bool(at_face.any()) and bool(on_side)


def _check_painting(images: dict[str, ScalarImage], bodies: np.ndarray, painted, names=None) -> None:
    affine = next(iter(images.values())).affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert painted.truth.dtype == bool and painted.truth.shape == bodies.shape
    assert np.array_equal(painted.truth, painted.lesion_map > 0)
    assert np.array_equal(painted.weight >= 0.5, painted.truth)
    assert not (painted.truth & (bodies == 0)).any()
    near = ndimage.distance_transform_edt(~painted.truth, sampling=spacing) <= MAX_REACH_MM
    for key, image in images.items():
        original = np.asarray(image.array, dtype=np.float32)
        changed = np.abs(np.asarray(painted.images[key].array) - original) > 1e-4 * max(1.0, float(original.max()))
        assert changed.any()
        assert not (changed & ~near).any(), f"{key}: paint farther than {MAX_REACH_MM} mm from the truth"
        assert not (changed & (bodies == 0)).any()
        assert painted.images[key].same_grid(image)
    for lesion in painted.lesions:
        truth = painted.lesion_map == lesion.id
        body = bodies == lesion.label
        box = tuple(slice(max(int(i.min()) - 6, 0), int(i.max()) + 7) for i in np.nonzero(body))
        assert int(truth.sum()) == lesion.voxels
        assert lesion.voxels == pytest.approx(lesion.volume_mm3 / voxel_mm3, abs=1e-6)
        assert not (truth & ~body).any()
        assert _touches_endplate(truth, body, affine, lesion.endplate), (lesion.level, lesion.endplate)
        assert 0.05 <= lesion.height_fraction <= 0.55
        if names is not None:
            assert lesion.level == names[lesion.label]
        for key, image in images.items():
            original = np.asarray(image.array, dtype=np.float64)[box]
            reference = _marrow_reference(original, body[box], truth[box], spacing)
            ratio = float(np.mean(np.asarray(painted.images[key].array, dtype=np.float64)[truth])) / reference
            low, high = RATIO_BANDS[lesion.type][contrast_kind(key)]
            assert low * 0.98 <= ratio <= high * 1.02, (key, lesion.type, ratio)
            assert lesion.achieved[key] == pytest.approx(lesion.ratios[key], rel=1e-3)


def _phantom(tilt_deg: float = 15.0):
    """Three box-shaped 'bodies' of textured marrow in an oblique, anisotropic grid."""
    rng = np.random.default_rng(3)
    shape = (60, 130, 14)  # i: anterior-posterior-ish, j: cranio-caudal-ish, k: slices
    bodies = np.zeros(shape, dtype=np.uint8)
    for n, top in enumerate((10, 50, 90), start=1):
        bodies[12:50, top:top + 30, 2:12] = n  # 0.8 mm x 0.8 mm x 3.5 mm voxels: 30 x 24 x 35 mm
    image = 100 + 10 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    image[bodies == 0] = 30
    t = np.radians(tilt_deg)
    rotation = np.array([[0, 0, 1], [np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, -0.8, 3.5])  # j runs toward inferior
    return image.astype(np.float32), bodies, affine


def test_phantom_oblique_grid_two_contrasts():
    image, bodies, affine = _phantom()
    images = {"T1": ScalarImage(image, affine), "T2": ScalarImage(image * 0.7 + 5, affine)}
    names = {1: "L3", 2: "L4", 3: "L5"}
    painted = paint_lesions(images, bodies, names, count=3, seed=11, types=["1", "2", "3"])
    assert [les.type for les in painted.lesions] == ["1", "2", "3"]
    assert len({les.label for les in painted.lesions}) == 3  # one lesion per body
    _check_painting(images, bodies, painted, names)
    again = paint_lesions(images, bodies, names, count=3, seed=11, types=["1", "2", "3"])
    assert np.array_equal(again.truth, painted.truth)
    assert np.array_equal(again.images["T1"].array, painted.images["T1"].array)
    assert [les.to_dict() for les in again.lesions] == [les.to_dict() for les in painted.lesions]
    other = paint_lesions(images, bodies, names, count=3, seed=12, types=["1", "2", "3"])
    assert not np.array_equal(other.truth, painted.truth)


def test_candidates_leave_out_cut_endplates_and_sacral_inferior():
    _, bodies, affine = _phantom(tilt_deg=0.0)
    bodies[12:50, 0:25, 2:12] = 1  # body 1 reaches the first row (j = 0: the superior edge of the grid)
    found = set(endplate_candidates(bodies, affine, {1: "L4", 2: "L5", 3: "S1"}))
    assert (1, "superior") not in found and (1, "inferior") in found
    assert (3, "inferior") not in found and (3, "superior") in found
    assert set(endplate_candidates(bodies, affine, {1: "L4", 2: "L5", 3: "S1"}, levels=["L5"])) == {
        (2, "superior"), (2, "inferior")}


@pytest.mark.skipif(not DIXON.is_dir(), reason="../shared/real-spine-dixon not found")
def test_dixon_fat_suppressed_all_types_and_deterministic():
    image, bodies, names = _load(DIXON / "vb3_01")
    painted = paint_lesions({"FS": image}, bodies, names, count=3, seed=5, types=["1", "2", "3"])
    assert len(painted.lesions) == 3
    _check_painting({"FS": image}, bodies, painted, names)
    again = paint_lesions({"FS": image}, bodies, names, count=3, seed=5, types=["1", "2", "3"])
    assert np.array_equal(again.truth, painted.truth)
    assert np.array_equal(again.images["FS"].array, painted.images["FS"].array)
    assert np.asarray(image.array).dtype == np.uint8  # input untouched


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-spine not found")
def test_real_t1_t2_pair_same_lesion_ratios_per_contrast():
    from modicseg.evaluation.generalisation import instance_map
    from modicseg.model.cases import load_labelled_cases, same_grid_pair

    cases = {c.name: c for c in load_labelled_cases(REAL, include=["vb1_10", "vb1_11"])}
    pair = same_grid_pair(cases["vb1_10"], cases["vb1_11"])
    bodies = instance_map(pair)
    images = {"T1": pair.t1, "T2": pair.t2}
    painted = paint_lesions(images, bodies, pair.info["level_names"], count=3, seed=2, types=["2", "1", "3"],
                            levels=["T12", "L1", "L2", "L3", "L4", "L5", "S1"])
    assert [les.type for les in painted.lesions] == ["2", "1", "3"]
    assert all(les.level in ("T12", "L1", "L2", "L3", "L4", "L5", "S1") for les in painted.lesions)
    _check_painting(images, bodies, painted, pair.info["level_names"])
    t1_changed = np.abs(painted.images["T1"].array - pair.t1.array) > 1e-3
    t2_changed = np.abs(painted.images["T2"].array - pair.t2.array) > 1e-3
    assert (t1_changed & painted.truth).sum() > 0.9 * painted.truth.sum()
    assert (t2_changed & painted.truth).sum() > 0.5 * painted.truth.sum()
