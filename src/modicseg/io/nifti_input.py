"""NIfTI input: explicit --t1/--t2 files, or a folder with BIDS-like names."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from modicseg.core.convert import from_nibabel
from modicseg.core.image import Provenance, ScalarImage
from modicseg.io.classify import plane_of
from modicseg.io.errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
BIDS_SUFFIX = {"t1": ("_T1w.nii.gz", "_T1w.nii"), "t2": ("_T2w.nii.gz", "_T2w.nii")}


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def _sidecar(path: Path) -> dict:
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.name[: -len(".nii")]
    side = path.with_name(stem + ".json")
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{side}: invalid JSON sidecar ({exc})") from None
    return {}


def load_nifti_image(path: str | Path, weighting: str | None = None) -> ScalarImage:
    """Read a 3-D NIfTI file as a ScalarImage, with provenance from a JSON sidecar if present."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        nii = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    shape = nii.shape
    if (len(shape) == 4 and shape[3] > 1) or len(shape) not in (3, 4):
        raise InputError(f"{path}: not a 3-D anatomical image (shape {shape})")
    if nii.get_sform(coded=True)[1] == 0 and nii.get_qform(coded=True)[1] == 0:
        raise InputError(f"{path}: neither sform nor qform is set; the orientation is unknown")
    sidecar = _sidecar(path)
    plane = _nifti_plane(nii.affine)
    provenance = provenance_from_sidecar(sidecar, path.name, plane, weighting)
    try:
        image = from_nibabel(nii, kind=ScalarImage, provenance=provenance)
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: cannot read voxel data ({type(exc).__name__}: {exc})") from None
    return image  # type: ignore[return-value]


def provenance_from_sidecar(sidecar: dict, name: str, plane: str, weighting: str | None) -> Provenance:
    """Provenance from a modicseg sidecar (snake_case keys) or a dcm2niix/BIDS sidecar (seconds)."""
    if "acquisition" in sidecar or "series_instance_uid" in sidecar:  # written by modicseg
        acquisition = dict(sidecar.get("acquisition") or {})
        return Provenance(
            series_instance_uid=sidecar.get("series_instance_uid"),
            series_number=sidecar.get("series_number"),
            series_description=sidecar.get("series_description") or name,
            frame_of_reference_uid=sidecar.get("frame_of_reference_uid"),
            plane=sidecar.get("plane") or plane,
            weighting=weighting or sidecar.get("weighting"),
            weighting_reason=sidecar.get("weighting_reason") if not weighting else "named by the user or file name",
            source_format="nifti",
            acquisition=acquisition,
        )
    seconds_to_ms = {"RepetitionTime": "repetition_time_ms", "EchoTime": "echo_time_ms",
                     "InversionTime": "inversion_time_ms"}
    acquisition = {new: float(sidecar[old]) * 1000.0 for old, new in seconds_to_ms.items() if old in sidecar}
    for old, new in (("FlipAngle", "flip_angle_deg"), ("MagneticFieldStrength", "magnetic_field_strength_t"),
                     ("Manufacturer", "manufacturer"), ("ManufacturersModelName", "model"),
                     ("SliceThickness", "slice_thickness_mm"), ("SpacingBetweenSlices", "spacing_between_slices_mm")):
        if old in sidecar:
            acquisition[new] = sidecar[old]
    return Provenance(
        series_instance_uid=sidecar.get("SeriesInstanceUID"),
        series_number=sidecar.get("SeriesNumber"),
        series_description=sidecar.get("SeriesDescription") or name,
        frame_of_reference_uid=sidecar.get("FrameOfReferenceUID"),
        plane=plane,
        weighting=weighting,
        weighting_reason="named by the user or file name" if weighting else None,
        source_format="nifti",
        acquisition=acquisition,
    )


def _nifti_plane(affine: np.ndarray) -> str:
    """Plane of the thickest-spaced axis's normal (the slice axis of a 2-D acquisition)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    k = int(np.argmax(spacing)) if spacing.max() > 1.2 * np.min(spacing) else 2
    others = [a for a in range(3) if a != k]
    lps = np.diag([-1, -1, 1]) @ affine[:3, :3]
    row = lps[:, others[0]] / spacing[others[0]]
    col = lps[:, others[1]] / spacing[others[1]]
    return plane_of(tuple(row) + tuple(col))[0]


def find_bids_pair(folder: Path) -> tuple[Path | None, Path | None]:
    """The *_T1w / *_T2w NIfTI files of a folder (searched recursively); error when ambiguous."""
    found: dict[str, list[Path]] = {"t1": [], "t2": []}
    for role, suffixes in BIDS_SUFFIX.items():
        for suffix in suffixes:
            found[role].extend(sorted(folder.rglob("*" + suffix)))
    for role, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in paths)
            raise InputError(f"{folder}: several {role.upper()} NIfTI files ({names}); pass --{role} FILE")
    return (found["t1"][0] if found["t1"] else None, found["t2"][0] if found["t2"] else None)


def folder_has_nifti(folder: Path) -> bool:
    return any(p.name.endswith(NIFTI_SUFFIXES) for p in folder.rglob("*"))
