"""Training / fine-tuning settings (YAML): defaults, deep merge and validation."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modicseg.io.errors import InputError
from modicseg.model.config import ModelConfig

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "run_dir": "runs/default",
    "output": None,
    "init_from": None,
    "model": {},
    "optim": {
        "steps": 2400, "batch_size": 2, "lr": 2e-3, "weight_decay": 1e-4, "warmup_steps": 50,
        "lr_end_fraction": 0.02, "grad_clip": 12.0, "precision": "auto", "device": "auto",
        "num_threads": 2, "max_minutes": None, "checkpoint_every_min": 5.0,
    },
    "loss": {"dice_weight": 1.0, "ce_weight": 1.0},
    "data": {
        "num_workers": 1,
        "foreground_fraction": 0.67,
        "synthetic": {
            "enabled": True, "source": "synth", "pool_size": 24, "refresh_every": 4,
            "slice_spacing_mm": [3.0, 4.5], "fov_mm": [60.0, 200.0, 240.0], "generator": {},
        },
        "real": {"dirs": [], "fraction": 0.0, "overrides": {}, "limit": None, "cases": None,
                 "sources": [],  # [{dir, split | cases, overrides, paint, ignore_above, ignore_below}]
                 "paint": {"intensity_curve": 0.0, "lesions": [0, 3], "lookalikes": [0, 3]}},
    },
    "augment": {
        "flip_lr": 0.5, "affine": 0.3, "rotate_deg": 12.0, "scale": 0.1, "noise": 0.2,
        "bias_field": 0.3, "gamma": 0.3, "smooth": 0.2, "scale_intensity": 0.3,
        "channel_dropout": {"T1": 0.15, "T2": 0.15},
        "artefacts": {},  # TorchIO: {motion: p, ghosting: p, spike: p, anisotropy: p}
    },
    "validation": {
        "every_steps": 250,
        "synthetic": {"n_cases": 6, "seed": 1000, "generator": {}},
        "real": {"dirs": [], "limit": None, "overrides": {}, "cases": None},
    },
}

# keys whose values are free-form mappings (not checked against the defaults)
FREE_FORM = {"model", "generator", "overrides", "channel_dropout", "artefacts"}


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``base`` updated by ``update`` recursively; unknown keys are an error."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out and path.rstrip(".").split(".")[-1] not in FREE_FORM:
            raise InputError(f"unknown setting '{where}'")
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in FREE_FORM:
            out[key] = deep_merge(out[key], value, where + ".")
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides. Relative paths stay as written (resolved by the caller)."""
    settings = copy.deepcopy(dict(base or DEFAULTS))
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such config file")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{p}: invalid YAML ({exc})") from None
        if not isinstance(loaded, Mapping):
            raise InputError(f"{p}: expected a mapping at the top level")
        settings = deep_merge(settings, loaded)
    if overrides:
        settings = deep_merge(settings, overrides)
    return settings


def model_config_from(settings: Mapping[str, Any]) -> ModelConfig:
    """The ModelConfig of the ``model:`` section (defaults for what it leaves out)."""
    try:
        return ModelConfig.from_dict(dict(settings.get("model") or {})).resolved()
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid model settings: {exc}") from None
