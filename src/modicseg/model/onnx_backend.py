"""The shipped network run by ONNX Runtime on CPU: no torch, no MONAI at analysis time.

A checkpoint folder may hold ``model.onnx``, an export of its ``model.pt`` (float32, batch and
spatial axes dynamic), with ``model.onnx.json`` beside it naming the SHA-256 of the weights it was
exported from. ``OnnxSegmenter`` uses it only while that hash matches ``model.pt``: a checkpoint
replaced by a retrained one falls back to the torch path until the export is re-made with

    .venv/bin/python scripts/export_onnx.py [CHECKPOINT_DIR]     # default: the shipped model

(``export_onnx`` below; it needs torch, MONAI and the ``onnx`` package, and checks the export
against the torch network before writing it). Preprocessing, clean-up and the resampling of the
probabilities back to the T2 grid are the torch path's (``modicseg.model.preprocess``,
``postprocess``); the sliding window is ``modicseg.model.sliding_window``.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.image import ScalarImage
from modicseg.io.errors import InputError
from modicseg.model.checkpoint import file_sha256
from modicseg.model.config import ModelConfig
from modicseg.model.network import total_stride
from modicseg.model.segmentation import Segmentation, segment_images
from modicseg.model.sliding_window import sliding_window_logits, softmax

ONNX_FILE = "model.onnx"
ONNX_META = "model.onnx.json"
WEIGHTS = "model.pt"
CONFIG = "config.json"
#: ONNX opset of the export (ONNX Runtime >= 1.14 runs it).
OPSET = 17
#: Largest |logit| difference between the export and the torch network (float32) that is accepted.
MAX_LOGIT_DIFFERENCE = 1e-3


def window_shape(config: ModelConfig) -> list[int]:
    """The inference window: the configured ROI rounded up to the network's total stride
    (``modicseg.model.inference.fit_roi``)."""
    roi = list(config.inference["roi_size"])
    return [int(math.ceil(r / st)) * st for r, st in zip(roi, total_stride(config), strict=True)]


def onnx_status(directory: str | Path) -> tuple[bool, str]:
    """(usable, why): whether ``directory`` holds an ONNX export of its current ``model.pt``."""
    directory = Path(directory)
    onnx_path, meta_path = directory / ONNX_FILE, directory / ONNX_META
    if not onnx_path.is_file() or not meta_path.is_file():
        return False, f"no {ONNX_FILE} export (make one with scripts/export_onnx.py)"
    if not (directory / WEIGHTS).is_file():
        return False, f"no {WEIGHTS} to check the export against"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False, f"{ONNX_META} is not readable JSON"
    if meta.get("source_sha256") != file_sha256(directory / WEIGHTS):
        return False, (f"{ONNX_FILE} was exported from other weights than {WEIGHTS} (re-export it with "
                       "scripts/export_onnx.py)")
    if meta.get("onnx_sha256") != file_sha256(onnx_path):
        return False, f"{ONNX_FILE} does not match the hash in {ONNX_META}"
    return True, "export matches the weights"


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime can be imported (it is optional: the torch path is the fallback)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _threads() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set (batch workers set it), else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


class OnnxSegmenter:
    """A checkpoint's ONNX export in an ONNX Runtime session; the interface of ``Segmenter``."""

    runtime = "onnxruntime"

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        usable, why = onnx_status(self.directory)
        if not usable:
            raise InputError(f"{self.directory}: {why}")
        self.config = ModelConfig.load(self.directory / CONFIG).resolved()
        self.meta = json.loads((self.directory / ONNX_META).read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.directory / ONNX_FILE), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.device = "cpu"
        self.dtype = None

    @property
    def checkpoint_sha256(self) -> str:
        """SHA-256 of the ``model.pt`` the export was made from (checked equal on loading)."""
        return str(self.meta["source_sha256"])

    def run_windows(self, windows: np.ndarray) -> np.ndarray:
        """Logits [B, K, ...] for windows [B, C, ...]."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(windows, dtype=np.float32)})[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [K, ...] for a model-space input [C, ...]."""
        inf = self.config.inference
        logits = sliding_window_logits(x, window_shape(self.config), self.run_windows,
                                       batch_size=int(inf.get("sw_batch_size", 1)),
                                       overlap=float(inf.get("overlap", 0.25)),
                                       cval=float(self.config.normalization.get("missing_channel_value", 0.0)))
        return softmax(logits, axis=0)

    def warmup(self) -> float:
        """One window of zeros; seconds."""
        started = time.perf_counter()
        self.run_windows(np.zeros((1, self.config.in_channels, *window_shape(self.config)), dtype=np.float32))
        return time.perf_counter() - started

    def segment_detailed(self, study: Any = None, *, t1: ScalarImage | None = None, t2: ScalarImage | None = None,
                         register: str = "auto", uncertainty: bool = False) -> Segmentation:
        """As ``Segmenter.segment_detailed``: labels on the T2 grid, contrasts, notes, timings (and with
        ``uncertainty`` the evidence maps of a second, mirrored pass)."""
        return segment_images(self.predict, self.config, study, t1=t1, t2=t2, register=register,
                              label_backend="numpy", uncertainty=uncertainty)

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.directory), "sha256": self.checkpoint_sha256, "device": "cpu",
                "autocast": "float32", "runtime": self.runtime, "version": self.config.version}


