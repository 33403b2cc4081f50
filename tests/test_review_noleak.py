"""No identifier of the DICOM input reaches a reading package, its database or the viewer.

Two time points of one subject are written as DICOM studies whose patient name, ID, birth date
and accession number are canary strings; they are analysed with the real ``analyze`` (label map
given) into folders named after the patient ID, packed through a manifest that also names the
time point and the trial arm, and then read in the widget.
"""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from modicseg.core.convert import save_nifti
from modicseg.io.dicom_write import SeriesSpec, write_mr_series
from modicseg.review.pack import pack
from tests.dicom_factory import CANARY_BIRTH, CANARY_ID, CANARY_NAME, T1_SERIES, T2_SERIES, canary_study
from tests.test_review_helpers import phantom

STUDY_DATES = {"baseline": "20240305", "1year": "20250311"}
ARM = "probiotic-arm"
FORBIDDEN = [CANARY_NAME, CANARY_ID, CANARY_BIRTH, "CANARY", "LEAKTEST", *STUDY_DATES.values(), "baseline",
             "1year", ARM, T1_SERIES["description"], T2_SERIES["description"], "LUMBAR SPINE"]


def _strings_in(folder: Path) -> list[tuple[str, str]]:
    """(where, text) for every file name and every file's content (gzip streams decompressed)."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        out.append((rel, rel))
        if path.is_file():
            data = path.read_bytes()
            out.append((rel, data.decode("latin-1")))
            if data[:2] == b"\x1f\x8b":
                out.append((rel + " (gunzipped)", gzip.decompress(data).decode("latin-1")))
    return out


def assert_no_leak(folder: Path, extra: list[str] = ()) -> None:
    for where, text in _strings_in(folder):
        lowered = text.casefold()
        for token in [*FORBIDDEN, *extra]:
            assert token.casefold() not in lowered, f"{token!r} found in {where}"


@pytest.fixture(scope="module")
def canary_package(tmp_path_factory):
    from modicseg.io.study import StudyRequest
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report

    root = tmp_path_factory.mktemp("canary")
    lines = ["analysis,subject,timepoint,arm,study"]
    for n, (timepoint, date) in enumerate(STUDY_DATES.items()):
        lesions = (("L4", "inferior", "1", 9.0),) if n == 0 else (("L4", "inferior", "2", 9.0),)
        labels, t1, t2 = phantom(lesions, seed=n)
        study = canary_study(study_date=date)
        dicom = root / f"{CANARY_ID}_{date}"
        write_mr_series(t1, dicom / "s3", SeriesSpec(series_number=3, **T1_SERIES), study)
        write_mr_series(t2, dicom / "s4", SeriesSpec(series_number=4, **T2_SERIES), study)
        save_nifti(labels, str(root / f"labels_{n}.nii.gz"))
        report = analyze(StudyRequest(path=dicom), labels=root / f"labels_{n}.nii.gz")
        folder = root / "analyses" / f"{CANARY_ID}_{timepoint}"
        write_report(report, folder, qc=False)
        lines.append(f"analyses/{folder.name},{CANARY_ID},{timepoint},{ARM},{dicom.name}")
    # the inputs really do carry the canaries
    assert CANARY_NAME.encode() in next((root / f"{CANARY_ID}_20240305" / "s3").iterdir()).read_bytes()
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    result = pack([manifest], root / "package", key=root / "keys" / "key.json")
    return result


def test_package_files_hold_no_identifier(canary_package):
    assert len(canary_package.codes) == 2
    assert_no_leak(canary_package.package)
    key = canary_package.key.read_text()
    assert CANARY_ID in key and "baseline" in key and ARM in key  # the key alone links codes to people


def test_database_masks_and_window_titles_hold_no_identifier(canary_package, request, qtbot):
    pytest.importorskip("napari")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("napari needs a display (run under xvfb-run)")
    from qtpy.QtWidgets import QApplication

    from modicseg.review.widget import ReviewWidget

    viewer = request.getfixturevalue("make_napari_viewer")(show=True)
    try:
        widget = ReviewWidget(viewer, package=canary_package.package, reader="Dr Reader")
        viewer.window.add_dock_widget(widget, name="Modic review", area="right")
        for _ in range(2):
            layer = widget.lesion_layer
            centre = np.array(layer.data.shape) // 2
            layer.paint(tuple(centre), 1)
            qtbot.waitUntil(lambda: bool(widget.rows), timeout=5000)
            titles = {viewer.title, *(w.windowTitle() for w in QApplication.topLevelWidgets())}
            texts = [widget.case_label.text(), widget.position_label.text(), widget.package_label.text(),
                     widget.status_label.text(), *(layer.name for layer in viewer.layers)]
            for text in [*titles, *texts]:
                for token in FORBIDDEN:
                    assert token.casefold() not in text.casefold(), (token, text)
            assert viewer.title == f"Modic review — {widget.state.code}"
            widget.done()
    finally:
        viewer.close()
    assert_no_leak(canary_package.package)
    assert any(canary_package.package.rglob("*.sqlite")) and any(canary_package.package.rglob("r0001-*.nii.gz"))
