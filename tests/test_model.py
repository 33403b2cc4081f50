"""The segmentation model stage: config, network, loss, geometry, training, checkpoints, inference.

Tiny networks and volumes only: the whole file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from modicseg.core.convert import save_nifti
from modicseg.core.image import LabelImage, Provenance, ScalarImage
from modicseg.core.resample import resample_to
from modicseg.model.checkpoint import load_checkpoint, save_checkpoint
from modicseg.model.config import ModelConfig, NetworkConfig
from modicseg.model.data import TrainingStream, volume_from_arrays
from modicseg.model.inference import Segmenter
from modicseg.model.losses import PartialDiceCELoss, group_matrices, group_matrix
from modicseg.model.network import build_network, plan_anisotropic
from modicseg.model.preprocess import model_grid, probabilities_to_labels, reorient, to_model_space
from modicseg.model.toy import toy_cases, toy_sample
from modicseg.model.train import train
from modicseg.model.train_config import load_settings

TINY_MODEL = {
    "spacing_mm": [4.0, 1.0, 1.0], "patch_size": [8, 32, 32],
    "network": {"filters": [4, 8, 16]},
    "inference": {"roi_size": [8, 64, 64], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1},
}


def tiny_settings(run_dir: Path, steps: int = 12, **extra) -> dict:
    """Settings for a few-second training run on toy phantoms."""
    over = {
        "run_dir": str(run_dir), "model": TINY_MODEL,
        "optim": {"steps": steps, "batch_size": 2, "lr": 0.01, "warmup_steps": 0, "precision": "fp32",
                  "num_threads": 1},
        "data": {"num_workers": 0, "synthetic": {"source": "toy", "pool_size": 3, "generator": {"shape": [8, 40, 40]}}},
        "validation": {"every_steps": 0, "synthetic": {"n_cases": 0}},
    }
    for key, value in extra.items():
        over[key] = {**over.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(overrides=over)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config() -> ModelConfig:
    return ModelConfig.from_dict(TINY_MODEL).resolved()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A toy-trained tiny checkpoint (shared by the inference tests)."""
    root = tmp_path_factory.mktemp("tiny_ckpt")
    result = train(tiny_settings(root / "run", steps=30, output=str(root / "model")), progress=False,
                   log=lambda s: None)
    assert result.exported is not None
    return result.exported


