"""The napari plugin under Xvfb: reader, dock widget, editing, saving, resuming, screenshots."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("napari needs a display with OpenGL (run under xvfb-run)", allow_module_level=True)

from modicseg.review.napari_reader import napari_get_reader  # noqa: E402
from modicseg.review.pack import pack  # noqa: E402
from modicseg.review.package import Package  # noqa: E402
from modicseg.review.session import ReviewSession  # noqa: E402
from modicseg.review.volumes import read_nifti  # noqa: E402
from modicseg.review.widget import ReviewWidget  # noqa: E402
from tests.test_review_helpers import make_analysis, make_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: The screenshots go to docs/images only when asked (MODICSEG_UPDATE_DOCS_IMAGES=1), so that a
#: test run leaves the working tree as it was.
DOCS_IMAGES = REPO / "docs" / "images"


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    make_cohort(root / "analyses")
    return pack([root / "analyses"], root / "package", seed=5)


@pytest.fixture(scope="module")
def packed_spine(tmp_path_factory):
    """A reading package of one synthetic lumbar spine with two Modic changes (the screenshot's
    case: it should look like what a reader sees)."""
    from modicseg.analysis.pipeline import analyze_images
    from modicseg.core.convert import save_nifti
    from modicseg.report.writers import write_report
    from modicseg.synth.case import CaseOptions, generate_case

    root = tmp_path_factory.mktemp("gui-spine")
    case = generate_case(21, options=CaseOptions(lumbar_count=5, lesion_count=2, lesion_types=["1", "2"],
                                                 separate_t1_grid=False, fracture=False))
    report = analyze_images(case.labels, t1=case.t1, t2=case.t2)
    folder = root / "analyses" / "sub-001" / "ses-baseline"
    write_report(report, folder, qc=False, dicom_seg=False)
    save_nifti(case.t1, str(folder / "t1.nii.gz"))
    save_nifti(case.t2, str(folder / "t2.nii.gz"))
    return pack([root / "analyses"], root / "package", seed=5)


def _widget(viewer, package: Path, reader: str) -> ReviewWidget:
    widget = ReviewWidget(viewer, package=package, reader=reader)
    viewer.window.add_dock_widget(widget, name="Modic review", area="right")
    return widget


def _open_case_with_lesions(widget: ReviewWidget, at_least: int = 1) -> None:
    session = widget.session
    for index in range(len(session.worklist)):
        if len(session.package.case(session.worklist[index]).model_lesions) >= at_least:
            widget.show_case(session.open_index(index))
            return
    raise AssertionError("no case with lesions")


def _centre_of_level(widget: ReviewWidget, level: str) -> np.ndarray:
    state = widget.state
    vertebra = next(v for v in state.vset.vertebrae if v.level == level)
    return np.round(state.grid.world_to_display(vertebra.centre_ras[None])[0]).astype(int)


def test_widget_opens_a_case_with_the_right_scales(make_napari_viewer, packed):
    viewer = make_napari_viewer()
    widget = _widget(viewer, packed.package, "Dr Scale")
    state = widget.state
    assert state is not None and state.code == Package.open(packed.package).worklist("Dr Scale")[0]
    assert [layer.name for layer in viewer.layers] == ["T1", "T2", "anatomy", "lesions", "levels"]
    zooms = read_nifti(packed.package / "cases" / state.code / "t2.nii.gz").spacing
    expected = tuple(float(zooms[axis]) for axis in state.grid.axis_map)
    assert expected == pytest.approx((4.0, 1.0, 1.0))  # the thick sagittal slice axis is the slider
    for layer in viewer.layers[:4]:
        assert tuple(layer.scale) == pytest.approx(expected)
        assert layer.data.shape == state.grid.display_shape
    assert tuple(viewer.layers["levels"].scale) == pytest.approx(expected[1:])
    assert list(viewer.layers["levels"].features["level"]) == ["L3", "L4", "L5", "S1"]
    assert viewer.dims.ndisplay == 2 and viewer.dims.not_displayed == (0,)
    assert viewer.title == f"Modic review — {state.code}"
    assert viewer.window._qt_window.windowTitle() == viewer.title
    assert widget.table.rowCount() == len(state.model_rows)


def test_editing_updates_the_table_and_is_saved(make_napari_viewer, qtbot, packed):
    viewer = make_napari_viewer()
    widget = _widget(viewer, packed.package, "Dr Edit")
    _open_case_with_lesions(widget)
    layer = widget.lesion_layer
    before = widget.rows[0]
    assert before.status == "pending"
    centre = np.round(widget.state.display_centre(before)).astype(int)
    viewer.dims.set_current_step(0, int(centre[0]))
    layer.brush_size = 5
    layer.paint(tuple(centre), 0)  # the eraser, as a reader's brush stroke
    qtbot.waitUntil(lambda: widget.rows and widget.rows[0].status == "edited", timeout=5000)
    edited = widget.rows[0]
    assert edited.volume_mm3 < before.volume_mm3
    assert widget.table.item(0, 5).text() == "edited"
    assert widget.table.item(0, 4).text() == f"{edited.volume_mm3:.0f}"

    spot = _centre_of_level(widget, "L3")
    spot[1] -= 8  # towards the superior endplate of L3
    viewer.dims.set_current_step(0, int(spot[0]))
    layer.paint(tuple(spot), 1)  # a missed type 1 lesion
    qtbot.waitUntil(lambda: any(r.status == "added" for r in widget.rows), timeout=5000)
    added = next(r for r in widget.rows if r.status == "added")
    assert (added.level, added.endplate, added.type) == ("L3", "superior", "1")

    index = widget.rows.index(added)
    widget.table.cellWidget(index, 2).setCurrentText("2/1")
    qtbot.waitUntil(lambda: any(r.type == "2/1" for r in widget.rows), timeout=5000)
    assert next(r for r in widget.rows if r.type == "2/1").status == "added"

    widget.comment.setPlainText("endplate irregular")
    assert widget.save()
    session = widget.session
    record = session.store.get_read(session.package.package_id, widget.state.code, "Dr Edit")
    assert record.comment == "endplate irregular" and record.status == "in_progress"
    assert sorted(les["status"] for les in record.lesions) == sorted(r.status for r in widget.rows)
    saved = session.store.load_mask(record)
    assert np.array_equal(saved, widget.state.grid.from_display(np.asarray(layer.data)))

    widget.table.selectRow(index)
    widget.reject_selected()
    assert not any(r.status == "added" for r in widget.rows)


def test_closing_and_reopening_resumes(make_napari_viewer, qtbot, packed):
    viewer = make_napari_viewer()
    widget = _widget(viewer, packed.package, "Dr Resume")
    first = widget.state.code
    widget.done()
    second = widget.state.code
    assert second != first
    layer = widget.lesion_layer
    spot = _centre_of_level(widget, "L5")
    viewer.dims.set_current_step(0, int(spot[0]))
    layer.paint(tuple(spot), 3)
    qtbot.waitUntil(lambda: any(r.status in ("added", "edited") for r in widget.rows), timeout=5000)
    edited = np.array(layer.data)
    viewer.close()  # closing the window saves the open case

    viewer = make_napari_viewer()
    widget = _widget(viewer, packed.package, "  dr resume ")
    assert widget.state.code == second
    assert np.array_equal(widget.lesion_layer.data, edited)
    assert any(r.status in ("added", "edited") for r in widget.rows)
    store, package_id = widget.session.store, widget.session.package.package_id
    assert store.get_read(package_id, first, "Dr Resume").status == "done"
    assert store.get_read(package_id, second, "Dr Resume").seconds_spent > 0
    assert widget.position_label.text().startswith("2 / 4 · 1 done")


def test_reading_time_leaves_out_a_break(make_napari_viewer, qtbot, packed):
    """30 s of reading, an hour away from the desk, 10 s more: the saved time counts the break only
    up to the idle limit. Activity comes from real Qt key and mouse events; time from a fake clock."""
    from modicseg.review.activity import IDLE_AFTER_S, ActivityClock

    viewer = make_napari_viewer()
    widget = _widget(viewer, packed.package, "Dr Break")
    assert widget.idle_after_s == IDLE_AFTER_S
    now = [1000.0]
    widget.state.activity = ActivityClock(widget.idle_after_s, now=lambda: now[0])
    now[0] += 30.0
    qtbot.keyClick(widget.comment, "a")
    now[0] += 3600.0
    qtbot.mouseMove(widget.comment)
    qtbot.keyClick(widget.comment, "b")
    now[0] += 10.0
    code = widget.state.code
    assert widget.save()
    read = widget.session.store.get_read(widget.session.package.package_id, code, "Dr Break")
    assert read.seconds_spent == pytest.approx(30.0 + IDLE_AFTER_S + 10.0)
    assert widget.state.elapsed(reset=False) == 0.0  # saving restarts the clock
    viewer.close()


def test_screenshot_of_the_widget(make_napari_viewer, qtbot, packed_spine, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 940)
    widget = _widget(viewer, packed_spine.package, "Dr Screenshot")
    _open_case_with_lesions(widget, at_least=2)
    layer = widget.lesion_layer
    first = widget.rows[0]
    centre = np.round(widget.state.display_centre(first)).astype(int)
    viewer.dims.set_current_step(0, int(centre[0]))
    layer.brush_size = 4
    layer.paint(tuple(centre), 0)
    spot = _centre_of_level(widget, "L4")
    spot[1] += 8
    spot[0] = centre[0]
    layer.paint(tuple(spot), 1)
    qtbot.waitUntil(lambda: any(r.status == "added" for r in widget.rows), timeout=5000)
    widget.table.selectRow(0)
    widget.comment.setPlainText("L4 inferior: small type 1 change missed by the model")
    viewer.dims.set_current_step(0, int(centre[0]))
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for note in viewer.window._qt_window.findChildren(NapariQtNotification):
        note.close()
    qtbot.wait(200)
    folder = DOCS_IMAGES if os.environ.get("MODICSEG_UPDATE_DOCS_IMAGES") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "review_widget.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    widget.grab().save(str(folder / "review_dock.png"))
    assert path.stat().st_size > 10_000 and (folder / "review_dock.png").stat().st_size > 5_000
    widget.close_session()


def test_napari_reader_for_cases_and_analyses(packed, tmp_path):
    code = Package.open(packed.package).codes[0]
    reader = napari_get_reader(str(packed.package / "cases" / code))
    layers = reader(str(packed.package / "cases" / code))
    assert [kw["name"] for _, kw, _ in layers] == ["T1", "T2", "anatomy", "lesions", "levels"]
    assert layers[0][1]["scale"] == pytest.approx((4.0, 1.0, 1.0))
    folder = make_analysis(tmp_path / "analysis")
    layers = napari_get_reader([str(folder)])(str(folder))
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["T1", "T2", "anatomy", "lesions", "levels"]
    assert int(np.count_nonzero(layers[3][0])) > 0
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader(str(packed.package)) is None


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(REPO / "src" / "modicseg" / "napari.yaml")
    manifest.validate_imports()
    assert manifest.name == "modicseg"
    assert [w.display_name for w in manifest.contributions.widgets] == ["Modic review"]


def test_session_without_gui(packed):
    session = ReviewSession.open(packed.package, "Dr Headless")
    try:
        state = session.resume()
        assert state.code == session.worklist[0]
        record = session.save(status="done")
        assert record.status == "done" and all(les["status"] != "pending" for les in record.lesions)
        assert session.resume().code == session.worklist[1]
    finally:
        session.close()


def test_plugin_reader_and_widget_through_napari(make_napari_viewer, npe2pm, packed):
    viewer = make_napari_viewer()
    code = Package.open(packed.package).codes[0]
    with npe2pm.tmp_plugin(manifest=str(REPO / "src" / "modicseg" / "napari.yaml")):
        layers = viewer.open(str(packed.package / "cases" / code), plugin="modicseg")
        assert [layer.name for layer in layers] == ["T1", "T2", "anatomy", "lesions", "levels"]
        assert tuple(viewer.layers["T2"].scale) == pytest.approx((4.0, 1.0, 1.0))
        _, widget = viewer.window.add_plugin_dock_widget("modicseg", "Modic review")
        assert isinstance(widget, ReviewWidget)
        assert widget.open_package(packed.package)
        widget.reader_edit.setText("Dr Plugin")
        assert widget.start() and viewer.title.endswith(widget.state.code)
