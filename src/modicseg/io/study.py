"""A study: find the sagittal T1 and T2 of a DICOM folder or NIfTI files, load them, share a grid.

Selection rule (documented in README): among usable, non-localizer sagittal stacks of the wanted
weighting, prefer spin-echo sequences, then more slices, then finer in-plane spacing, then the
higher series number (a repeat is usually the better acquisition).  Users can override by series
number, stack name ("7.2") or SeriesInstanceUID.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modicseg.core.image import ScalarImage
from modicseg.core.resample import resample_to
from modicseg.io.dicom_series import StudyScan, scan_study
from modicseg.io.dicom_volume import build_volume
from modicseg.io.errors import InputError, SelectionError
from modicseg.io.nifti_input import find_bids_pair, folder_has_nifti, is_nifti, load_nifti_image
from modicseg.io.register import register_rigid
from modicseg.io.stacks import Stack

log = logging.getLogger(__name__)

ROLE_WEIGHTING = {"t1": "T1", "t2": "T2"}


class RegistrationWarning(UserWarning):
    """T1 and T2 had different frames of reference and were registered."""


@dataclass
class StudyRequest:
    """What the user asked for: a study path and/or NIfTI files, and optional overrides."""

    path: Path | None = None
    t1: Path | None = None
    t2: Path | None = None
    t1_series: str | None = None
    t2_series: str | None = None
    resample_irregular: bool = False


@dataclass
class Study:
    """The chosen T1 and T2 (each on its own native grid) and what was found."""

    t1: ScalarImage | None
    t2: ScalarImage | None
    source: str  # "dicom" or "nifti"
    scan: StudyScan | None = None
    warnings: list[str] = field(default_factory=list)

    def roles(self) -> dict[str, ScalarImage]:
        return {role: img for role, img in (("t1", self.t1), ("t2", self.t2)) if img is not None}


def _rank(stack: Stack) -> tuple:
    spin_echo = "SE" in stack.first.scanning_sequence
    spacing = stack.first.pixel_spacing or (99.0, 99.0)
    return (spin_echo, stack.n_slices, -spacing[0] * spacing[1], stack.series_number or 0)


def _matches(stack: Stack, key: str) -> bool:
    return key in (stack.series_instance_uid, stack.name, str(stack.series_number))


def _describe(stacks: list[Stack]) -> str:
    lines = []
    for s in stacks:
        status = "usable" if s.usable else f"refused: {s.refusal}"
        lines.append(f"  series {s.name} '{s.series_description}': {s.plane} {s.weighting} "
                     f"({s.n_slices} images, {status})")
    return "\n".join(lines)


def choose_stack(stacks: list[Stack], role: str, override: str | None = None) -> Stack | None:
    """The stack for role 't1' or 't2', or None when the study has none."""
    if override is not None:
        matching = [s for s in stacks if _matches(s, override)]
        if not matching:
            raise SelectionError(f"no series '{override}' for {role.upper()}; stacks found:\n{_describe(stacks)}")
        usable = [s for s in matching if s.usable]
        if not usable:
            raise SelectionError(f"series '{override}' chosen as {role.upper()} cannot be used: "
                                 f"{matching[0].refusal}")
        chosen = max(usable, key=_rank)
        if chosen.plane != "sagittal":
            warnings.warn(f"series {chosen.name} chosen as {role.upper()} is {chosen.plane}, not sagittal",
                          stacklevel=2)
        return chosen
    wanted = ROLE_WEIGHTING[role]
    candidates = [s for s in stacks if s.usable and not s.localizer and s.plane == "sagittal"
                  and s.weighting == wanted]
    return max(candidates, key=_rank) if candidates else None


def assign_roles(scan: StudyScan, t1_series: str | None = None,
                 t2_series: str | None = None) -> dict[str, Stack | None]:
    """Choose the T1 and T2 stacks and mark them on the scan's stacks."""
    chosen = {"t1": choose_stack(scan.stacks, "t1", t1_series),
              "t2": choose_stack(scan.stacks, "t2", t2_series)}
    if chosen["t1"] is not None and chosen["t1"] is chosen["t2"]:
        raise SelectionError(f"series {chosen['t1'].name} cannot be both T1 and T2")
    for stack in scan.stacks:
        stack.role = None
    for role, stack in chosen.items():
        if stack is not None:
            stack.role = role
    return chosen