def oblique_affine(spacing=(0.6, 0.6, 4.0), angle_deg=10.0) -> np.ndarray:
    """A DICOM-like sagittal affine: i = A->P columns, j = S->I rows, k = slices, slightly rotated."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    axes = np.array([[0, -1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float).T  # columns: i->P, j->I, k->L
    m = np.eye(4)
    m[:3, :3] = rot @ axes @ np.diag(spacing)
    m[:3, 3] = [20.0, 60.0, 90.0]
    return m


# --- config, network, loss -----------------------------------------------------------------------

def test_config_round_trip_and_anisotropic_plan(tmp_path) -> None:
    cfg = ModelConfig(network=NetworkConfig(filters=[16, 32, 64, 128, 256])).resolved()
    cfg.save(tmp_path / "config.json")
    again = ModelConfig.load(tmp_path / "config.json")
    assert again == cfg
    assert again.in_channels == 4 and again.out_channels == 4
    kernels, strides = plan_anisotropic([4.0, 1.0, 1.0], [16, 128, 128], 5)
    assert kernels[0] == [1, 3, 3] and strides[1] == [1, 2, 2]  # thick axis: kernel 1, stride 1 first
    assert strides[2][0] == 1 and kernels[-1] == [3, 3, 3]
    data = json.loads((tmp_path / "config.json").read_text())
    for key in ("channels", "orientation", "spacing_mm", "normalization", "labels", "version"):
        assert key in data


def test_partial_loss_ignores_unannotated_classes() -> None:
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # vertebral body in the first half; background elsewhere
    logits = torch.full((1, 4, 4, 4, 4), -10.0)
    logits[0, 1, :2] = 10.0  # body where labelled
    logits[0, 2, 2:] = 10.0  # "disc" where the label says background
    loss = PartialDiceCELoss()
    bodies_only = group_matrices([[1]], 4, {3: 1})
    full = group_matrices([[1, 2, 3]], 4, {3: 1})
    assert float(loss(logits, target, bodies_only)) < 1e-3  # disc is not annotated: no penalty
    assert float(loss(logits, target, full)) > 1.0  # fully annotated: the disc is wrong
    lesion_in_body = logits.clone()
    lesion_in_body[0, 1, :2], lesion_in_body[0, 3, :2] = -10.0, 10.0
    assert float(loss(lesion_in_body, target, bodies_only)) < 1e-3  # a lesion lies inside a body
    g = group_matrix([1], 4, {3: 1})
    assert g[0].tolist() == [1, 0, 1, 0] and g[1].tolist() == [0, 1, 0, 1]


def test_tiny_network_trains_and_loss_falls() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_network(cfg)
    rng = np.random.default_rng(0)
    samples = [toy_sample(rng, (8, 32, 32)) for _ in range(4)]
    stream = TrainingStream(cfg, tiny_settings(Path("unused")), volume_fn=lambda r: volume_from_arrays(
        *samples[int(r.integers(4))], cfg))
    batches = iter(torch.utils.data.DataLoader(stream, batch_size=4))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = PartialDiceCELoss()
    losses = []
    for _ in range(25):
        x, y, g = next(batches)
        assert x.shape == (4, 4, 8, 32, 32)
        loss = loss_fn(model(x), y, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


# --- geometry ------------------------------------------------------------------------------------

def test_reorient_is_exact_and_model_grid_keeps_thick_axis() -> None:
    t2 = ScalarImage(np.random.default_rng(0).random((40, 50, 9)).astype(np.float32), oblique_affine())
    r = reorient(t2, "RAS")
    assert r.axcodes == ("R", "A", "S") and r.shape == (9, 40, 50)
    # every voxel keeps its value and its world position
    for ijk in ([0, 0, 0], [3, 17, 41], [8, 39, 49]):
        world = r.world_coordinates(np.array([ijk]))
        src = np.rint(t2.voxel_coordinates(world)[0]).astype(int)
        assert r.array[tuple(ijk)] == t2.array[tuple(src)]
    grid = model_grid(t2, tiny_config())
    spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
    assert np.allclose(spacing, [4.0, 1.0, 1.0])  # native 4 mm slices kept, 1 mm in-plane
    assert grid.shape[0] == 9


def test_probabilities_back_on_reference_grid_exact_affine() -> None:
    affine = oblique_affine()
    t2 = ScalarImage(np.zeros((40, 50, 9), dtype=np.float32), affine)
    labels = np.zeros(t2.shape, dtype=np.uint8)
    labels[10:30, 10:40, 2:7] = 1
    x, grid = to_model_space({"T2": t2.with_array(labels.astype(np.float32))}, tiny_config())
    onehot = np.stack([x[1] < 0.5, x[1] >= 0.5, np.zeros_like(x[1]), np.zeros_like(x[1])]).astype(np.float32)
    back = probabilities_to_labels(onehot, grid)
    assert back.shape == t2.shape and np.array_equal(back.affine, t2.affine)
    inter = np.logical_and(back.array == 1, labels == 1).sum()
    assert 2 * inter / ((back.array == 1).sum() + labels.sum()) > 0.9


# --- checkpoints and inference -------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path, tiny_checkpoint) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    model = ckpt.build_model()
    save_checkpoint(tmp_path / "copy", model, ckpt.config, ckpt.metadata)
    again = load_checkpoint(tmp_path / "copy")
    assert again.config == ckpt.config
    x = torch.randn(1, 4, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again.build_model()(x))
    meta = json.loads((tiny_checkpoint / "metadata.json").read_text())
    assert {"version", "network_data_format", "metrics", "training"} <= set(meta)
    assert (tiny_checkpoint / "train_log.csv").is_file()


def test_segment_output_on_t2_grid_with_identical_affine(tiny_checkpoint) -> None:
    seg = Segmenter.load(tiny_checkpoint, device="cpu")
    case = toy_cases(1, seed=3, shape=(8, 40, 40))[0]
    # put the T2 on an oblique DICOM-like grid and the T1 on another grid of the same space
    t2 = resample_to(case.t2, ScalarImage(np.zeros((40, 36, 7), np.uint8), oblique_affine((1.1, 1.1, 4.4), 0.0)
                                          @ _shift(case.t2)))
    t1 = case.t1
    labels = seg.segment(t1=t1, t2=t2)
    assert isinstance(labels, LabelImage)
    assert labels.shape == t2.shape and np.array_equal(labels.affine, t2.affine)
    assert set(np.unique(labels.array)) <= {0, 1, 2, 3}
    only_t2 = seg.segment_detailed(t2=t2)
    assert only_t2.labels.shape == t2.shape and not only_t2.typing_possible
    only_t1 = seg.segment(t1=t1)
    assert only_t1.shape == t1.shape and np.array_equal(only_t1.affine, t1.affine)


def _shift(image: ScalarImage) -> np.ndarray:
    """Translation placing an oblique grid over the centre of ``image``."""
    centre = image.world_coordinates(np.array([(np.array(image.shape) - 1) / 2]))[0]
    m = np.eye(4)
    m[:3, 3] = centre - np.array([20.0, 60.0, 90.0]) - np.array([0.0, 0.0, 0.0])
    m2 = np.eye(4)
    m2[:3, 3] = m[:3, 3]
    return np.linalg.inv(oblique_affine((1.1, 1.1, 4.4), 0.0)) @ m2 @ oblique_affine((1.1, 1.1, 4.4), 0.0)


def test_segment_cli_cpu_t2_only(tmp_path, tiny_checkpoint) -> None:
    case = toy_cases(1, seed=4, shape=(8, 40, 40))[0]
    t2 = case.t2
    t2.provenance = Provenance(weighting="T2")
    save_nifti(t2, str(tmp_path / "t2.nii.gz"))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "modicseg", "segment", "--t2", str(tmp_path / "t2.nii.gz"),
                             "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    nii = nib.load(out / "labels.nii.gz")
    assert nii.shape == t2.shape and np.allclose(nii.affine, t2.affine)
    info = json.loads((out / "segmentation.json").read_text())
    assert info["contrasts"] == ["T2"] and info["typing_possible"] is False
    assert info["model"]["runtime"] == "torch"  # a checkpoint without an ONNX export runs on torch


def test_cuda_device_without_gpu_is_a_user_error(tiny_checkpoint) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from modicseg.io.errors import ModicsegError

    with pytest.raises(ModicsegError):
        Segmenter.load(tiny_checkpoint, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_segment_on_cuda_matches_cpu(tiny_checkpoint) -> None:
    case = toy_cases(1, seed=5, shape=(8, 40, 40))[0]
    cpu = Segmenter.load(tiny_checkpoint, device="cpu", precision="fp32").segment(t1=case.t1, t2=case.t2)
    gpu = Segmenter.load(tiny_checkpoint, device="cuda", precision="fp32").segment(t1=case.t1, t2=case.t2)
    assert np.array_equal(gpu.affine, cpu.affine)
    assert (gpu.array == cpu.array).mean() > 0.99


# --- training: resume ------------------------------------------------------------------------------

def test_training_resumes_after_interruption(tmp_path) -> None:
    settings = tiny_settings(tmp_path / "run", steps=8, optim={"max_minutes": 0.0})
    first = train(settings, progress=False, log=lambda s: None)
    assert not first.finished and first.step == 1  # stopped at once, checkpointed
    settings["optim"]["max_minutes"] = None
    second = train(settings, progress=False, log=lambda s: None)
    assert second.finished and second.step == 8
    state = load_checkpoint(second.last, with_train_state=True).train_state
    assert state is not None and state["step"] == 8
    steps = [int(r.split(",")[0]) for r in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] == 8


# --- the shipped model -----------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "modicseg-unet-v1"


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_shipped_model_segments_a_synthetic_study() -> None:
    pytest.importorskip("modicseg.synth.case")
    from modicseg.model.metrics import dice_per_class
    from modicseg.model.synth_adapter import synth_validation_cases

    torch.set_num_threads(2)
    case = synth_validation_cases(1, seed=31, n_slices=12)[0]  # one window along the slices
    seg = Segmenter.load(device="cpu")  # the default checkpoint is the shipped one
    assert seg.checkpoint is not None and seg.checkpoint.directory.resolve() == SHIPPED.resolve()
    result = seg.segment_detailed(t1=case.t1, t2=case.t2)
    assert result.labels.shape == case.t2.shape and np.array_equal(result.labels.affine, case.t2.affine)
    dice = dice_per_class(result.labels.array, case.labels.array, (1, 2, 3))
    assert dice[1] > 0.8 and dice[2] > 0.7  # a regression guard, far below the measured 0.93 / 0.90
    assert (SHIPPED / "model.pt").stat().st_size < 50 * 2**20
    # the analysis names the network's vertebrae as it names the exact labels' (the benchmark's column)
    from modicseg.evaluation.segmentation import evaluate_cases

    _, [found] = evaluate_cases(seg, [case], level_names=True)
    assert found["levels_reference"] >= 7 and found["levels_named_right"] == found["levels_reference"], found
    # ... and measures their heights as on the exact labels (the trial's 10 % rule divides by them)
    assert abs(found["height_diff_mm_other_median"]) < 1.5 and abs(found["height_diff_mm_S1"]) < 3.0, found


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
@pytest.mark.parametrize("case", ["vb1_02", "vb1_10", "vb1_12", "vb1_16"])
def test_shipped_model_and_analysis_name_real_levels_like_the_masks(case, shared_dir) -> None:
    """On real scans the network leaves fragments (a sliver of S2, disc voxels in a fractured body, a
    rudimentary sacral disc, bone behind and below S1 labelled as bodies on vb1_02's T1); the analysis
    must still give every annotated body its level name."""
    from modicseg.analysis.level_agreement import level_agreement
    from modicseg.model.cases import load_labelled_cases

    torch.set_num_threads(2)
    [real] = [c for c in load_labelled_cases(shared_dir / "real-spine") if c.name == case]
    labels = Segmenter.load(SHIPPED, device="cpu").segment(t1=real.t1, t2=real.t2)
    reference = nib.load(real.info["level_map"])
    found = level_agreement(np.asarray(labels.array), labels.affine, np.asarray(reference.dataobj),
                            real.info["level_names"])
    wrong = [p for p in found["per_level"] if not p.get("right")]
    assert not wrong, wrong
    assert found["levels_named_right"] == len(real.info["level_names"]) >= 8


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_shipped_model_does_not_enrol_the_real_subject_without_pathology(shared_dir) -> None:
    """vb1_10 (T1) + vb1_11 (T2): one real subject on one grid, listed by the source without pathology.
    No Modic labels exist; v1.2.0 called it eligible through three 'type 1' lesions that lay on the
    anterior surface of L1-L3 (prevertebral fat and vessels, read on overlays), not at an endplate.
    Whatever else the network finds there, no lesion may make this subject eligible."""
    from modicseg.analysis.pipeline import analyze_images
    from modicseg.model.cases import load_labelled_cases, same_grid_pair

    torch.set_num_threads(2)
    cases = {c.name: c for c in load_labelled_cases(shared_dir / "real-spine") if c.name in ("vb1_10", "vb1_11")}
    assert np.allclose(cases["vb1_10"].t1.affine, cases["vb1_11"].t2.affine)  # the same grid (case.json affines)
    pair = same_grid_pair(cases["vb1_10"], cases["vb1_11"])
    t1, t2 = pair.t1, pair.t2
    report = analyze_images(Segmenter.load(SHIPPED, device="cpu").segment(t1=t1, t2=t2), t1, t2)
    assert [v.level for v in report.vertebrae][-6:] == ["L1", "L2", "L3", "L4", "L5", "S1"]
    assert report.eligibility.qualifying_lesions == [], report.eligibility.reasons
    assert report.eligibility.eligible is not True


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_shipped_model_segments_a_held_out_fat_suppressed_scan(shared_dir) -> None:
    """A Dixon water image (fat suppressed, marrow dark) of a held-out volunteer goes in the
    fluid-sensitive channel: the bodies are found and L1-L5 named like the masks (the sacrum is in
    view below L5, unlabelled)."""
    from modicseg.evaluation.segmentation import evaluate_cases
    from modicseg.model.cases import load_labelled_cases
    from modicseg.model.sources import split_cases

    folder = shared_dir / "real-spine-dixon"
    if not folder.is_dir():
        pytest.skip("../shared/real-spine-dixon not found")
    name = split_cases(folder, "heldout")[0]
    [case] = load_labelled_cases(folder, {"sequence": "DIXON_WATER"}, include=[name])
    assert case.t1 is None and case.t2 is not None and case.t2.provenance.weighting == "T2FS"
    torch.set_num_threads(2)
    _, [row] = evaluate_cases(Segmenter.load(SHIPPED, device="cpu"), [case], level_names=True)
    assert row["dice_vertebral_body"] > 0.65, row
    assert row["levels_named_right"] == row["levels_reference"] == 5, row


@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
@pytest.mark.parametrize("name", ["vb3_06", "vb3_07"])
def test_shipped_model_reports_no_lesion_on_held_out_healthy_volunteers(name, shared_dir) -> None:
    """Two held-out healthy volunteers (Dixon water, no Modic change expected): the analysis of the
    shipped model's labels reports no lesion of 100 mm³ or more, and names L1-L5 like the masks.

    A regression guard on two subjects where v2.0.0 holds, not a rate: over all 15 held-out healthy
    scans v2.0.0 reports 1.6 such lesions per scan (docs/benchmarks.md, "Generalisation")."""
    from modicseg.analysis.level_agreement import level_agreement
    from modicseg.analysis.pipeline import analyze_images
    from modicseg.model.cases import load_labelled_cases
    from modicseg.model.sources import split_cases

    folder = shared_dir / "real-spine-dixon"
    if not folder.is_dir():
        pytest.skip("../shared/real-spine-dixon not found")
    assert name in split_cases(folder, "heldout")
    [case] = load_labelled_cases(folder, {"sequence": "DIXON_WATER"}, include=[name])
    torch.set_num_threads(2)
    labels = Segmenter.load(SHIPPED, device="cpu").segment(t1=None, t2=case.t2)
    report = analyze_images(labels, None, case.t2)
    large = [(les.level, les.endplate, round(les.volume_mm3)) for les in report.lesions if les.volume_mm3 >= 100.0]
    assert not large, large
    found = level_agreement(np.asarray(labels.array), labels.affine,
                            np.asarray(nib.load(case.info["level_map"]).dataobj), case.info["level_names"])
    assert found["levels_named_right"] == len(case.info["level_names"]) == 5, found["per_level"]
