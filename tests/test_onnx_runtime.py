"""The torch-free CPU path (ONNX Runtime) against the torch path, and what each command imports.

* the NumPy sliding window gives MONAI's blended logits; the NumPy resampling of probabilities gives
  the torch one's labels;
* the shipped ``model.onnx`` is an export of the shipped ``model.pt`` (its recorded hash, and its
  logits against the torch network's);
* on the demo study, ONNX Runtime and torch (float32) give the same labels up to a few voxels and the
  same report (levels, lesions, types, eligibility);
* an export follows its checkpoint: replaced weights make the analysis fall back to torch;
* ``modicseg --help`` and ``inspect`` import neither torch nor MONAI; ``analyze`` on the CPU with a
  current export imports neither either.

No timings here: speed is measured by scripts/bench_coldstart.py and scripts/bench_batch.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modicseg.model.onnx_backend import ONNX_FILE, ONNX_META, onnx_status, window_shape
from modicseg.model.sliding_window import sliding_window_logits

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "modicseg-unet-v1"
HEAVY = ("torch", "monai", "highdicom", "matplotlib", "onnxruntime")

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _imported_by(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run ``modicseg ARGS`` in a fresh interpreter; (exit status, heavy modules imported, output)."""
    code = ("import sys\nfrom modicseg.cli import main\n"
            "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as exc:\n    status = exc.code or 0\n"
            f"print('IMPORTED', [m for m in {HEAVY!r} if m in sys.modules])\nsys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    line = next(x for x in done.stdout.splitlines() if x.startswith("IMPORTED"))
    return done.returncode, eval(line.split(" ", 1)[1]), done.stdout + done.stderr


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory) -> Path:
    from modicseg.synth.demo import make_demo_study

    return make_demo_study(tmp_path_factory.mktemp("demo") / "study", seed=0)


# --- the pieces -----------------------------------------------------------------------------------

def test_numpy_sliding_window_blends_like_monai() -> None:
    """Same windows, weights and padding: an input smaller than the window along one axis (padded)
    and larger along the others (overlapping windows), a batch of 2 windows."""
    torch = pytest.importorskip("torch")
    from monai.inferers import sliding_window_inference

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 70, 41)).astype(np.float32)
    kernel = torch.from_numpy(rng.normal(size=(4, 3, 3, 3, 3)).astype(np.float32))

    def net(windows: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv3d(windows, kernel, padding=1)

    roi = [8, 32, 32]
    expected = sliding_window_inference(torch.from_numpy(x)[None], roi, 2, net, overlap=0.25, mode="gaussian",
                                        padding_mode="constant", cval=0.0)[0].numpy()
    got = sliding_window_logits(x, roi, lambda w: net(torch.from_numpy(w)).numpy(), batch_size=2, overlap=0.25)
    assert got.shape == expected.shape == (4, 5, 70, 41)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got.argmax(0), expected.argmax(0))


def test_numpy_and_torch_resampling_of_probabilities_give_the_same_labels() -> None:
    pytest.importorskip("torch")
    from modicseg.core.image import ScalarImage
    from modicseg.model.config import ModelConfig
    from modicseg.model.preprocess import probabilities_to_labels, to_model_space

    config = ModelConfig.load(SHIPPED / "config.json").resolved()
    affine = np.array([[0.0, 0.0, 4.0, -20.0], [0.7, 0.05, 0.0, -60.0], [0.0, -0.7, 0.0, 90.0], [0, 0, 0, 1]])
    t2 = ScalarImage(np.random.default_rng(1).random((120, 140, 11)).astype(np.float32), affine)
    _, grid = to_model_space({"T1": None, "T2": t2}, config, reference=t2)
    logits = np.random.default_rng(2).normal(size=(4, *grid.shape)).astype(np.float32)
    from scipy import ndimage

    logits = ndimage.gaussian_filter(logits, (0, 1, 3, 3))  # smooth, like a network's output
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    a = probabilities_to_labels(probs, grid, backend="numpy")
    b = probabilities_to_labels(probs, grid, backend="torch")
    assert a.shape == t2.shape and np.array_equal(a.affine, b.affine)
    assert np.array_equal(a.array, b.array)
    assert len(np.unique(a.array)) == 4


# --- the shipped export ---------------------------------------------------------------------------

