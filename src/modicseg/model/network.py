"""The network: a compact MONAI DynUNet whose kernels and strides respect anisotropic voxels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modicseg.model.config import ModelConfig

if TYPE_CHECKING:
    import torch


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


def total_stride(config: ModelConfig) -> list[int]:
    """Product of the strides per axis: input sizes must be multiples of it."""
    net = config.resolved().network
    out = [1, 1, 1]
    for st in net.strides:
        out = [o * s for o, s in zip(out, st, strict=True)]
    return out


def build_network(config: ModelConfig) -> torch.nn.Module:
    """The DynUNet that ``config`` describes (weights freshly initialised)."""
    from monai.networks.nets import DynUNet

    net = config.resolved().network
    if net.name != "DynUNet":
        raise ValueError(f"unsupported network '{net.name}' (only DynUNet)")
    norm = {"instance": ("INSTANCE", {"affine": True}), "batch": "BATCH"}[net.norm]
    return DynUNet(
        spatial_dims=3,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        kernel_size=net.kernel_size,
        strides=net.strides,
        upsample_kernel_size=net.strides[1:],
        filters=list(net.filters),
        norm_name=norm,
        res_block=net.res_block,
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
