"""The model configuration that travels with every checkpoint (``config.json``).

It states everything inference needs to reproduce the training conditions: input channels and how
a missing contrast is signalled, the array orientation, the target voxel size, the intensity
normalisation, the output labels, the network architecture, the sliding-window settings and the
clean-up after the network. A ``modicseg.core.settings.Settings`` model like the analysis and
training settings: an unknown key, in the file or in one of its sections, is an error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from modicseg.core.labels import CLASS_NAMES, NESTED
from modicseg.core.settings import Settings, SettingsError

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


class NetworkConfig(Settings):
    """MONAI DynUNet hyper-parameters (kernels/strides per level, axis order = model orientation)."""

    name: str = "DynUNet"
    filters: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 192])
    kernel_size: list[list[int]] = Field(default_factory=list)
    strides: list[list[int]] = Field(default_factory=list)
    res_block: bool = False
    norm: str = "instance"

    def planned(self, spacing_mm: list[float], patch_size: list[int]) -> NetworkConfig:
        """A copy with kernels/strides filled by the anisotropy rule when they are empty."""
        if self.kernel_size and self.strides:
            return self
        kernels, strides = plan_anisotropic(spacing_mm, patch_size, len(self.filters))
        return self.model_copy(update={"kernel_size": kernels, "strides": strides})


class NormalizationSettings(Settings):
    """The keys of ``ModelConfig.normalization`` (checked; the section itself stays a mapping)."""

    method: Literal["percentile"] = "percentile"
    lower_percentile: float = 1.0
    upper_percentile: float = 99.0
    clip: tuple[float, float] = (-0.5, 2.0)
    missing_channel_value: float = 0.0


class InferenceSettings(Settings):
    """The keys of ``ModelConfig.inference`` (sliding window; checked, the section stays a mapping)."""

    roi_size: list[int] = Field(default_factory=lambda: [16, 128, 128])
    overlap: float = Field(default=0.25, ge=0, lt=1)
    blend: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(default=1, ge=1)


class ColumnSettings(Settings):
    """Parameters of ``model.postprocess.spinal_column_mask`` (mm): ``postprocess.spinal_column`` of a
    model configuration, when it is a mapping rather than true / false."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bridge_mm: float = Field(default=2.0, ge=0)  # bridges thinner than twice this are cut
    gap_mm: float = Field(default=8.0, ge=0)  # regions this close to the column (in a chain) stay

    @classmethod
    def from_config(cls, postprocess: Mapping[str, Any] | None) -> ColumnSettings | None:
        """The settings named by a model config's ``postprocess`` section; None when switched off."""
        section = (postprocess or {}).get("spinal_column")
        if not section:
            return None
        if section is True:
            return cls()
        return cls.from_data(dict(section), source="postprocess.spinal_column")


class PostprocessSettings(Settings):
    """The keys of ``ModelConfig.postprocess`` (checked; the section stays a mapping)."""

    spinal_column: bool | ColumnSettings = True

    @field_validator("spinal_column", mode="before")
    @classmethod
    def _switch_or_settings(cls, value: Any) -> Any:
        return value if isinstance(value, bool) else ColumnSettings.model_validate(value)


def _checked(schema: type[Settings]) -> Any:
    """A mapping section whose keys and values ``schema`` checks; the mapping itself is kept as given."""
    def check(value: dict[str, Any]) -> dict[str, Any]:
        schema.model_validate(value)
        return value
    check.schema = schema  # type: ignore[attr-defined]  # read by core.settings to list the known keys
    return AfterValidator(check)


class ModelConfig(Settings):
    """Everything a checkpoint needs besides its weights (saved as ``config.json``)."""

    version: str = "0.1.0"
    name: str = "modicseg-unet"
    #: image contrasts, in input-channel order; each is followed by a presence flag channel.
    channels: list[str] = Field(default_factory=lambda: ["T1", "T2"])
    presence_flags: bool = True
    #: nibabel axis codes of the model's array axes; axis 0 is the (thick) sagittal slice axis.
    orientation: str = "RAS"
    #: target voxel size in mm for (axis 0, axis 1, axis 2) of the model orientation.
    spacing_mm: list[float] = Field(default_factory=lambda: [4.0, 1.0, 1.0])
    #: slice-axis spacings in this range are kept as acquired (no interpolation across thick slices).
    native_slice_spacing_range_mm: list[float] = Field(default_factory=lambda: [2.5, 5.0])
    #: per-channel intensity normalisation (percentile scaling, then clipping): NormalizationSettings' keys.
    normalization: Annotated[dict[str, Any], _checked(NormalizationSettings)] = Field(default_factory=lambda: {
        "method": "percentile", "lower_percentile": 1.0, "upper_percentile": 99.0,
        "clip": [-0.5, 2.0], "missing_channel_value": 0.0})
    labels: dict[int, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS))
    nested: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_NESTED))
    patch_size: list[int] = Field(default_factory=lambda: [16, 128, 128])
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    #: sliding-window settings: InferenceSettings' keys.
    inference: Annotated[dict[str, Any], _checked(InferenceSettings)] = Field(default_factory=lambda: {
        "roi_size": [16, 128, 128], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1})
    #: clean-up after the network (``model.postprocess``): ``spinal_column`` keeps the labelled
    #: voxels that form the spinal column (true, false, or {bridge_mm, gap_mm}: ColumnSettings).
    postprocess: Annotated[dict[str, Any], _checked(PostprocessSettings)] = Field(
        default_factory=lambda: {"spinal_column": True})

    # --- derived ---------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return len(self.channels) * (2 if self.presence_flags else 1)

    @property
    def out_channels(self) -> int:
        return len(self.labels)

    def resolved(self) -> ModelConfig:
        """A copy whose network kernels/strides are filled in."""
        return self.model_copy(update={"network": self.network.planned(self.spacing_mm, self.patch_size)})

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        d["nested"] = {str(k): v for k, v in self.nested.items()}
        return {"format": CONFIG_FORMAT, **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "model configuration") -> ModelConfig:
        """The configuration ``data`` gives (defaults for what it leaves out); SettingsError (also a
        ValueError) naming ``source`` and the key for an unknown key or a value that does not fit."""
        return cls.from_data({k: v for k, v in data.items() if k != "format"}, source)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{path}: cannot read the model configuration ({exc})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: a model configuration is a JSON object")
        return cls.from_dict(data, source=path)
