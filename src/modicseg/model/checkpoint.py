"""Checkpoints: a folder with the weights, the model config and MONAI bundle-style metadata.

```
<checkpoint>/
  model.pt          state_dict of the network (torch.save)
  config.json       ModelConfig: channels, orientation, spacing, normalisation, labels, network
  metadata.json     MONAI bundle-style metadata: version, task, data, metrics, training state summary
  train_state.pt    (run folders only) optimizer, scheduler, AMP scaler, step, RNG states
  MODEL_CARD.md     (shipped models) training data, metrics, limitations
```

Folders are written to a temporary sibling and renamed into place, so an interrupted save never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modicseg.io.errors import InputError
from modicseg.model.config import ModelConfig
from modicseg.model.network import build_network

if TYPE_CHECKING:
    import torch

WEIGHTS = "model.pt"
CONFIG = "config.json"
METADATA = "metadata.json"
TRAIN_STATE = "train_state.pt"
DEFAULT_MODEL_NAME = "modicseg-unet-v1"
MODEL_ENV = "MODICSEG_MODEL"
KEEP_ON_REPLACE = ("MODEL_CARD.md", "bench_segment.json")


@dataclass
class Checkpoint:
    """A loaded checkpoint folder."""

    directory: Path
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None

    def build_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        model = build_network(self.config)
        model.load_state_dict({k: v.float() for k, v in self.state_dict.items()})
        return model.to(device).eval()

    @property
    def sha256(self) -> str:
        return file_sha256(self.directory / WEIGHTS)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_metadata(config: ModelConfig, metrics: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None, description: str = "",
                    changelog: dict[str, str] | None = None) -> dict[str, Any]:
    """MONAI bundle-style ``metadata.json`` content."""
    import monai
    import torch

    channel_def = {}
    missing = config.normalization.get("missing_channel_value", 0.0)
    for i, name in enumerate(config.channels):
        channel_def[str(i)] = f"{name} (normalised; {missing} when absent)"
    if config.presence_flags:
        for i, name in enumerate(config.channels):
            channel_def[str(len(config.channels) + i)] = f"{name} present (1) / absent (0)"
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
                  "0.8.1/meta_schema_20220324.json",
        "version": config.version,
        "changelog": changelog or {config.version: "modicseg segmentation model"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {},
        "name": config.name,
        "task": "Segmentation of vertebral bodies, intervertebral discs and Modic lesions on sagittal lumbar MRI",
        "description": description or "MONAI DynUNet, T1 + T2 channels on the T2 grid, anisotropic kernels",
        "authors": "modicseg contributors",
        "copyright": "MIT",
        "data_type": "nifti",
        "image_classes": "T1 and T2 channels with presence flags, see config.json",
        "label_classes": {str(k): v for k, v in config.labels.items()},
        "pred_classes": {str(k): v for k, v in config.labels.items()},
        "intended_use": "research; not a medical device",
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "MR",
                "num_channels": config.in_channels, "spatial_shape": list(config.patch_size),
                "dtype": "float32", "value_range": list(config.normalization["clip"]),
                "is_patch_data": True, "channel_def": channel_def}},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": config.out_channels,
                "spatial_shape": list(config.patch_size), "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": True, "channel_def": {str(k): v for k, v in config.labels.items()}}},
        },
        "metrics": metrics or {},
        "training": training or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
    }


def save_checkpoint(directory: str | Path, model: torch.nn.Module, config: ModelConfig,
                    metadata: dict[str, Any] | None = None, train_state: dict[str, Any] | None = None,
                    extra_files: dict[str, Path] | None = None) -> Path:
    """Write a checkpoint folder atomically (temporary sibling, then rename)."""
    import torch

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, tmp / WEIGHTS)
    config.resolved().save(tmp / CONFIG)
    meta = metadata if metadata is not None else bundle_metadata(config)
    (tmp / METADATA).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    if train_state is not None:
        torch.save(train_state, tmp / TRAIN_STATE)
    for name, src in (extra_files or {}).items():
        if Path(src).is_file():
            shutil.copy2(src, tmp / name)
    for name in KEEP_ON_REPLACE:  # hand-written files survive a new save
        if (directory / name).is_file() and not (tmp / name).exists():
            shutil.copy2(directory / name, tmp / name)
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(directory)
    return directory


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu",
                    with_train_state: bool = False) -> Checkpoint:
    """Read a checkpoint folder (``InputError`` when it is not one)."""
    import torch

    directory = Path(directory)
    if directory.is_file() and directory.name == WEIGHTS:
        directory = directory.parent
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise InputError(f"{directory}: not a modicseg checkpoint (no {name})")
    config = ModelConfig.load(directory / CONFIG)
    state = torch.load(directory / WEIGHTS, map_location=map_location, weights_only=True)
    meta_path = directory / METADATA
    metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    train_state = None
    if with_train_state and (directory / TRAIN_STATE).is_file():
        train_state = torch.load(directory / TRAIN_STATE, map_location=map_location, weights_only=False)
    return Checkpoint(directory, config, state, metadata, train_state)


def default_checkpoint() -> Path:
    """The shipped model: $MODICSEG_MODEL, else ``models/modicseg-unet-v1`` of the source tree, the
    installed package (``modicseg.shipped``) or the working directory."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    candidates = [Path(__file__).resolve().parents[3] / "models" / DEFAULT_MODEL_NAME,
                  Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_NAME,  # a wheel's packaged copy
                  Path.cwd() / "models" / DEFAULT_MODEL_NAME]
    for c in candidates:
        if (c / WEIGHTS).is_file():
            return c
    raise InputError(f"no shipped model found (looked in {', '.join(str(c) for c in candidates)}); "
                     f"pass --model DIR or set {MODEL_ENV}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | Path):
        return value.tolist() if isinstance(value, np.ndarray) else str(value)
    return str(value)
