"""Export a checkpoint's network to ONNX for the torch-free CPU path (``modicseg.model.onnx_backend``).

    .venv/bin/python scripts/export_onnx.py                      # the shipped model (models/modicseg-unet-v1)
    .venv/bin/python scripts/export_onnx.py runs/X/export        # any checkpoint folder

Writes ``model.onnx`` and ``model.onnx.json`` (the SHA-256 of the ``model.pt`` exported, the largest
logit difference to torch on random windows) into the folder. Re-run it whenever ``model.pt``
changes: until then the analysis falls back to torch for that folder, and
``tests/test_onnx_runtime.py`` fails for the shipped model. Needs the ``onnx`` package
(``pip install -e .[dev]``). Exit status 2 for a folder that is not a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint folder (default: the shipped model)")
    args = parser.parse_args(argv)
    from modicseg.io.errors import ModicsegError
    from modicseg.model.onnx_backend import ONNX_META, export_onnx
    from modicseg.model.runtime import checkpoint_directory

    try:
        directory = checkpoint_directory(args.checkpoint)
        path = export_onnx(directory)
    except ModicsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_name(ONNX_META)} "
          f"({(path.with_name(ONNX_META)).read_text().count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
