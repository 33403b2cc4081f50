"""The spinal-column clean-up: look-alikes away from the column go, every part of the column stays."""

from __future__ import annotations

import numpy as np
import pytest

from modicseg.model.postprocess import ColumnSettings, restrict_to_column, spinal_column_mask

SPACING = np.array([4.0, 1.0, 1.0])  # model grid: thick sagittal slices, 1 mm in-plane


def column_phantom() -> tuple[np.ndarray, dict[str, tuple[slice, slice, slice]]]:
    """Labels on a (12, 120, 200) grid: five bodies (1) with discs (2) between them, one of them
    3 mm thin and one missing (an 5 mm gap), a lesion (3) in a body, and two marrow-like blobs:
    one 40 mm in front of the column, one joined to it by a 1 mm thin bridge."""
    labels = np.zeros((12, 120, 200), dtype=np.uint8)
    parts = {}
    z = 10
    for i in range(5):
        body = (slice(3, 9), slice(40, 75), slice(z, z + 25))
        labels[body] = 1
        parts[f"body{i}"] = body
        z += 25
        disc_height = {1: 3, 3: 0}.get(i, 8)  # a thin disc after body 1, a missed one after body 3
        gap = 5 if i == 3 else 0
        if disc_height:
            labels[3:9, 42:73, z:z + disc_height] = 2
        z += disc_height + gap
    labels[4:7, 45:52, 40:46] = 3
    parts["lesion"] = (slice(4, 7), slice(45, 52), slice(40, 46))
    far = (slice(4, 8), slice(100, 115), slice(60, 90))  # 25 mm beyond the bodies' front
    labels[far] = 1
    parts["far"] = far
    bridged = (slice(4, 8), slice(5, 25), slice(100, 130))
    labels[bridged] = 1
    labels[5:6, 25:40, 115:116] = 1  # 1 mm thin bridge to the column
    parts["bridged"] = bridged
    return labels, parts


def test_column_keeps_the_spine_and_drops_look_alikes() -> None:
    labels, parts = column_phantom()
    column = spinal_column_mask(labels > 0, SPACING)
    for i in range(5):
        assert column[parts[f"body{i}"]].all(), f"body {i} lost"
    assert column[parts["lesion"]].all()
    disc = labels == 2
    assert column[disc].sum() == disc.sum(), "disc voxels lost (the 3 mm thin disc must stay)"
    assert not column[parts["far"]].any(), "a blob 25 mm from the column was kept"
    assert column[parts["bridged"]].sum() < 0.05 * labels[parts["bridged"]].size, "a bridged blob was kept"


def test_a_run_of_vertebrae_split_off_by_missed_discs_stays_whole() -> None:
    """Bodies 6 mm apart with no disc predicted between them (a weak contrast in one part of the
    spine): each is within gap_mm of the next only, yet all of them belong to the column."""
    labels = np.zeros((12, 120, 200), dtype=np.uint8)
    bodies = []
    z = 5
    for height in (20, 20, 20, 20, 40):  # the lowest body is the largest region
        bodies.append((slice(3, 9), slice(40, 75), slice(z, z + height)))
        labels[bodies[-1]] = 1
        z += height + 6
    beside = (slice(3, 9), slice(87, 100), slice(60, 80))  # 12 mm in front of a body: not spine
    labels[beside] = 1
    column = spinal_column_mask(labels > 0, SPACING)
    for i, body in enumerate(bodies):
        assert column[body].all(), f"body {i} of the run lost"
    assert not column[beside].any(), "a region 12 mm from the column was kept"


def test_probabilities_outside_the_column_become_background() -> None:
    labels, parts = column_phantom()
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.0, 0.2, size=(4, *labels.shape)).astype(np.float32)
    for c in range(4):
        probs[c][labels == c] += 1.0
    cleaned, removed = restrict_to_column(probs, SPACING)
    out = np.argmax(cleaned, axis=0)
    assert removed == int(((np.argmax(probs, axis=0) > 0) & (out == 0)).sum())
    assert removed >= (labels[parts["far"]] > 0).sum()
    assert (out[parts["far"]] == 0).all()
    assert (out[parts["body2"]] == 1).all()
    assert (out[parts["lesion"]] == 3).all()
    np.testing.assert_array_equal(np.argmax(cleaned, axis=0)[labels == 2], 2)
    # switched off in the model config: nothing is touched
    assert ColumnSettings.from_config({"spinal_column": False}) is None
    assert ColumnSettings.from_config({"spinal_column": {"gap_mm": 5}}) == ColumnSettings(gap_mm=5.0)


