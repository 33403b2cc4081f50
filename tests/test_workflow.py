"""The documented review workflow end to end, with no hand-made files (docs/review.md):
``modicseg analyze`` on two DICOM studies, ``review pack`` of the analyses folder, a reader reading
every case (``review open``: through the session the widget drives, and through the CLI in napari
where a display exists), ``review status`` and ``review export``."""

from __future__ import annotations

import csv
import json

import jsonschema
import numpy as np
import pytest

from modicseg.cli import main
from modicseg.core.convert import load_nifti, save_nifti
from modicseg.report.schema import validate_case
from tests.test_analysis_phantoms import PhantomLesion, make_phantom, write_phantom_dicom

#: subject -> its lesions: 001 has a type-1 change of 31 % (eligible), 002 a type-2 change only
SUBJECTS = {"001": [PhantomLesion("L4", "inferior", 8.0, types=("1",))],
            "002": [PhantomLesion("L2", "superior", 5.0, types=("2",))]}


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    for number, (subject, lesions) in enumerate(SUBJECTS.items()):
        phantom = make_phantom(lesions, seed=20 + number)
        study = write_phantom_dicom(phantom, root / "studies" / f"sub-{subject}")
        labels = root / "labels" / f"sub-{subject}.nii.gz"
        labels.parent.mkdir(parents=True, exist_ok=True)
        save_nifti(phantom.labels, str(labels))
        out = root / "analyses" / f"sub-{subject}" / "ses-baseline"
        assert main(["analyze", str(study), "--labels", str(labels), "-o", str(out), "--no-qc", "--no-seg"]) == 0
    return root


@pytest.fixture(scope="module")
def package(analyses):
    folder = analyses / "package"
    assert main(["review", "pack", str(analyses / "analyses"), "-o", str(folder), "--seed", "17"]) == 0
    return folder


def test_analyze_writes_the_images_a_reading_package_needs(analyses):
    for subject in SUBJECTS:
        out = analyses / "analyses" / f"sub-{subject}" / "ses-baseline"
        labels = load_nifti(out / "labels.nii.gz")
        for name in ("t1.nii.gz", "t2.nii.gz"):
            image = load_nifti(out / name)
            assert image.shape == labels.shape and np.allclose(image.affine, labels.affine, atol=1e-4)
            assert float(np.asarray(image.array).std()) > 0  # the image itself, not an empty grid


def test_pack_read_status_export_without_hand_made_files(analyses, package, capsys):
    from modicseg.review.package import Package
    from modicseg.review.session import ReviewSession

    key = package.parent / "package-key.json"
    assert key.is_file()
    pkg = Package.open(package)
    assert len(pkg.codes) == 2
    for code in pkg.codes:  # each case shows the analysis's own images
        case = package / "cases" / code
        assert (case / "t1.nii.gz").is_file() and (case / "t2.nii.gz").is_file()
        info = json.loads((case / "case.json").read_text())
        validate_case(info)  # (pack validated it too: the suite sets MODICSEG_VALIDATE_OUTPUTS)
        info["model"]["lesions"][0]["type"] = "1/3"
        with pytest.raises(jsonschema.ValidationError):
            validate_case(info)
    session = ReviewSession.open(package, reader="Dr Flow")  # what `review open --reader` drives
    for index in range(len(session.worklist)):
        session.open_index(index)
        session.save(status="done")
    session.close()
    capsys.readouterr()
    assert main(["review", "status", str(package)]) == 0
    assert "Dr Flow: 2/2 done" in capsys.readouterr().out
    out = analyses / "export"
    assert main(["review", "export", str(package), "--key", str(key), "-o", str(out)]) == 0
    with open(out / "reads.csv", newline="") as fh:
        reads = {row["subject"]: row for row in csv.DictReader(fh)}
    assert set(reads) == set(SUBJECTS)
    assert {row["reader"] for row in reads.values()} == {"Dr Flow"}
    assert all(row["status"] == "done" for row in reads.values())
    assert (reads["001"]["eligible"], reads["002"]["eligible"]) == ("yes", "no")
    with open(out / "lesions.csv", newline="") as fh:
        lesions = [(row["subject"], row["rater"], row["level"], row["endplate"], row["type"], row["status"])
                   for row in csv.DictReader(fh)]
    assert sorted(lesions) == sorted([
        ("001", "Dr Flow", "L4", "inferior", "1", "accepted"), ("001", "model", "L4", "inferior", "1", "model"),
        ("002", "Dr Flow", "L2", "superior", "2", "accepted"), ("002", "model", "L2", "superior", "2", "model")])
    agreement = json.loads((out / "agreement.json").read_text())
    assert agreement["readers"] == ["Dr Flow"] and agreement["reads"] == 2
    kappa = {row["measure"]: row["value"] for row in agreement["agreement"] if row["comparison"] == "model vs reader"
             and row["statistic"] == "Cohen's kappa"}
    assert kappa["type per level and endplate"] == 1.0  # the reader accepted the model's lesions


def test_review_open_reads_the_package_in_napari(package, monkeypatch, qtbot, capsys):
    """``modicseg review open PACKAGE --reader NAME`` as a reader runs it: the event loop is replaced by
    the reader marking every case done and closing the window."""
    napari = pytest.importorskip("napari")
    import modicseg.review.widget as widget_module

    opened = []

    class Recording(widget_module.ReviewWidget):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    def read_everything() -> None:
        [widget] = opened
        assert widget.state is not None  # --reader started the worklist
        for _ in widget.session.worklist:
            widget.done()
        widget.viewer.close()  # closing the window saves and releases the database

    monkeypatch.setattr(widget_module, "ReviewWidget", Recording)
    monkeypatch.setattr(napari, "run", read_everything)
    assert main(["review", "open", str(package), "--reader", "Dr Window"]) == 0
    capsys.readouterr()
    assert main(["review", "status", str(package)]) == 0
    assert "Dr Window: 2/2 done" in capsys.readouterr().out
