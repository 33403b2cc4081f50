"""A study: find the sagittal T1 and T2 of a DICOM folder or NIfTI files, load them, share a grid.

Selection rule (documented in README): among usable, non-localizer sagittal stacks of the wanted
weighting, prefer spin-echo sequences, then more slices, then finer in-plane spacing, then the
higher series number (a repeat is usually the better acquisition).  Users can override by series
number, stack name ("7.2") or SeriesInstanceUID.

The "t2" role is the fluid-sensitive image (the network's second channel): a T2 when the study
has one; without a usable T2, a STIR / TIRM; without either, a fat-suppressed T2 (fat saturation,
SPAIR, Dixon water).  The image keeps its own weighting ("STIR", "T2FS") in its provenance, so
that the analysis types Modic changes with the bands of a fat-suppressed image.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modicseg.core.image import ScalarImage
from modicseg.core.resample import resample_to
from modicseg.io.classify import FAT_SUPPRESSED_FLUID, fluid_contrast
from modicseg.io.dicom_series import StudyScan, scan_study
from modicseg.io.dicom_volume import build_volume
from modicseg.io.errors import InputError, SelectionError
from modicseg.io.nifti_input import (
    find_bids_files,
    fluid_weighting_from_sidecar,
    folder_has_nifti,
    is_nifti,
    load_nifti_image,
)
from modicseg.io.register import register_rigid
from modicseg.io.stacks import Stack

log = logging.getLogger(__name__)

ROLE_WEIGHTING = {"t1": "T1", "t2": "T2"}
#: Weightings that may fill each role, in order of preference (see the module docstring).
ROLE_WEIGHTINGS = {"t1": ("T1",), "t2": ("T2", "STIR", "T2FS")}


class RegistrationWarning(UserWarning):
    """T1 and T2 had different frames of reference and were registered."""


@dataclass
class StudyRequest:
    """What the user asked for: a study path and/or NIfTI files, and optional overrides."""

    path: Path | None = None
    t1: Path | None = None
    t2: Path | None = None
    stir: Path | None = None  # a fat-suppressed fluid-sensitive NIfTI (STIR, TIRM, ...) for the T2 role
    t1_series: str | None = None
    t2_series: str | None = None
    resample_irregular: bool = False
    #: analyse without a T1 or T2 series that exists but was refused (default: refuse the study)
    allow_missing_contrast: bool = False


@dataclass
class Study:
    """The chosen T1 and T2 (each on its own native grid) and what was found.

    ``t2`` is the fluid-sensitive image: a T2, or a STIR / fat-suppressed T2 when the study has no
    T2 (its provenance's weighting says which, see :attr:`fluid_contrast`).
    """

    t1: ScalarImage | None
    t2: ScalarImage | None
    source: str  # "dicom" or "nifti"
    scan: StudyScan | None = None
    warnings: list[str] = field(default_factory=list)
    choice: dict[str, str] = field(default_factory=dict)  # role -> why that image was chosen

    def roles(self) -> dict[str, ScalarImage]:
        return {role: img for role, img in (("t1", self.t1), ("t2", self.t2)) if img is not None}

    @property
    def fluid_contrast(self) -> str | None:
        """"T2", "STIR" or "T2FS" (fat-suppressed T2): the kind of fluid-sensitive image; None without one."""
        return None if self.t2 is None else fluid_contrast(self.t2.provenance.weighting)


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


def _traits(stack: Stack) -> str:
    f = stack.first
    traits = ["spin echo" if "SE" in f.scanning_sequence else f"sequence {f.scanning_sequence or 'unknown'}",
              f"{stack.n_slices} slices"]
    if f.pixel_spacing:
        traits.append(f"{f.pixel_spacing[1]:.2f}x{f.pixel_spacing[0]:.2f} mm in plane")
    return ", ".join(traits)


def _why(role: str, chosen: Stack, candidates: list[Stack], sagittal: list[Stack], tier: int) -> str:
    """Why ``chosen`` fills ``role``: the ranking, and for the fluid-sensitive role which contrast and why."""
    what = f"sagittal {chosen.weighting}"
    ranked = (f"best of {len(candidates)} {what} stacks" if len(candidates) > 1 else f"the only {what} stack")
    text = f"{ranked} ({_traits(chosen)})"
    if role != "t2":
        return text
    if tier == 0:
        text = f"{text}; a T2 is the default fluid-sensitive image"
        unused = [s for s in sagittal if s.weighting in FAT_SUPPRESSED_FLUID]
        if unused:
            text += "; not used: " + ", ".join(f"{s.weighting} series {s.name}" for s in unused)
        return text
    missing = " or ".join(ROLE_WEIGHTINGS["t2"][:tier])
    return (f"no usable sagittal {missing}: {ranked} ({_traits(chosen)}) is the fluid-sensitive image "
            "(network's T2 channel; Modic types from the fat-suppressed bands, typing.stir_bands)")


def select_stack(stacks: list[Stack], role: str, override: str | None = None) -> tuple[Stack | None, str | None]:
    """(the stack for role 't1' or 't2', why), or (None, None) when the study has none.

    For 't2' (the fluid-sensitive image) a T2 is preferred, then a STIR, then a fat-suppressed T2.
    """
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
                          stacklevel=3)
        return chosen, f"chosen with --{role}-series {override} ({chosen.plane} {chosen.weighting})"
    sagittal = [s for s in stacks if s.usable and not s.localizer and s.plane == "sagittal"]
    for tier, wanted in enumerate(ROLE_WEIGHTINGS[role]):
        candidates = [s for s in sagittal if s.weighting == wanted]
        if candidates:
            chosen = max(candidates, key=_rank)
            return chosen, _why(role, chosen, candidates, sagittal, tier)
    return None, None


def choose_stack(stacks: list[Stack], role: str, override: str | None = None) -> Stack | None:
    """The stack for role 't1' or 't2', or None when the study has none (see :func:`select_stack`)."""
    return select_stack(stacks, role, override)[0]


def assign_roles(scan: StudyScan, t1_series: str | None = None,
                 t2_series: str | None = None) -> dict[str, Stack | None]:
    """Choose the T1 and T2 (fluid-sensitive) stacks and mark them, with the reason, on the scan's stacks."""
    selected = {"t1": select_stack(scan.stacks, "t1", t1_series),
                "t2": select_stack(scan.stacks, "t2", t2_series)}
    chosen = {role: stack for role, (stack, _) in selected.items()}
    if chosen["t1"] is not None and chosen["t1"] is chosen["t2"]:
        raise SelectionError(f"series {chosen['t1'].name} cannot be both T1 and T2")
    for stack in scan.stacks:
        stack.role = None
        stack.role_reason = None
    for role, (chosen_stack, reason) in selected.items():
        if chosen_stack is not None:
            chosen_stack.role = role
            chosen_stack.role_reason = reason
    return chosen


def missing_role_error(scan: StudyScan, role: str) -> SelectionError:
    wanted = ROLE_WEIGHTING[role] if role == "t1" else "T2 (or STIR / fat-suppressed T2)"
    return SelectionError(
        f"{scan.root}: no usable sagittal {wanted} series found "
        f"(choose one with --{role}-series N); stacks found:\n{_describe(scan.stacks)}")


def no_image_error(scan: StudyScan) -> SelectionError:
    """Neither a T1 nor a fluid-sensitive image: the study folder, and every stack with its reason."""
    return SelectionError(
        f"{scan.root}: no usable sagittal T1 or T2 series among {len(scan.stacks)} stack(s) "
        f"(choose one with --t1-series N / --t2-series N); stacks found:\n{_describe(scan.stacks)}")


def refused_candidates(stacks: list[Stack], role: str, chosen: Stack | None) -> list[Stack]:
    """Refused stacks that would have been preferred for ``role`` over ``chosen``.

    A refused, non-localizer stack of a weighting the role takes, sagittal or of unknown plane (its
    orientation is what is broken), and of a weighting preferred to the chosen stack's (any, when
    nothing was chosen): analysing without it would silently change what is measured.
    """
    order = ROLE_WEIGHTINGS[role]
    limit = len(order) if chosen is None else (order.index(chosen.weighting) if chosen.weighting in order
                                               else len(order))
    return [s for s in stacks if not s.usable and not s.localizer and s.plane in ("sagittal", "unknown")
            and s.weighting in order[:limit]]


def check_refused_roles(scan: StudyScan, chosen: dict[str, Stack | None], request: StudyRequest) -> list[str]:
    """Refuse a study whose T1 or T2 series exists but cannot be used, unless the request allows it.

    Returns the warnings to carry when it is allowed (``allow_missing_contrast``).
    """
    notes = []
    for role in ("t1", "t2"):
        if getattr(request, f"{role}_series") is not None:
            continue  # the user chose the series
        for stack in refused_candidates(scan.stacks, role, chosen[role]):
            what = f"{stack.plane} {stack.weighting} series {stack.name} '{stack.series_description}'"
            if request.allow_missing_contrast:  # the note goes into report.json: no full paths there
                what = what.replace(f"{scan.root}{os.sep}", "")
            instead = ("analysed without it" if chosen[role] is None else
                       f"series {chosen[role].name} ({chosen[role].weighting}) used instead")  # type: ignore[union-attr]
            if not request.allow_missing_contrast:
                raise SelectionError(
                    f"{scan.root}: {what} cannot be used: {stack.refusal}; refusing to analyse the study "
                    f"without it (fix or remove the series, choose one with --{role}-series N, or pass "
                    "--allow-missing-contrast to go on without it)")
            refusal = (stack.refusal or "").replace(f"{scan.root}{os.sep}", "")
            notes.append(f"{what} refused ({refusal}): {instead}")
    return notes


def nifti_inputs(request: StudyRequest) -> dict[str, Path | None] | None:
    """The NIfTI files a request names, by kind "t1", "t2", "stir" (--t1/--t2/--stir or a BIDS-like
    folder: *_T1w, *_T2w, *_STIR), or None for DICOM."""
    files = {"t1": request.t1, "t2": request.t2, "stir": request.stir}
    path = request.path
    if path is not None and not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path is not None and path.is_file() and is_nifti(path):
        raise InputError(f"{path}: a single NIfTI file; pass it as --t1 FILE, --t2 FILE or --stir FILE")
    if request.t2 is not None and request.stir is not None:
        raise InputError("--t2 and --stir both name the fluid-sensitive image: pass one of them")
    if any(files.values()):
        return files
    if path is not None and path.is_dir() and folder_has_nifti(path) and not _has_dicom_magic(path):
        files.update(find_bids_files(path))
        if not any(files.values()):
            raise InputError(f"{path}: NIfTI files found but none named *_T1w.nii[.gz], *_T2w.nii[.gz] "
                             "or *_STIR.nii[.gz]")
        return files
    if path is None:
        raise InputError("no study given: pass a DICOM folder, a BIDS-like NIfTI folder, or --t1/--t2/--stir files")
    return None


def _open_nifti(files: dict[str, Path | None], explicit: bool) -> tuple[dict[str, ScalarImage | None], dict[str, str]]:
    """Load the T1 and the fluid-sensitive image (a T2 when given, else the STIR) of NIfTI inputs."""
    images: dict[str, ScalarImage | None] = {"t1": None, "t2": None}
    choice: dict[str, str] = {}

    def named(kind: str, path: Path) -> str:
        return f"--{kind} {path.name}" if explicit else f"file {path.name}"

    if files["t1"] is not None:
        images["t1"] = load_nifti_image(files["t1"], "T1")
        choice["t1"] = f"{named('t1', files['t1'])}: T1"
    t2, stir = files["t2"], files["stir"]
    if t2 is not None:
        fat_suppressed = fluid_weighting_from_sidecar(t2)
        if fat_suppressed is not None:
            weighting, reason = fat_suppressed
            images["t2"] = load_nifti_image(t2, weighting, reason=reason)
            choice["t2"] = (f"{named('t2', t2)}: {weighting} ({reason}): the fluid-sensitive image; Modic types "
                            "from the fat-suppressed bands, typing.stir_bands")
        else:
            images["t2"] = load_nifti_image(t2, "T2")
            choice["t2"] = f"{named('t2', t2)}: T2, the default fluid-sensitive image"
        if stir is not None:
            choice["t2"] += f"; not used: STIR {stir.name}"
    elif stir is not None:
        images["t2"] = load_nifti_image(stir, "STIR", reason="named by the user or file name (--stir, *_STIR)")
        lead = named("stir", stir) if explicit else f"no *_T2w file: file {stir.name}"
        choice["t2"] = (f"{lead}: STIR, the fluid-sensitive image (network's T2 channel; Modic types from the "
                        "fat-suppressed bands, typing.stir_bands)")
    return images, choice


def open_study(request: StudyRequest, require: tuple[str, ...] = ("t1", "t2")) -> Study:
    """Load the T1 and the fluid-sensitive image (T2, else STIR) a request names; error when a
    required role is missing."""
    nifti_files = nifti_inputs(request)
    if nifti_files is not None:
        explicit = any(v is not None for v in (request.t1, request.t2, request.stir))
        images, choice = _open_nifti(nifti_files, explicit)
        for role in require:
            if images[role] is None:
                raise SelectionError("no T1 image given (--t1 FILE)" if role == "t1" else
                                     "no T2 or STIR image given (--t2 FILE or --stir FILE)")
        return Study(t1=images["t1"], t2=images["t2"], source="nifti", choice=choice)
    assert request.path is not None
    scan = scan_study(request.path)
    chosen = assign_roles(scan, request.t1_series, request.t2_series)
    for role in require:
        if chosen[role] is None:
            raise missing_role_error(scan, role)
    refused_notes = check_refused_roles(scan, chosen, request)
    if not any(chosen.values()):
        raise no_image_error(scan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for note in refused_notes:
            warnings.warn(note, stacklevel=2)
        images = {role: build_volume(stack, request.resample_irregular) if stack is not None else None
                  for role, stack in chosen.items()}
    study = Study(t1=images["t1"], t2=images["t2"], source="dicom", scan=scan,
                  warnings=[str(w.message) for w in caught],
                  choice={role: stack.role_reason or "" for role, stack in chosen.items() if stack is not None})
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
