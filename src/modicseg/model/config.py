"""The model configuration that travels with every checkpoint (``config.json``).

It states everything inference needs to reproduce the training conditions: input channels and how
a missing contrast is signalled, the array orientation, the target voxel size, the intensity
normalisation, the output labels, the network architecture and the sliding-window settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FORMAT = "modicseg-model-config/1"

#: Output classes of the network (value -> name).
DEFAULT_LABELS: dict[int, str] = {0: "background", 1: "vertebral_body", 2: "disc", 3: "modic_lesion"}

#: A class that lies inside another one's region (lesion inside the vertebral body). Used by the
#: partial-label loss: where only the parent is annotated, the child class is also allowed.
DEFAULT_NESTED: dict[int, int] = {3: 1}


@dataclass
class NetworkConfig:
    """MONAI DynUNet hyper-parameters (kernels/strides per level, axis order = model orientation)."""

    name: str = "DynUNet"
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 192])
    kernel_size: list[list[int]] = field(default_factory=list)
    strides: list[list[int]] = field(default_factory=list)
    res_block: bool = False
    norm: str = "instance"

    def planned(self, spacing_mm: list[float], patch_size: list[int]) -> NetworkConfig:
        """A copy with kernels/strides filled by the anisotropy rule when they are empty."""
        if self.kernel_size and self.strides:
            return self
        from modicseg.model.network import plan_anisotropic

        kernels, strides = plan_anisotropic(spacing_mm, patch_size, len(self.filters))
        return dataclasses.replace(self, kernel_size=kernels, strides=strides)


@dataclass
class ModelConfig:
    """Everything a checkpoint needs besides its weights (saved as ``config.json``)."""

    version: str = "0.1.0"
    name: str = "modicseg-unet"
    #: image contrasts, in input-channel order; each is followed by a presence flag channel.
    channels: list[str] = field(default_factory=lambda: ["T1", "T2"])
    presence_flags: bool = True
    #: nibabel axis codes of the model's array axes; axis 0 is the (thick) sagittal slice axis.
    orientation: str = "RAS"
    #: target voxel size in mm for (axis 0, axis 1, axis 2) of the model orientation.
    spacing_mm: list[float] = field(default_factory=lambda: [4.0, 1.0, 1.0])
    #: slice-axis spacings in this range are kept as acquired (no interpolation across thick slices).
    native_slice_spacing_range_mm: list[float] = field(default_factory=lambda: [2.5, 5.0])
    #: per-channel intensity normalisation (percentile scaling, then clipping).
    normalization: dict[str, Any] = field(default_factory=lambda: {
        "method": "percentile", "lower_percentile": 1.0, "upper_percentile": 99.0,
        "clip": [-0.5, 2.0], "missing_channel_value": 0.0})
    labels: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    nested: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_NESTED))
    patch_size: list[int] = field(default_factory=lambda: [16, 128, 128])
    network: NetworkConfig = field(default_factory=NetworkConfig)
    inference: dict[str, Any] = field(default_factory=lambda: {
        "roi_size": [16, 128, 128], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1})
    #: clean-up after the network (``model.postprocess``): ``spinal_column`` keeps the labelled
    #: voxels that form the spinal column (true, false, or {bridge_mm, gap_mm}).
    postprocess: dict[str, Any] = field(default_factory=lambda: {"spinal_column": True})

    # --- derived ---------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return len(self.channels) * (2 if self.presence_flags else 1)

    @property
    def out_channels(self) -> int:
        return len(self.labels)

    def resolved(self) -> ModelConfig:
        """A copy whose network kernels/strides are filled in."""
        return dataclasses.replace(self, network=self.network.planned(self.spacing_mm, self.patch_size))

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        d["nested"] = {str(k): v for k, v in self.nested.items()}
        return {"format": CONFIG_FORMAT, **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = {k: v for k, v in data.items() if k != "format"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        if "labels" in data:
            data["labels"] = {int(k): str(v) for k, v in data["labels"].items()}
        if "nested" in data:
            data["nested"] = {int(k): int(v) for k, v in data["nested"].items()}
        if "network" in data and isinstance(data["network"], dict):
            data["network"] = NetworkConfig(**data["network"])
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
