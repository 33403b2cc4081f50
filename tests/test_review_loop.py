"""Issue 18 items 3-5 in a real napari viewer under Xvfb: the widget shows each lesion's confidence
(hidden with --hide-confidence), and the loop end to end: ``analyze`` two studies, ``review pack
--order doubt``, a reader corrects lesions in the widget, ``review export --training-data``,
``finetune`` a few steps from the shipped model, the new checkpoint loads, and the corrected
voxels are in the training labels."""

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

from modicseg.cli import main  # noqa: E402
from modicseg.core.convert import save_nifti  # noqa: E402
from modicseg.core.labels import BODY, IGNORE, LESION  # noqa: E402
from modicseg.review.pack import pack  # noqa: E402
from modicseg.review.package import Package  # noqa: E402
from modicseg.review.volumes import read_nifti  # noqa: E402
from modicseg.review.widget import CONFIDENCE_COLUMN, ReviewWidget  # noqa: E402
from tests.test_review_helpers import DEFAULT_LESIONS, make_analysis, phantom  # noqa: E402
from tests.test_review_training import _set_confidence  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "modicseg-unet-v1"
#: a few fine-tuning steps on whole 16 x 96 x 96 patches (the shipped model's), annotated cases only
FINETUNE_YAML = """\
optim: {steps: 2, batch_size: 1, warmup_steps: 0, precision: fp32, device: cpu, num_threads: 2,
        checkpoint_every_min: 0}
data: {num_workers: 0, synthetic: {enabled: false}, real: {fraction: 1.0}}
validation: {every_steps: 0}
"""


def _widget(viewer, package: Path, reader: str, **kwargs) -> ReviewWidget:
    widget = ReviewWidget(viewer, package=package, reader=reader, **kwargs)
    viewer.window.add_dock_widget(widget, name="Modic review", area="right")
    return widget


def _confidence_cells(widget: ReviewWidget) -> dict[tuple[str, str], str]:
    return {(row.level, row.endplate): widget.table.item(n, CONFIDENCE_COLUMN).text()
            for n, row in enumerate(widget.rows)}


@pytest.fixture(scope="module")
def confident_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("confidence")
    folder = make_analysis(root / "analyses" / "sub-001" / "ses-baseline", DEFAULT_LESIONS)
    _set_confidence(folder, 0.55, {("L4", "inferior"): 0.93})  # L5 superior: none (older analysis)
    return pack([root / "analyses"], root / "package", seed=1)


def test_widget_shows_lesion_confidence_and_the_reader_can_hide_it(make_napari_viewer, qtbot, confident_package):
    widget = _widget(make_napari_viewer(), confident_package.package, "Dr Sure")
    assert widget.confidence_shown and widget.confidence_box.isChecked() and widget.confidence_box.isEnabled()
    assert _confidence_cells(widget) == {("L4", "inferior"): "0.93", ("L5", "superior"): "—"}
    widget.confidence_box.setChecked(False)  # the reader hides it for an unbiased read
    assert not widget.confidence_shown
    widget.confidence_box.setChecked(True)
    assert widget.confidence_shown
    # an added lesion has no model confidence
    layer = widget.lesion_layer
    vertebra = next(v for v in widget.state.vset.vertebrae if v.level == "L3")
    spot = np.round(widget.state.grid.world_to_display(vertebra.centre_ras[None])[0]).astype(int)
    spot[1] -= 8
    widget.viewer.dims.set_current_step(0, int(spot[0]))
    layer.paint(tuple(spot), 1)
    qtbot.waitUntil(lambda: any(r.status == "added" for r in widget.rows), timeout=5000)
    assert _confidence_cells(widget)[("L3", "superior")] == "—"
    widget.close_session()