def missing_role_error(scan: StudyScan, role: str) -> SelectionError:
    return SelectionError(
        f"{scan.root}: no usable sagittal {ROLE_WEIGHTING[role]} series found "
        f"(choose one with --{role}-series N); stacks found:\n{_describe(scan.stacks)}")


def nifti_inputs(request: StudyRequest) -> dict[str, Path | None] | None:
    """The NIfTI files a request names (--t1/--t2 or a BIDS-like folder), or None for DICOM."""
    files = {"t1": request.t1, "t2": request.t2}
    path = request.path
    if path is not None and not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path is not None and path.is_file() and is_nifti(path):
        raise InputError(f"{path}: a single NIfTI file; pass it as --t1 FILE or --t2 FILE")
    if any(files.values()):
        return files
    if path is not None and path.is_dir() and folder_has_nifti(path) and not _has_dicom_magic(path):
        files["t1"], files["t2"] = find_bids_pair(path)
        if not any(files.values()):
            raise InputError(f"{path}: NIfTI files found but none named *_T1w.nii[.gz] or *_T2w.nii[.gz]")
        return files
    if path is None:
        raise InputError("no study given: pass a DICOM folder, a BIDS-like NIfTI folder, or --t1/--t2 files")
    return None


def open_study(request: StudyRequest, require: tuple[str, ...] = ("t1", "t2")) -> Study:
    """Load the T1 and T2 a request names; error when a required role is missing."""
    nifti_files = nifti_inputs(request)
    if nifti_files is not None:
        images = {role: load_nifti_image(p, ROLE_WEIGHTING[role]) if p is not None else None
                  for role, p in nifti_files.items()}
        for role in require:
            if images[role] is None:
                raise SelectionError(f"no {ROLE_WEIGHTING[role]} image given (--{role} FILE)")
        return Study(t1=images["t1"], t2=images["t2"], source="nifti")
    assert request.path is not None
    scan = scan_study(request.path)
    chosen = assign_roles(scan, request.t1_series, request.t2_series)
    for role in require:
        if chosen[role] is None:
            raise missing_role_error(scan, role)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = {role: build_volume(stack, request.resample_irregular) if stack is not None else None
                  for role, stack in chosen.items()}
    study = Study(t1=images["t1"], t2=images["t2"], source="dicom", scan=scan,
                  warnings=[str(w.message) for w in caught])
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return study


def _has_dicom_magic(folder: Path, limit: int = 50) -> bool:
    checked = 0
    for p in folder.rglob("*"):
        if p.is_file() and not is_nifti(p) and not p.name.endswith(".json"):
            try:
                with open(p, "rb") as fh:
                    if fh.read(132)[128:132] == b"DICM":
                        return True
            except OSError:
                pass
            checked += 1
            if checked >= limit:
                break
    return False


def t1_on_t2_grid(study: Study, register: str = "auto") -> tuple[ScalarImage, ScalarImage]:
    """(T1 resampled onto the T2 grid, T2).

    Same FrameOfReferenceUID (or NIfTI files, which share scanner space) -> resampling in
    physical coordinates.  Different frames of reference -> rigid registration with a warning.
    ``register``: "auto", "always" or "never".
    """
    if study.t1 is None or study.t2 is None:
        raise SelectionError("both T1 and T2 are needed to put them on one grid")
    t1, t2 = study.t1, study.t2
    for_t1 = t1.provenance.frame_of_reference_uid
    for_t2 = t2.provenance.frame_of_reference_uid
    different = for_t1 is not None and for_t2 is not None and for_t1 != for_t2
    if register == "always" or (register == "auto" and different):
        message = (f"T1 (series {t1.provenance.series_number}) and T2 (series {t2.provenance.series_number}) "
                   "have different frames of reference: registered rigidly (check the alignment)")
        warnings.warn(message, RegistrationWarning, stacklevel=2)
        study.warnings.append(message)
        transform = register_rigid(t2, t1)
        return resample_to(t1, t2, transform), t2
    if t1.same_grid(t2):
        return t1.with_array(t1.array.astype(np.float32)), t2
    return resample_to(t1, t2), t2
