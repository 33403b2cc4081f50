"""The network: a compact MONAI DynUNet whose kernels and strides respect anisotropic voxels."""

from __future__ import annotations

from typing import TYPE_CHECKING

# plan_anisotropic lives with the config that uses it (``NetworkConfig.planned``); re-exported here
from modicseg.model.config import ModelConfig, plan_anisotropic

__all__ = ["build_network", "count_parameters", "plan_anisotropic", "total_stride"]

if TYPE_CHECKING:
    import torch


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
    norms: dict[str, str | tuple[str, dict[str, bool]]] = {"instance": ("INSTANCE", {"affine": True}),
                                                           "batch": "BATCH"}
    norm = norms[net.norm]
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