def test_hide_confidence_hides_it_for_the_whole_read(make_napari_viewer, confident_package):
    widget = _widget(make_napari_viewer(), confident_package.package, "Dr Blind", show_confidence=False)
    assert not widget.confidence_shown
    assert not widget.confidence_box.isChecked() and not widget.confidence_box.isEnabled()
    widget.show_confidence(True)  # not even through the API
    assert not widget.confidence_shown
    assert "0.93" not in _confidence_cells(widget).values()  # not computed, not merely hidden
    widget.close_session()


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="the shipped model is not in models/")
def test_corrections_become_training_data_and_fine_tune_the_model(make_napari_viewer, qtbot, tmp_path, capsys):
    from modicseg.model.cases import load_labelled_cases
    from modicseg.model.checkpoint import load_checkpoint

    # 1. analyze two studies (the labels are given: the analysis itself, without the network's time)
    analyses = tmp_path / "analyses"
    for n, (session, lesions) in enumerate((("baseline", DEFAULT_LESIONS),
                                            ("1year", (("L4", "inferior", "1", 12.0),)))):
        labels, t1, t2 = phantom(lesions, seed=n)
        study = tmp_path / "studies" / f"s{n}"
        study.mkdir(parents=True)
        for name, image in (("t1", t1), ("t2", t2), ("labels", labels)):
            save_nifti(image, str(study / f"{name}.nii.gz"))
        out = analyses / "sub-0042" / f"ses-{session}"
        assert main(["analyze", "--t1", str(study / "t1.nii.gz"), "--t2", str(study / "t2.nii.gz"),
                     "--labels", str(study / "labels.nii.gz"), "-o", str(out)]) == 0
    # 2. pack, most doubtful first
    package = tmp_path / "package"
    assert main(["review", "pack", str(analyses), "-o", str(package), "--order", "doubt", "--seed", "9"]) == 0
    capsys.readouterr()

    # 3. a reader corrects the first case in the widget: rejects a lesion, paints a missed one
    viewer = make_napari_viewer()
    widget = _widget(viewer, package, "Dr Loop")
    state = widget.state
    corrected_code = state.code
    predicted = np.asarray(state.case.labels("lesions").array)
    rejected = widget.rows[0]
    widget.table.selectRow(0)
    widget.reject_selected()
    qtbot.waitUntil(lambda: any(r.status == "rejected" for r in widget.rows), timeout=5000)
    vertebra = next(v for v in state.vset.vertebrae if v.level == "L3")
    spot = np.round(state.grid.world_to_display(vertebra.centre_ras[None])[0]).astype(int)
    spot[1] -= 8  # towards L3's superior endplate
    viewer.dims.set_current_step(0, int(spot[0]))
    widget.lesion_layer.brush_size = 5
    widget.lesion_layer.paint(tuple(spot), 1)  # a missed type 1 lesion, as a reader's brush stroke
    qtbot.waitUntil(lambda: any(r.status == "added" for r in widget.rows), timeout=5000)
    read = state.grid.from_display(np.asarray(widget.lesion_layer.data))
    added = (read > 0) & (predicted == 0)
    removed = np.zeros(predicted.size, dtype=bool)
    removed[rejected.flat_index] = True
    removed = removed.reshape(predicted.shape)
    assert added.sum() > 10 and removed.any() and not read[removed].any()
    widget.done()  # case done, the next one opens
    assert widget.state.code != corrected_code
    widget.done()  # the second case: the model's lesions accepted as they are
    widget.close_session()

    # 4. the corrections as a fine-tuning dataset
    train = tmp_path / "train"
    assert main(["review", "export", str(package), "--training-data", str(train)]) == 0
    assert "2 consensus label maps" in capsys.readouterr().out
    labels = np.asarray(read_nifti(train / "labelsTr" / f"{corrected_code}.nii.gz", label=True).array)
    assert (labels[added] == LESION).all()  # the lesion the reader painted is a lesion to learn
    assert (labels[removed] == BODY).all()  # the one they rejected is marrow
    assert not (labels == IGNORE).any()  # one reader: no ties
    cases = {c.name: c for c in load_labelled_cases(train)}
    assert set(cases) == set(Package.open(package).codes)
    assert (np.asarray(cases[corrected_code].labels.array)[added] == LESION).all()

    # 5. fine-tune a few steps from the shipped model; the before/after table is printed
    config = tmp_path / "finetune.yaml"
    config.write_text(FINETUNE_YAML)
    tuned = tmp_path / "tuned"
    assert main(["finetune", "--data", str(train), "--from", str(SHIPPED), "--config", str(config),
                 "--run-dir", str(tmp_path / "run"), "-o", str(tuned), "--no-progress", "--fresh"]) == 0
    printed = capsys.readouterr().out
    assert "fine-tuning on 1 case(s), validating on 1" in printed
    assert "| metric | before | after | change |" in printed and "| real_dice_modic_lesion |" in printed
    assert f"fine-tuned checkpoint written to {tuned}" in printed

    # 6. the new checkpoint loads, and it is not the old one
    new, old = load_checkpoint(tuned), load_checkpoint(SHIPPED)
    assert Path(new.metadata["training"]["fine_tuned_from"]).resolve() == SHIPPED.resolve()
    new_weights, old_weights = new.build_model("cpu").state_dict(), old.build_model("cpu").state_dict()
    assert new_weights.keys() == old_weights.keys()
    assert any(not np.array_equal(new_weights[k].numpy(), old_weights[k].numpy()) for k in new_weights)
