"""Lesions a reader could not see are not counted: parts that look like the vertebra's normal marrow
on every image given, and parts at an end of a body that the field of view cuts (issue 15: false
lesions on healthy real spines)."""

from __future__ import annotations

import numpy as np
import pytest

from modicseg.analysis.config import AnalysisConfig, LesionConfig
from modicseg.analysis.pipeline import analyze_images
from modicseg.analysis.signal_change import normal_range
from modicseg.core.image import LabelImage, ScalarImage
from tests.test_analysis_phantoms import MARROW, PhantomLesion, make_phantom


def _levels(report) -> list[str]:
    return sorted(f"{les.level} {les.endplate}" for les in report.lesions)


def test_normal_range_comes_from_the_typing_bands() -> None:
    typing = AnalysisConfig().typing
    assert normal_range(typing.bands, "t1") == (0.8, 1.2)  # types 1 and 3 low, type 2 high
    assert normal_range(typing.bands, "t2") == (0.8, 1.2)  # type 3 low, type 1 high (type 2 iso or high: none)
    assert normal_range(typing.stir_bands, "t2") == (0.85, 1.5)


def _iso_on_t2(phantom, level_mask: np.ndarray) -> ScalarImage:
    t2 = np.asarray(phantom.t2.array).copy()
    t2[level_mask] = MARROW[1] * float(np.median(t2[phantom.labels.array == 1]) / MARROW[1])
    return ScalarImage(t2, phantom.t2.affine)


def test_a_lesion_like_normal_marrow_on_the_only_image_is_not_counted() -> None:
    ph = make_phantom([PhantomLesion("L4", "inferior", 8.0, types=("1",)),
                       PhantomLesion("L2", "superior", 6.0, types=("1",))])
    labels = np.asarray(ph.labels.array)
    lesion = labels == 3
    # the L2 lesion's voxels: the lesion component in the superior half of the grid (j runs inferior)
    upper = np.zeros_like(lesion)
    upper[:, : labels.shape[1] // 2] = True
    t2 = _iso_on_t2(ph, lesion & upper)

    report = analyze_images(ph.labels, None, t2)
    assert _levels(report) == ["L4 inferior"]
    assert any("normal marrow" in note and "L2 superior" in note for note in report.warnings)
    out = np.asarray(report.labels.array)
    assert not (out[lesion & upper] == 3).any()  # the analysed label map drops it too
    assert (out[lesion & ~upper] == 3).all()

    kept = analyze_images(ph.labels, None, t2,
                          config=AnalysisConfig(lesions=LesionConfig(require_signal_change=False)))
    assert _levels(kept) == ["L2 superior", "L4 inferior"]


def test_a_type_2_change_iso_on_t2_is_counted_with_the_t1() -> None:
    ph = make_phantom([PhantomLesion("L3", "superior", 7.0, types=("2",))])
    lesion = np.asarray(ph.labels.array) == 3
    t2 = _iso_on_t2(ph, lesion)  # fat: iso on T2, bright on T1 (x1.6)
    assert _levels(analyze_images(ph.labels, ph.t1, t2)) == ["L3 superior"]
    assert _levels(analyze_images(ph.labels, None, t2)) == []  # nothing to see on the T2 alone


@pytest.mark.parametrize("cut", [False, True])
def test_a_lesion_at_a_body_end_cut_by_the_field_of_view_is_not_counted(cut: bool) -> None:
    ph = make_phantom([PhantomLesion("S1", "inferior", 7.0, types=("1",)),
                       PhantomLesion("L4", "superior", 7.0, types=("1",))])
    labels = np.asarray(ph.labels.array)
    t1, t2 = np.asarray(ph.t1.array), np.asarray(ph.t2.array)
    if cut:  # the image's lower edge (j runs inferior) cuts S1 a few mm above its inferior endplate
        rows = np.nonzero((labels == 3).any(axis=(0, 2)))[0]
        end = int(rows.max()) - 5  # inside the S1 lesion: a body and lesion cut by the edge
        labels, t1, t2 = labels[:, :end], t1[:, :end], t2[:, :end]
    affine = ph.labels.affine  # cropping the far end keeps the origin
    def image(array: np.ndarray, kind: type) -> object:
        return kind(np.ascontiguousarray(array), affine)

    report = analyze_images(image(labels, LabelImage), image(t1, ScalarImage), image(t2, ScalarImage))
    assert [v.level for v in report.vertebrae][-1] == "S1"
    if cut:
        assert _levels(report) == ["L4 superior"]
        assert any("field of view" in note and "S1 inferior" in note for note in report.warnings)
    else:
        assert _levels(report) == ["L4 superior", "S1 inferior"]
