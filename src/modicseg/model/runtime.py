"""Which runtime segments: ONNX Runtime on CPU when the checkpoint has a current export, else torch.

``load_segmenter`` keeps one loaded model per (checkpoint, device, runtime) in the process, so a
batch worker loads it once for all its studies. ``$MODICSEG_RUNTIME`` (``auto``, ``onnx``,
``torch``) overrides the choice; ``auto`` takes ONNX Runtime when the device is the CPU, the
``onnxruntime`` package is installed and the folder holds an export of its current weights
(``modicseg.model.onnx_backend.onnx_status``). CUDA, training and fine-tuning stay on torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from modicseg.io.errors import InputError

RUNTIME_ENV = "MODICSEG_RUNTIME"
RUNTIMES = ("auto", "onnx", "torch")

_CACHE: dict[tuple[str, float, str, str], Any] = {}


def nvidia_driver_present() -> bool:
    """A cheap hint that CUDA may be there (an NVIDIA driver), without importing torch."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def wants_cpu(device: str) -> bool:
    """True when ``device`` resolves to the CPU ("auto" without a CUDA GPU); torch is imported only
    where an NVIDIA driver is present (or torch is already loaded)."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    if "torch" not in sys.modules and not nvidia_driver_present():
        return True
    import torch

    return not torch.cuda.is_available()


def choose_runtime(directory: Path, device: str, runtime: str | None = None) -> tuple[str, str]:
    """("onnx" | "torch", why) for a checkpoint folder and a device."""
    from modicseg.model.onnx_backend import onnx_status, onnxruntime_available

    runtime = runtime or os.environ.get(RUNTIME_ENV, "auto") or "auto"
    if runtime not in RUNTIMES:
        raise InputError(f"{RUNTIME_ENV}={runtime}: unknown runtime (auto, onnx, torch)")
    if runtime == "torch":
        return "torch", "torch requested"
    usable, why = onnx_status(directory)
    if runtime == "onnx":
        if device not in ("cpu", "auto"):
            raise InputError(f"the ONNX runtime runs on the CPU only (device {device} asked for)")
        if not onnxruntime_available():
            raise InputError("onnxruntime is not installed (pip install onnxruntime)")
        if not usable:
            raise InputError(f"{directory}: {why}")
        return "onnx", "onnx requested"
    if not wants_cpu(device):
        return "torch", "CUDA device"
    if not onnxruntime_available():
        return "torch", "onnxruntime is not installed"
    if not usable:
        return "torch", why
    return "onnx", why


def checkpoint_directory(model: str | Path | None) -> Path:
    """The checkpoint folder: ``model``, else the shipped model (``$MODICSEG_MODEL``, the packaged copy,
    ``models/`` of the source tree)."""
    from modicseg.model.checkpoint import WEIGHTS, default_checkpoint
    from modicseg.shipped import shipped_model

    chosen = shipped_model(model)
    directory = Path(chosen) if chosen is not None else default_checkpoint()
    if directory.is_file() and directory.name == WEIGHTS:
        directory = directory.parent
    return directory


def load_segmenter(model: str | Path | None = None, device: str = "auto", runtime: str | None = None,
                   cache: bool = True) -> Any:
    """A loaded segmenter (``OnnxSegmenter`` or ``Segmenter``), kept for the next call in this process.

    The cache key includes the weights' modification time, so a checkpoint replaced on disk is
    loaded again.
    """
    directory = checkpoint_directory(model)
    weights = directory / "model.pt"
    if not weights.is_file() or not (directory / "config.json").is_file():
        missing = "model.pt" if not weights.is_file() else "config.json"
        raise InputError(f"{directory}: not a modicseg checkpoint (no {missing})")
    chosen, _why = choose_runtime(directory, device, runtime)
    key = (str(directory.resolve()), weights.stat().st_mtime, device, chosen)
    if cache and key in _CACHE:
        return _CACHE[key]
    if chosen == "onnx":
        from modicseg.model.onnx_backend import OnnxSegmenter

        segmenter: Any = OnnxSegmenter(directory)
    else:
        from modicseg.model.inference import Segmenter

        segmenter = Segmenter.load(directory, device=device)
        segmenter.runtime = "torch"
    if cache:
        _CACHE.clear()  # one model per process: a batch uses one checkpoint
        _CACHE[key] = segmenter
    return segmenter
