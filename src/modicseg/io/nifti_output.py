"""Write images as NIfTI with a JSON sidecar of acquisition parameters (no identifiers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from modicseg.core.convert import _json_default, save_nifti
from modicseg.core.image import Image
from modicseg.core.version import __version__


def safe_name(text: str, limit: int = 48) -> str:
    """A file-name-safe version of a series description."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", text or "").strip("_")
    return cleaned[:limit] or "series"


def sidecar(image: Image, extra: dict | None = None) -> dict:
    """JSON sidecar: provenance, geometry and the tool version."""
    data = image.provenance.to_dict()
    data.update({
        "shape": list(image.shape),
        "voxel_size_mm": [round(float(v), 6) for v in image.spacing],
        "orientation": "".join(image.axcodes),
        "affine_ras": image.affine.tolist(),
        "written_by": f"modicseg {__version__}",
    })
    if extra:
        data.update(extra)
    return data


def write_image(image: Image, folder: Path, stem: str, extra: dict | None = None) -> list[Path]:
    """Write ``stem.nii.gz`` and ``stem.json``; returns both paths."""
    nii_path = folder / f"{stem}.nii.gz"
    json_path = folder / f"{stem}.json"
    save_nifti(image, str(nii_path))
    json_path.write_text(json.dumps(sidecar(image, extra), indent=2, default=_json_default))
    return [nii_path, json_path]
