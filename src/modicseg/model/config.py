"""The model configuration that travels with every checkpoint (``config.json``).

It states everything inference needs to reproduce the training conditions: input channels and how
a missing contrast is signalled, the array orientation, the target voxel size, the intensity
normalisation, the output labels, the network architecture and the sliding-window settings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modicseg.core.labels import CLASS_NAMES, NESTED

CONFIG_FORMAT = "modicseg-model-config/1"

#: Output classes of the network (value -> name).
DEFAULT_LABELS: dict[int, str] = dict(CLASS_NAMES)

#: A class that lies inside another one's region (lesion inside the vertebral body). Used by the
#: partial-label loss: where only the parent is annotated, the child class is also allowed.
DEFAULT_NESTED: dict[int, int] = dict(NESTED)


def plan_anisotropic(spacing_mm: Sequence[float], patch_size: Sequence[int],
                     n_levels: int) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net-style kernels and strides for ``n_levels`` resolution levels.

    An axis whose current spacing is at least twice the finest one gets kernel 1 and stride 1
    (the thick sagittal slice axis keeps its native resolution) until downsampling of the other
    axes evens the spacings out. An axis stops being downsampled when its feature map would drop
    below 4 voxels. For (4, 1, 1) mm: kernels (1,3,3), (1,3,3), then (3,3,3); strides (1,2,2),
    (1,2,2), then (2,2,2).
    """
    spacing = [float(s) for s in spacing_mm]
    size = [int(s) for s in patch_size]
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1, 1, 1]]
    for level in range(n_levels):
        finest = min(spacing)
        kernels.append([3 if s < 2 * finest else 1 for s in spacing])
        if level == n_levels - 1:
            break
        stride = [2 if (s < 2 * finest and sz >= 8) else 1 for s, sz in zip(spacing, size, strict=True)]
        strides.append(stride)
        spacing = [s * st for s, st in zip(spacing, stride, strict=True)]
        size = [sz // st for sz, st in zip(size, stride, strict=True)]
    return kernels, strides


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