@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_shipped_onnx_export_is_made_from_the_shipped_weights() -> None:
    """If this fails after a new model.pt: re-export with `python scripts/export_onnx.py`."""
    torch = pytest.importorskip("torch")
    from modicseg.model.checkpoint import load_checkpoint
    from modicseg.model.onnx_backend import OnnxSegmenter

    usable, why = onnx_status(SHIPPED)
    assert usable, f"{why}: run `python scripts/export_onnx.py`"
    checkpoint = load_checkpoint(SHIPPED)
    model = checkpoint.build_model("cpu")
    onnx = OnnxSegmenter(SHIPPED, threads=1)
    assert onnx.checkpoint_sha256 == checkpoint.sha256
    x = np.random.default_rng(5).normal(size=(2, checkpoint.config.in_channels,
                                              *window_shape(checkpoint.config.resolved()))).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = onnx.run_windows(x)
    assert np.abs(got - expected).max() < 1e-3
    assert (got.argmax(1) != expected.argmax(1)).mean() < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_onnx_and_torch_give_the_same_analysis_of_the_demo_study(demo_study, tmp_path) -> None:
    """ONNX Runtime (float32) against torch (float32) on the demo study: labels equal but for float
    rounding at class boundaries (at most 1 in 10,000 voxels), the same levels, lesions, types,
    grades and eligibility, volumes within 2 %; the DICOM SEG of the ONNX analysis is written and
    references the T2."""
    pytest.importorskip("torch")
    import pydicom

    from modicseg.analysis.pipeline import analyze_images
    from modicseg.io.study import StudyRequest, open_study, t1_on_t2_grid
    from modicseg.model.inference import Segmenter
    from modicseg.model.onnx_backend import OnnxSegmenter
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report

    study = open_study(StudyRequest(path=demo_study))
    t1, t2 = t1_on_t2_grid(study)
    by_onnx = OnnxSegmenter(SHIPPED, threads=1).segment_detailed(t1=t1, t2=t2)
    by_torch = Segmenter.load(SHIPPED, device="cpu", precision="fp32").segment_detailed(t1=t1, t2=t2)
    a, b = by_onnx.labels.array, by_torch.labels.array
    assert a.shape == b.shape and np.array_equal(by_onnx.labels.affine, by_torch.labels.affine)
    assert (a != b).mean() < 1e-4, int((a != b).sum())
    ra, rb = analyze_images(by_onnx.labels, t1, t2), analyze_images(by_torch.labels, t1, t2)
    assert [v.level for v in ra.vertebrae] == [v.level for v in rb.vertebrae]
    assert [(les.level, les.endplate, les.type, les.extent_grade) for les in ra.lesions] == \
           [(les.level, les.endplate, les.type, les.extent_grade) for les in rb.lesions]
    assert ra.eligibility.status == rb.eligibility.status
    for la, lb in zip(ra.lesions, rb.lesions, strict=True):
        assert abs(la.volume_mm3 - lb.volume_mm3) <= 0.02 * lb.volume_mm3
    report = analyze(StudyRequest(path=demo_study), model=SHIPPED, device="cpu")
    assert report.provenance["segmentation"]["runtime"] == "onnxruntime"
    assert [(les.level, les.type) for les in report.lesions] == [(les.level, les.type) for les in ra.lesions]
    write_report(report, tmp_path / "out", qc=False)
    seg = pydicom.dcmread(tmp_path / "out" / "labels_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2.provenance.series_instance_uid
    assert json.loads((tmp_path / "out" / "report.json").read_text())["provenance"]["segmentation"]["runtime"] \
        == "onnxruntime"


# --- an export follows its checkpoint -------------------------------------------------------------

def test_export_of_a_new_checkpoint_and_fallback_when_its_weights_change(tmp_path) -> None:
    """Any checkpoint (here a freshly initialised small DynUNet) exports; the export is used while
    it matches model.pt, and the torch path takes over once the weights are replaced."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from modicseg.model.checkpoint import save_checkpoint
    from modicseg.model.config import ModelConfig
    from modicseg.model.network import build_network
    from modicseg.model.onnx_backend import OnnxSegmenter, export_onnx
    from modicseg.model.runtime import choose_runtime, load_segmenter

    config = ModelConfig.from_dict({
        "spacing_mm": [4.0, 1.0, 1.0], "patch_size": [8, 32, 32], "network": {"filters": [4, 8, 16]},
        "inference": {"roi_size": [8, 64, 64], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1}}).resolved()
    torch.manual_seed(0)
    folder = save_checkpoint(tmp_path / "ckpt", build_network(config), config)
    assert onnx_status(folder)[0] is False
    assert choose_runtime(folder, "cpu", "auto")[0] == "torch"
    export_onnx(folder)
    assert onnx_status(folder) == (True, "export matches the weights")
    assert choose_runtime(folder, "cpu", "auto")[0] == "onnx"
    meta = json.loads((folder / ONNX_META).read_text())
    assert meta["max_abs_logit_difference"] < 1e-3 and meta["source_sha256"] != meta["onnx_sha256"]
    segmenter = load_segmenter(folder, device="cpu", cache=False)
    assert isinstance(segmenter, OnnxSegmenter)
    # a retrained model replaces model.pt: the stale export is not used
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "other", build_network(config), config)
    (folder / "model.pt").write_bytes((tmp_path / "other" / "model.pt").read_bytes())
    usable, why = onnx_status(folder)
    assert not usable and "exported from other weights" in why
    assert choose_runtime(folder, "cpu", "auto")[0] == "torch"
    assert load_segmenter(folder, device="cpu", cache=False).runtime == "torch"
    (folder / ONNX_FILE).unlink()
    assert "no model.onnx" in onnx_status(folder)[1]


# --- what each command imports --------------------------------------------------------------------

def test_help_and_inspect_do_not_import_torch(tmp_path) -> None:
    from tests.dicom_factory import write_multi_series_study

    status, heavy, out = _imported_by(["--help"])
    assert status == 0 and heavy == [], out
    write_multi_series_study(tmp_path / "study")
    status, heavy, out = _imported_by(["inspect", str(tmp_path / "study")])
    assert status == 0 and "T1_TSE_SAG" in out, out
    assert heavy == [], out


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_analyze_on_the_cpu_imports_neither_torch_nor_monai(demo_study, tmp_path) -> None:
    if not onnx_status(SHIPPED)[0]:
        pytest.skip(onnx_status(SHIPPED)[1])
    status, heavy, out = _imported_by(["analyze", str(demo_study), "-o", str(tmp_path / "out"), "--device", "cpu"],
                                      env={"OMP_NUM_THREADS": "1"})
    assert status == 0, out
    assert "torch" not in heavy and "monai" not in heavy, heavy
    assert "onnxruntime" in heavy
    assert json.loads((tmp_path / "out" / "report.json").read_text())["provenance"]["segmentation"]["runtime"] \
        == "onnxruntime"


def test_segment_on_the_cpu_runs_onnx_and_labels_like_torch(demo_study, tmp_path) -> None:
    """``modicseg segment`` takes the same runtime as ``analyze``: ONNX Runtime without torch or MONAI,
    and its labels equal torch float32's (``--precision fp32``) but for float rounding."""
    if not onnx_status(SHIPPED)[0]:
        pytest.skip(onnx_status(SHIPPED)[1])
    import nibabel as nib

    env = {"OMP_NUM_THREADS": "1"}
    status, heavy, out = _imported_by(["segment", str(demo_study), "-o", str(tmp_path / "onnx"), "--device", "cpu"],
                                      env=env)
    assert status == 0, out
    assert "torch" not in heavy and "monai" not in heavy and "onnxruntime" in heavy, heavy
    assert json.loads((tmp_path / "onnx" / "segmentation.json").read_text())["model"]["runtime"] == "onnxruntime"
    status, heavy, out = _imported_by(["segment", str(demo_study), "-o", str(tmp_path / "torch"), "--device", "cpu",
                                       "--precision", "fp32"], env=env)
    assert status == 0, out
    assert json.loads((tmp_path / "torch" / "segmentation.json").read_text())["model"]["runtime"] == "torch"
    a, b = (nib.load(tmp_path / name / "labels.nii.gz") for name in ("onnx", "torch"))
    assert np.array_equal(a.affine, b.affine)
    assert (np.asarray(a.dataobj) != np.asarray(b.dataobj)).mean() < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model")
def test_a_second_study_in_one_process_loads_no_model_and_imports_nothing(demo_study, tmp_path) -> None:
    """What a batch worker does: the model is loaded by the first study only, and the second study
    (analysis and every output) imports no module the first did not."""
    code = (
        "import json, sys\nfrom pathlib import Path\n"
        "from modicseg.pipeline import analyze\nfrom modicseg.io.study import StudyRequest\n"
        "from modicseg.model import runtime\nfrom modicseg.report.writers import write_report\n"
        "def one(out):\n"
        "    write_report(analyze(StudyRequest(path=Path(sys.argv[1])), device='cpu'), Path(out))\n"
        "one(sys.argv[2] + '/a')\nbefore, model = set(sys.modules), list(runtime._CACHE.values())\n"
        "one(sys.argv[2] + '/b')\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'models': len(runtime._CACHE),\n"
        "                  'same': list(runtime._CACHE.values())[0] is model[0]}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(demo_study), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"new": [], "models": 1, "same": True}, found
    assert (tmp_path / "b" / "labels_seg.dcm").is_file() and (tmp_path / "b" / "qc.png").is_file()


def test_without_onnxruntime_the_torch_path_is_chosen() -> None:
    """onnxruntime is optional at run time: blocked from import, the runtime is torch, with the reason."""
    code = ("import sys\nsys.modules['onnxruntime'] = None  # import onnxruntime -> ImportError\n"
            "from modicseg.model.runtime import choose_runtime\n"
            f"print(choose_runtime(__import__('pathlib').Path({str(SHIPPED)!r}), 'cpu', 'auto'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('torch', 'onnxruntime is not installed')"
