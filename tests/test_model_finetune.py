"""Fine-tuning: data layouts (modicseg, real-spine, nnU-Net, DICOM SEG), partial labels, resume,
before/after table, and the real-spine notebook (quick mode)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modicseg.core.convert import save_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.model.cases import load_labelled_cases, read_dicom_seg
from modicseg.model.checkpoint import load_checkpoint
from modicseg.model.finetune import FINETUNE_DEFAULTS, finetune
from modicseg.model.toy import toy_cases
from modicseg.model.train import train
from modicseg.model.train_config import load_settings

from .conftest import REAL_SPINE, REPO
from .test_model import tiny_settings

COARSE_MODEL = {
    "spacing_mm": [4.0, 3.0, 3.0], "patch_size": [8, 32, 32], "network": {"filters": [4, 8, 16]},
    "inference": {"roi_size": [16, 128, 128], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1},
}
QUIET = {"progress": False, "log": lambda s: None}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def coarse_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coarse_ckpt")
    settings = tiny_settings(root / "run", steps=6, output=str(root / "model"))
    settings["model"] = COARSE_MODEL
    result = train(settings, **QUIET)
    assert result.exported is not None
    return result.exported


def finetune_settings(run_dir: Path, steps: int = 4, **optim) -> dict:
    return load_settings(base=FINETUNE_DEFAULTS, overrides={
        "run_dir": str(run_dir),
        "optim": {"steps": steps, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "precision": "fp32",
                  "num_threads": 1, **optim},
        "data": {"num_workers": 0, "synthetic": {"enabled": False}, "real": {"fraction": 1.0}},
        "validation": {"every_steps": 0, "fraction": 0.34},
    })


def write_modicseg_cases(root: Path) -> Path:
    """Three toy cases: two fully labelled, one with vertebral bodies only (case.json)."""
    for i, case in enumerate(toy_cases(3, seed=11, shape=(8, 40, 40))):
        folder = root / f"case{i}"
        folder.mkdir(parents=True)
        save_nifti(case.t1, str(folder / "t1.nii.gz"))
        save_nifti(case.t2, str(folder / "t2.nii.gz"))
        labels = case.labels.array
        if i == 2:
            labels = np.isin(labels, [1, 3]).astype(np.uint8) * 7  # bodies only, any label value
            (folder / "case.json").write_text(json.dumps({"annotated_classes": [1], "label_map": {"*": 1}}))
        save_nifti(LabelImage(labels, case.labels.affine), str(folder / "labels.nii.gz"))
    return root


def test_modicseg_layout_and_partial_labels(tmp_path) -> None:
    cases = load_labelled_cases(write_modicseg_cases(tmp_path / "data"))
    assert [c.name for c in cases] == ["case0", "case1", "case2"]
    assert cases[0].annotated == (1, 2, 3) and cases[2].annotated == (1,)
    assert set(np.unique(cases[2].labels.array)) <= {0, 1}
    assert cases[0].labels.same_grid(cases[0].t2)


def test_finetune_starts_from_checkpoint_resumes_and_reports(tmp_path, coarse_checkpoint) -> None:
    data = write_modicseg_cases(tmp_path / "data")
    # lr 0: the fine-tuned weights must be exactly the starting checkpoint's
    frozen = finetune(data, coarse_checkpoint, finetune_settings(tmp_path / "run0", steps=2, lr=0.0),
                      tmp_path / "frozen", **QUIET)
    src, out = load_checkpoint(coarse_checkpoint).state_dict, load_checkpoint(frozen.output).state_dict
    assert all(torch.equal(src[k], out[k]) for k in src)
    # interrupted after one step, then resumed to the end
    settings = finetune_settings(tmp_path / "run", steps=4, max_minutes=0.0)
    first = finetune(data, coarse_checkpoint, settings, tmp_path / "tuned", **QUIET)
    assert not first.train.finished and first.train.step == 1
    settings["optim"]["max_minutes"] = None
    second = finetune(data, coarse_checkpoint, settings, tmp_path / "tuned", **QUIET)
    assert second.train.finished and second.train.step == 4
    meta = json.loads((tmp_path / "tuned" / "metadata.json").read_text())
    assert set(meta["metrics"]) == {"before", "after"} and meta["training"]["validation_cases"]
    report = (tmp_path / "tuned" / "finetune_report.md").read_text()
    assert "| metric | before | after |" in report and "real_dice_" in report


def test_nnunet_layout(tmp_path) -> None:
    root = tmp_path / "Dataset001_Spine"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "vertebral_body": 1, "disc": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    for i, case in enumerate(toy_cases(2, seed=12, shape=(8, 40, 40))):
        save_nifti(case.t1, str(root / "imagesTr" / f"spine_{i:03d}_0000.nii.gz"))
        save_nifti(case.t2, str(root / "imagesTr" / f"spine_{i:03d}_0001.nii.gz"))
        save_nifti(LabelImage(np.where(case.labels.array == 3, 1, case.labels.array), case.labels.affine),
                   str(root / "labelsTr" / f"spine_{i:03d}.nii.gz"))
    cases = load_labelled_cases(root)
    assert [c.name for c in cases] == ["spine_000", "spine_001"]
    assert cases[0].contrasts == ["T1", "T2"] and cases[0].annotated == (1, 2)


def test_dicom_seg_labels(tmp_path) -> None:
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from modicseg.io.dicom_write import SeriesSpec, write_mr_series

    from .dicom_factory import sagittal_affine

    shape = (24, 28, 5)
    affine = sagittal_affine(shape, in_plane=1.0, step=4.0)
    t2 = ScalarImage(np.random.default_rng(0).integers(0, 500, shape).astype(np.uint16), affine)
    files = write_mr_series(t2, tmp_path / "t2", SeriesSpec(4, "T2 TSE SAG", 3000, 100))
    sources = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    mask = np.zeros((len(sources), shape[1], shape[0]), dtype=np.uint8)  # frames, rows (j), columns (i)
    mask[1:4, 5:12, 6:15] = 1
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="vertebral body", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Bone, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(sources, mask, hd.seg.SegmentationTypeValues.BINARY, [desc],
                              hd.UID(), 100, hd.UID(), 1, "modicseg", "test", "0", "0")
    seg.save_as(tmp_path / "labels.dcm")
    labels = read_dicom_seg(tmp_path / "labels.dcm")
    from modicseg.core.resample import resample_to

    on_grid = resample_to(labels, t2)
    expected = np.zeros(shape, dtype=np.uint8)
    expected[6:15, 5:12, 1:4] = 1
    assert np.array_equal(on_grid.array, expected)


@pytest.mark.skipif(not REAL_SPINE.is_dir(), reason="../shared/real-spine not found")
def test_finetune_on_real_spine_few_iterations(tmp_path, coarse_checkpoint) -> None:
    settings = finetune_settings(tmp_path / "run", steps=3)
    settings["data"]["real"]["limit"] = 3
    settings["validation"]["cases"] = ["vb1_03"]
    result = finetune(REAL_SPINE, coarse_checkpoint, settings, tmp_path / "tuned", **QUIET)
    assert result.train.finished
    assert "real_dice_vertebral_body" in result.before and "real_dice_vertebral_body" in result.after
    cases = load_labelled_cases(REAL_SPINE, limit=3)
    assert {c.info["sequence"] for c in cases} == {"T1", "TIRM"}
    assert all(c.annotated == (1,) and set(np.unique(c.labels.array)) == {0, 1} for c in cases)


@pytest.mark.skipif(not REAL_SPINE.is_dir(), reason="../shared/real-spine not found")
def test_finetune_notebook_runs_quick(tmp_path) -> None:
    import nbformat
    from nbclient import NotebookClient

    path = REPO / "notebooks" / "finetune_real_spine.ipynb"
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in ("MODICSEG_NOTEBOOK_QUICK", "MODICSEG_NOTEBOOK_OUT", "OMP_NUM_THREADS")}
    os.environ.update({"MODICSEG_NOTEBOOK_QUICK": "1", "MODICSEG_NOTEBOOK_OUT": str(tmp_path),
                       "OMP_NUM_THREADS": "1"})
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "\n".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "| metric | before | after |" in text
