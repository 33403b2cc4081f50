"""NIfTI input: explicit --t1/--t2/--stir files, or a folder with BIDS-like names (*_T1w, *_T2w, *_STIR)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from modicseg.core.convert import from_nibabel
from modicseg.core.image import Provenance, ScalarImage
from modicseg.io.classify import (
    FAT_SUPPRESSED_FLUID,
    fat_suppression_named,
    plane_of,
    weighting_from_description,
)
from modicseg.io.errors import InputError
from modicseg.io.integrity import check_finite, check_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")
BIDS_SUFFIX = {"t1": ("_T1w.nii.gz", "_T1w.nii"), "t2": ("_T2w.nii.gz", "_T2w.nii"),
               "stir": ("_STIR.nii.gz", "_STIR.nii")}


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


#: What the image formats nibabel reads besides NIfTI are, for messages (by nibabel's class name).
OTHER_FORMATS = {
    "MGHImage": "a FreeSurfer MGH/MGZ image",
    "AnalyzeImage": "an Analyze 7.5 image",
    "Spm2AnalyzeImage": "an Analyze 7.5 image (SPM2 variant)",
    "Spm99AnalyzeImage": "an Analyze 7.5 image (SPM99 variant)",
    "Nifti1Pair": "a NIfTI-1 header/image pair (.hdr + .img), not a single NIfTI file",
    "Nifti2Pair": "a NIfTI-2 header/image pair (.hdr + .img), not a single NIfTI file",
    "Minc1Image": "a MINC-1 image",
    "Minc2Image": "a MINC-2 image",
    "PARRECImage": "a Philips PAR/REC image",
    "GiftiImage": "a GIFTI surface file",
    "Cifti2Image": "a CIFTI-2 file",
    "EcatImage": "an ECAT PET image",
}


def require_nifti(image: object, path: Path, what: str = "image") -> nib.Nifti1Image:
    """``image`` (what ``nib.load`` returned for ``path``) when it is a single-file NIfTI image (NIfTI-1 or
    NIfTI-2), else an InputError naming the file and what it is: nibabel reads other formats (MGH/MGZ,
    Analyze, MINC, PAR/REC ...) as other image classes, which lack the NIfTI header this code relies on."""
    if isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
        return image
    kind = type(image).__name__
    described = OTHER_FORMATS.get(kind, f"a {kind} file")
    raise InputError(f"{path}: not a NIfTI file: it is {described} (nibabel reads it as {kind}); convert the "
                     f"{what} to a .nii or .nii.gz file (e.g. with nibabel or FreeSurfer's mri_convert)")


def _sidecar(path: Path) -> dict:
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.name[: -len(".nii")]
    side = path.with_name(stem + ".json")
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{side}: invalid JSON sidecar ({exc})") from None
    return {}


def load_nifti_image(path: str | Path, weighting: str | None = None, reason: str | None = None) -> ScalarImage:
    """Read a 3-D NIfTI file as a ScalarImage, with provenance from a JSON sidecar if present.

    ``weighting`` (with ``reason``, default "named by the user or file name") overrides the sidecar's.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else
                         f"{path}: not a regular file (a pipe, socket, device or folder is never read)")
    try:
        loaded = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    nii = require_nifti(loaded, path)  # MGH/MGZ, Analyze, MINC ...: refused with what the file is
    shape = nii.shape
    if (len(shape) == 4 and shape[3] > 1) or len(shape) not in (3, 4):
        raise InputError(f"{path}: not a 3-D anatomical image (shape {shape})")
    if nii.get_sform(coded=True)[1] == 0 and nii.get_qform(coded=True)[1] == 0:
        raise InputError(f"{path}: neither sform nor qform is set; the orientation is unknown")
    check_nifti(nii, path)  # declared size against the file, usable affine: before any voxel is read
    sidecar = _sidecar(path)
    plane = _nifti_plane(nii.affine)
    provenance = provenance_from_sidecar(sidecar, path.name, plane, weighting, reason)
    try:
        image = from_nibabel(nii, kind=ScalarImage, provenance=provenance)
    except MemoryError:
        raise
    except Exception as exc:  # truncated or corrupt gzip stream (OSError, EOFError, zlib.error), bad data
        raise InputError(f"{path}: cannot read voxel data ({type(exc).__name__}: {exc})") from None
    check_finite(image.array, str(path))
    return image


