"""Where the shipped segmentation model is, for a source checkout and for an installed package.

A wheel carries the model as package data (``modicseg/models/modicseg-unet-v1``: weights, config,
metadata and model card, copied from the repository's ``models/`` folder when the wheel is built,
see ``setup.py``).  The order: ``$MODICSEG_MODEL``, then that packaged copy, then what
``modicseg.model.checkpoint.default_checkpoint`` finds (``models/`` of the source tree or of the
working directory).  Kept free of torch so that it is cheap to import.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The shipped model's folder name (``modicseg.model.checkpoint.DEFAULT_MODEL_NAME``).
MODEL_NAME = "modicseg-unet-v1"
#: Environment variable naming a checkpoint folder (``modicseg.model.checkpoint.MODEL_ENV``).
MODEL_ENV = "MODICSEG_MODEL"
#: The files a packaged model carries (training logs and benchmark outputs stay in the repository).
#: ``model.onnx`` / ``model.onnx.json``: the export ONNX Runtime runs on CPU (``modicseg.model.onnx_backend``).
PACKAGED_FILES = ("model.pt", "config.json", "metadata.json", "MODEL_CARD.md", "model.onnx", "model.onnx.json")
#: Package data folder (inside the installed ``modicseg`` package) holding the shipped model.
PACKAGED_DIR = Path(__file__).resolve().parent / "models" / MODEL_NAME


def packaged_model() -> Path | None:
    """The model folder inside the installed package, when the package carries one."""
    return PACKAGED_DIR if (PACKAGED_DIR / "model.pt").is_file() and (PACKAGED_DIR / "config.json").is_file() \
        else None


def shipped_model(model: str | Path | None = None) -> str | Path | None:
    """The checkpoint folder to load: ``model`` when given, else ``$MODICSEG_MODEL`` (None: the model
    stage reads it), else the packaged copy, else None (the model stage's own default)."""
    if model is not None or os.environ.get(MODEL_ENV):
        return model
    return packaged_model()
