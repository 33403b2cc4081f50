"""Build hook: a wheel carries the shipped segmentation model as package data.

Everything else is in pyproject.toml.  ``build_py`` copies the model files (weights, config,
metadata, model card, ONNX export) from ``models/modicseg-unet-v1/`` of the source tree -- whatever is there at
build time -- into ``modicseg/models/modicseg-unet-v1/`` of the build, where
``modicseg.shipped.packaged_model`` finds them after ``pip install``.  A build without a model
fails (a wheel without one would skip the network); ``MODICSEG_BUILD_WITHOUT_MODEL=1`` allows it.
Editable installs are not affected: they find the model in the source tree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
MODEL_NAME = "modicseg-unet-v1"
MODEL_FILES = ("model.pt", "config.json", "metadata.json", "MODEL_CARD.md", "model.onnx", "model.onnx.json",
               "confidence.json")
REQUIRED = ("model.pt", "config.json")
MAX_MODEL_MB = 50.0


class BuildWithModel(build_py):
    """build_py that also copies the shipped model into the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        source = ROOT / "models" / MODEL_NAME
        missing = [name for name in REQUIRED if not (source / name).is_file()]
        if missing:
            if os.environ.get("MODICSEG_BUILD_WITHOUT_MODEL") == "1":
                self.announce(f"building without the shipped model ({source} lacks {', '.join(missing)})", level=3)
                return
            raise SystemExit(f"{source}: no shipped model ({', '.join(missing)} missing); a package without it "
                             "cannot segment. Put the checkpoint there, or set MODICSEG_BUILD_WITHOUT_MODEL=1")
        files = [source / name for name in MODEL_FILES if (source / name).is_file()]
        size_mb = sum(f.stat().st_size for f in files) / 2**20
        if size_mb > MAX_MODEL_MB:
            raise SystemExit(f"{source}: the model files take {size_mb:.1f} MB, more than the {MAX_MODEL_MB:g} MB "
                             "a package may carry")
        target = Path(self.build_lib) / "modicseg" / "models" / MODEL_NAME
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)
        self.announce(f"packaged the shipped model ({size_mb:.1f} MB) into {target}", level=3)


setup(cmdclass={"build_py": BuildWithModel})