def provenance_from_sidecar(sidecar: dict, name: str, plane: str, weighting: str | None,
                            reason: str | None = None) -> Provenance:
    """Provenance from a modicseg sidecar (snake_case keys) or a dcm2niix/BIDS sidecar (seconds)."""
    named = reason or "named by the user or file name"
    if _is_modicseg_sidecar(sidecar):
        acquisition = dict(sidecar.get("acquisition") or {})
        return Provenance(
            series_instance_uid=sidecar.get("series_instance_uid"),
            series_number=sidecar.get("series_number"),
            series_description=sidecar.get("series_description") or name,
            frame_of_reference_uid=sidecar.get("frame_of_reference_uid"),
            plane=sidecar.get("plane") or plane,
            weighting=weighting or sidecar.get("weighting"),
            weighting_reason=sidecar.get("weighting_reason") if not weighting else named,
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
        weighting_reason=named if weighting else None,
        source_format="nifti",
        acquisition=acquisition,
    )


def _is_modicseg_sidecar(sidecar: dict) -> bool:
    return "acquisition" in sidecar or "series_instance_uid" in sidecar


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def fluid_weighting_from_sidecar(path: str | Path) -> tuple[str, str] | None:
    """("STIR" | "T2FS", why) when the JSON sidecar of a fluid-sensitive NIfTI says its fat is
    suppressed, else None.

    A modicseg sidecar says so by its weighting; a dcm2niix/BIDS sidecar by an InversionTime of
    60-300 ms (STIR), a SeriesDescription naming STIR/TIRM or fat suppression, a Dixon water
    ImageType, or fat saturation in ScanOptions.
    """
    sidecar = _sidecar(Path(path))
    if not sidecar:
        return None
    if _is_modicseg_sidecar(sidecar):
        weighting = sidecar.get("weighting")
        if weighting in FAT_SUPPRESSED_FLUID:
            return weighting, f"sidecar: {sidecar.get('weighting_reason') or weighting}"
        return None
    ti = sidecar.get("InversionTime")
    try:
        ti_ms = None if ti is None else float(ti) * 1000.0
    except (TypeError, ValueError):
        ti_ms = None
    if ti_ms is not None and 60.0 <= ti_ms <= 300.0:
        return "STIR", f"sidecar: InversionTime {ti_ms:g} ms, short-tau inversion recovery"
    description = str(sidecar.get("SeriesDescription") or sidecar.get("ProtocolName") or "")
    if weighting_from_description(description) == "STIR" and (ti_ms is None or ti_ms <= 0):
        return "STIR", f"sidecar: description '{description}' names a STIR"
    why = fat_suppression_named(description, _values(sidecar.get("ImageType")), _values(sidecar.get("ScanOptions")))
    if why is not None:
        return "T2FS", f"sidecar: {why}"
    return None


def _nifti_plane(affine: np.ndarray) -> str:
    """Plane of the thickest-spaced axis's normal (the slice axis of a 2-D acquisition)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    k = int(np.argmax(spacing)) if spacing.max() > 1.2 * np.min(spacing) else 2
    others = [a for a in range(3) if a != k]
    lps = np.diag([-1, -1, 1]) @ affine[:3, :3]
    row = lps[:, others[0]] / spacing[others[0]]
    col = lps[:, others[1]] / spacing[others[1]]
    return plane_of(tuple(row) + tuple(col))[0]


def find_bids_files(folder: Path) -> dict[str, Path | None]:
    """The *_T1w / *_T2w / *_STIR NIfTI files of a folder (searched recursively), by kind "t1", "t2",
    "stir"; error when one kind is ambiguous."""
    found: dict[str, list[Path]] = {kind: [] for kind in BIDS_SUFFIX}
    for kind, suffixes in BIDS_SUFFIX.items():
        for suffix in suffixes:
            found[kind].extend(sorted(folder.rglob("*" + suffix)))
    for kind, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in paths)
            raise InputError(f"{folder}: several {kind.upper()} NIfTI files ({names}); pass --{kind} FILE")
    return {kind: (paths[0] if paths else None) for kind, paths in found.items()}


def find_bids_pair(folder: Path) -> tuple[Path | None, Path | None]:
    """The *_T1w / *_T2w NIfTI files of a folder (searched recursively); error when ambiguous."""
    files = find_bids_files(folder)
    return files["t1"], files["t2"]


def folder_has_nifti(folder: Path) -> bool:
    return any(p.name.endswith(NIFTI_SUFFIXES) for p in folder.rglob("*"))
