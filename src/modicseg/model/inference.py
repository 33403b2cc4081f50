"""Inference: ``Segmenter`` keeps a model loaded and segments studies onto their T2 grid.

T1/T2 -> model orientation and spacing -> sliding window with Gaussian blending -> class
probabilities resampled onto the T2 grid -> argmax -> ``LabelImage`` with the T2's shape and
affine (the T1's when there is no T2).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.errors import InputError
from modicseg.io.study import Study
from modicseg.model.checkpoint import Checkpoint, default_checkpoint, load_checkpoint
from modicseg.model.config import ModelConfig
from modicseg.model.network import total_stride
from modicseg.model.segmentation import Segmentation, segment_images


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is a user error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"unknown device '{device}' (cpu, cuda, auto)")
    return torch.device(device)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (bfloat16 convolutions are then ~2-3x faster)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device and a precision choice ("auto", "fp32", "bf16", "fp16")."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unknown precision '{precision}'")
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def fit_roi(roi: list[int], stride: list[int]) -> list[int]:
    """The window size: the configured ROI rounded up to a multiple of the network's total stride.

    It does not depend on the image: smaller images are padded, so every window of every study has
    one shape (oneDNN/cuDNN prepare their kernels once per shape; on CPU with bfloat16 that first
    call costs seconds).
    """
    return [int(math.ceil(r / st)) * st for r, st in zip(roi, stride, strict=True)]


def sliding_window_probabilities(model: torch.nn.Module, x: np.ndarray | torch.Tensor, config: ModelConfig,
                                 device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Softmax probabilities [K, ...] for a network input [C, ...] (sliding window, Gaussian blend)."""
    from monai.inferers import sliding_window_inference

    inp = torch.as_tensor(x, dtype=torch.float32)[None].to(device)
    inf = config.inference
    roi = fit_roi(list(inf["roi_size"]), total_stride(config))

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        with autocast_context(device, dtype):
            return model(patch).float()

    with torch.inference_mode():
        logits = sliding_window_inference(inp, roi, int(inf.get("sw_batch_size", 1)), predictor,
                                          overlap=float(inf.get("overlap", 0.25)),
                                          mode=inf.get("blend", "gaussian"), padding_mode="constant",
                                          cval=float(config.normalization.get("missing_channel_value", 0.0)))
        return torch.softmax(logits[0].float(), dim=0)


class Segmenter:
    """A loaded model: ``Segmenter.load()`` once, then ``segment(...)`` any number of studies."""

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "auto", precision: str = "auto") -> None:
        self.checkpoint: Checkpoint | None = checkpoint
        self.config = checkpoint.config.resolved()
        self.device = resolve_device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.model = checkpoint.build_model(self.device)
        self._sha: str | None = None

    @classmethod
    def from_model(cls, model: torch.nn.Module, config: ModelConfig, device: str | torch.device = "auto",
                   precision: str = "auto") -> Segmenter:
        """Wrap a network already in memory (used for validation during training)."""
        self = cls.__new__(cls)
        self.checkpoint = None
        self.config = config.resolved()
        self.device = resolve_device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.model = model
        self._sha = None
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "auto",
             precision: str = "auto") -> Segmenter:
        """Load a checkpoint folder (default: the shipped model, see ``default_checkpoint``)."""
        return cls(load_checkpoint(path if path is not None else default_checkpoint()), device, precision)

    @property
    def checkpoint_sha256(self) -> str | None:
        """SHA-256 of the weights file (None for a model not loaded from a checkpoint)."""
        if self._sha is None and self.checkpoint is not None:
            self._sha = self.checkpoint.sha256
        return self._sha

    def warmup(self) -> float:
        """Run one window of zeros so the first study does not pay the kernel preparation; seconds."""
        started = time.perf_counter()
        roi = fit_roi(list(self.config.inference["roi_size"]), total_stride(self.config))
        self.predict(np.zeros((self.config.in_channels, *roi), dtype=np.float32))
        return time.perf_counter() - started

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [K, ...] for a model-space input [C, ...]."""
        was_training = self.model.training
        self.model.eval()
        try:
            return sliding_window_probabilities(self.model, x, self.config, self.device, self.dtype).cpu().numpy()
        finally:
            self.model.train(was_training)

    def segment(self, study: Study | None = None, *, t1: ScalarImage | None = None, t2: ScalarImage | None = None,
                register: str = "auto") -> LabelImage:
        """Labels (0 background, 1 vertebral body, 2 disc, 3 Modic lesion) on the T2 grid.

        Pass a ``Study`` or the images (``t1`` and/or ``t2``, any grids in one physical space).
        With one contrast only, the other channel is marked absent.
        """
        return self.segment_detailed(study, t1=t1, t2=t2, register=register).labels

    def segment_detailed(self, study: Study | None = None, *, t1: ScalarImage | None = None,
                         t2: ScalarImage | None = None, register: str = "auto",
                         uncertainty: bool = False) -> Segmentation:
        """Like ``segment`` plus the contrasts used, whether typing is possible and timings; with
        ``uncertainty``, the evidence maps of a second pass on the mirrored input (``Segmentation.evidence``)."""
        return segment_images(self.predict, self.config, study, t1=t1, t2=t2, register=register,
                              uncertainty=uncertainty)

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint.directory) if self.checkpoint else None,
                "sha256": self.checkpoint_sha256,
                "device": str(self.device), "autocast": str(self.dtype) if self.dtype else "float32",
                "runtime": "torch", "version": self.config.version}