def test_the_column_found_in_the_foreground_box_equals_the_whole_grid_one() -> None:
    """The clean-up works in the foreground's bounding box (plus its largest distance) for speed;
    on random masks, anisotropic spacings, settings and masks touching the array border it keeps
    exactly the voxels the whole-grid computation keeps."""
    from scipy import ndimage

    from modicseg.model.postprocess import _column_in_box

    rng = np.random.default_rng(0)
    for trial in range(40):
        shape = tuple(int(n) for n in rng.integers(8, 50, 3))
        foreground = ndimage.binary_dilation(rng.random(shape) < rng.uniform(0.001, 0.03),
                                             iterations=int(rng.integers(1, 4)))
        if trial % 4 == 0:
            foreground[0] = True  # touches the border, which counts as background
        spacing = rng.uniform(0.5, 4.5, 3)
        settings = ColumnSettings(bridge_mm=float(rng.uniform(0.5, 3.0)), gap_mm=float(rng.uniform(2.0, 12.0)))
        boxed = spinal_column_mask(foreground, spacing, settings)
        assert np.array_equal(boxed, _column_in_box(foreground, spacing, settings)), trial


def test_surface_dice_separates_a_boundary_shift_from_a_missed_structure() -> None:
    from modicseg.model.metrics import dice, surface_dice

    truth = np.zeros((40, 40, 40), dtype=bool)
    truth[10:30, 10:30, 10:30] = True
    grown = np.zeros_like(truth)
    grown[9:31, 9:31, 9:31] = True  # 1 voxel (1 mm) larger all round
    spacing = (1.0, 1.0, 1.0)
    assert dice(grown, truth) < 0.9
    assert surface_dice(grown, truth, spacing, 2.0) == 1.0  # corners are sqrt(3) mm apart
    assert surface_dice(grown, truth, spacing, 0.5) < 0.05
    half = truth.copy()
    half[:, :, 20:] = False  # half of the body missed
    assert surface_dice(half, truth, spacing, 2.0) < 0.8
    # physical tolerance: with 4 mm slices along axis 0, a one-slice shift is beyond 2 mm
    assert surface_dice(np.roll(truth, 1, axis=0), truth, (4.0, 1.0, 1.0), 2.0) < 1.0
    # precision / recall tell the larger drawing (a convention: every labelled voxel found) from the miss
    from modicseg.model.metrics import precision_recall

    assert precision_recall(grown, truth) == pytest.approx((20**3 / 22**3, 1.0))
    assert precision_recall(half, truth) == pytest.approx((1.0, 0.5))


def test_component_detection_counts_found_missed_and_false_lesions() -> None:
    from modicseg.model.metrics import component_detection

    truth = np.zeros((20, 20, 20), dtype=bool)
    truth[2:5, 2:5, 2:5] = True  # found
    truth[10:13, 10:13, 10:13] = True  # missed
    pred = np.zeros_like(truth)
    pred[3:6, 3:6, 3:6] = True
    pred[15:18, 2:4, 2:4] = True  # false
    assert component_detection(pred, truth) == {"truth": 2, "detected": 1, "predicted": 2, "false": 1}


def test_bodies_beyond_the_annotated_levels_are_not_scored_but_extra_voxels_beside_them_are() -> None:
    """A mask labels three bodies; the prediction also finds the body above, the segment below
    and a look-alike beside the middle body. Array axis 0 runs superior -> inferior (as in the
    real-spine masks), so 'above' is read from the affine, not from the index."""
    from modicseg.model.metrics import beyond_annotated_levels, dice

    affine = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    truth = np.zeros((120, 60, 10), dtype=bool)
    pred = np.zeros_like(truth)
    rows = [(5, 25), (30, 50), (55, 75), (80, 100), (105, 115)]  # superior -> inferior
    for top, bottom in rows:
        pred[top:bottom, 20:45, 2:8] = True
    for top, bottom in rows[1:4]:
        truth[top:bottom, 20:45, 2:8] = True
    pred[60:70, 50:58, 2:8] = True  # beside an annotated body, touching no annotation
    ignored = beyond_annotated_levels(pred, truth, affine)
    assert ignored[rows[0][0]:rows[0][1], 20:45, 2:8].all() and ignored[rows[4][0]:rows[4][1], 20:45, 2:8].all()
    assert ignored.sum() == pred[rows[0][0]:rows[0][1]].sum() + pred[rows[4][0]:rows[4][1]].sum()
    assert not ignored[rows[1][0]:rows[3][1]].any(), "the look-alike beside the annotated levels was not scored"
    kept = pred & ~ignored
    assert dice(kept, truth) < 1.0
    assert dice(kept & ~(pred & ~truth), truth) == 1.0
    # flipped affine: the same array now runs inferior -> superior; the verdict must not change
    flipped = affine.copy()
    flipped[2, 0] = 1.0
    np.testing.assert_array_equal(beyond_annotated_levels(pred, truth, flipped), ignored)
