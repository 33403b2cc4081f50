"""Segmentation model stage: a MONAI DynUNet labelling vertebral bodies (1), discs (2) and Modic
lesions (3) on sagittal lumbar MRI (see docs/model.md).

Modules: ``config`` (the model config travelling with checkpoints), ``network``, ``preprocess``
(model space and back), ``losses`` (partial-label Dice + CE), ``data`` (synthetic stream,
augmentation), ``cases`` (annotated data layouts), ``train``, ``finetune``, ``inference``
(``Segmenter``), ``checkpoint``, ``validation`` (Dice on annotated cases), ``metrics``. Scoring with the
analysis (level names) is ``modicseg.evaluation.segmentation``: this stage never imports ``analysis``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelConfig", "Segmentation", "Segmenter", "finetune", "load_checkpoint", "save_checkpoint", "train"]

_LAZY = {
    "ModelConfig": ("modicseg.model.config", "ModelConfig"),
    "Segmenter": ("modicseg.model.inference", "Segmenter"),
    "Segmentation": ("modicseg.model.segmentation", "Segmentation"),
    "load_checkpoint": ("modicseg.model.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("modicseg.model.checkpoint", "save_checkpoint"),
    "train": ("modicseg.model.train", "train"),
    "finetune": ("modicseg.model.finetune", "finetune"),
}


def __getattr__(name: str) -> Any:
    """Import torch/MONAI-heavy parts only when used."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'modicseg.model' has no attribute '{name}'")