def _shown(directory: Path) -> str:
    """The folder relative to the working directory when it lies below it (no absolute paths in the sidecar)."""
    try:
        return str(directory.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return directory.name


def export_onnx(directory: str | Path, samples: int = 3, seed: int = 0) -> Path:
    """Export ``directory``'s ``model.pt`` to ``model.onnx`` (+ ``model.onnx.json``) and check it.

    The export runs on ``samples`` random windows (and a batch of two) in both torch (float32) and
    ONNX Runtime; an export whose logits differ by more than ``MAX_LOGIT_DIFFERENCE`` is refused.
    Needs torch, MONAI, ``onnx`` and ``onnxruntime``. Returns the path of ``model.onnx``.
    """
    import onnxruntime as ort
    import torch

    from modicseg.model.checkpoint import load_checkpoint

    directory = Path(directory)
    checkpoint = load_checkpoint(directory)
    config = checkpoint.config.resolved()
    model = checkpoint.build_model("cpu").eval()
    roi = window_shape(config)
    example = torch.zeros((1, config.in_channels, *roi), dtype=torch.float32)
    tmp = directory / f".{ONNX_FILE}.tmp-{os.getpid()}"
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # instance norm is exported with train=True: it always uses input statistics
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes})
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(seed)
        worst = 0.0
        batches = [rng.normal(size=(1, config.in_channels, *roi)).astype(np.float32) for _ in range(samples)]
        batches.append(rng.normal(size=(2, config.in_channels, *roi)).astype(np.float32))
        for x in batches:
            with torch.inference_mode():
                expected = model(torch.from_numpy(x)).float().numpy()
            got = session.run(None, {"image": x})[0]
            worst = max(worst, float(np.abs(expected - got).max()))
        if worst > MAX_LOGIT_DIFFERENCE:
            raise RuntimeError(f"ONNX export differs from the torch network by {worst:.3g} in the logits "
                               f"(more than {MAX_LOGIT_DIFFERENCE:g}); not written")
        meta = {"format": "modicseg-onnx-export/1", "source": WEIGHTS,
                "source_sha256": file_sha256(directory / WEIGHTS),
                "onnx_sha256": file_sha256(tmp), "model_version": str(config.version), "opset": OPSET,
                "window": roi, "torch_version": torch.__version__.split("+")[0],
                "onnxruntime_version": ort.__version__,
                "max_abs_logit_difference": worst, "checked_windows": samples + 2,
                "command": f"python scripts/export_onnx.py {_shown(directory)}"}
        os.replace(tmp, directory / ONNX_FILE)
        (directory / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return directory / ONNX_FILE
