"""Classify a DICOM stack: imaging plane from its orientation, weighting from its parameters.

Every decision comes with a reason a person can check.
"""

from __future__ import annotations

import re

import numpy as np

from modicseg.io.dicom_headers import FrameHeader

#: A stack whose normal lies more than this many degrees from the nearest patient axis is "oblique".
OBLIQUE_LIMIT_DEG = 20.0

PLANE_BY_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}

#: "T2FS": a T2-weighted image with its fat signal suppressed (spectral fat saturation, SPAIR, water
#: excitation, or the water image of a Dixon acquisition).
WEIGHTINGS = ("T1", "T2", "STIR", "T2FS", "PD", "other")

#: Fluid-sensitive weightings with fat suppressed: normal (fatty) marrow is dark on them, so a
#: Modic type-2 (fat) lesion is dark too and typing uses the STIR bands (``typing.stir_bands``).
FAT_SUPPRESSED_FLUID = ("STIR", "T2FS")


def plane_of(orientation: tuple[float, ...] | None) -> tuple[str, float]:
    """('sagittal' | 'coronal' | 'axial' | 'oblique' | 'unknown', angle to nearest axis in degrees)."""
    if orientation is None:
        return "unknown", float("nan")
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if norm == 0:
        return "unknown", float("nan")
    normal = np.abs(normal / norm)
    axis = int(np.argmax(normal))
    angle = float(np.degrees(np.arccos(np.clip(normal[axis], -1.0, 1.0))))
    if angle > OBLIQUE_LIMIT_DEG:
        return "oblique", angle
    return PLANE_BY_AXIS[axis], angle


_DESCRIPTION_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("STIR", re.compile(r"STIR|TIRM|\bIR[_ -]?FSE\b|\bFSE[_ -]?IR\b|T2[_ -]?IR\b", re.I)),
    ("other", re.compile(r"FLAIR|T2\*|T2STAR|\bDWI\b|DIFFUS|\bADC\b|\bSWI\b|LOCALI[ZS]ER|SCOUT|SURVEY", re.I)),
    ("PD", re.compile(r"\bPD\b|PDW|PROTON|_PD_|PD[_ -]", re.I)),
    ("T1", re.compile(r"T1(?!\d)", re.I)),
    ("T2", re.compile(r"T2(?!\d)", re.I)),
]


#: Fat suppression named by a series description: FS / fat sat / SPAIR / SPIR / CHESS / water
#: (excitation or Dixon water image).  Letters may not touch the word: "FSE" (fast spin echo) and
#: "FSPGR" are not fat suppression; digits may ("T2FS").
_FAT_SUPPRESSION = re.compile(
    r"(?<![A-Z])(FS|FAT[_ -]?SAT\w*|FAT[_ -]?SUP\w*|SPAIR|SPIR|CHESS|WATER)(?![A-Z])", re.I)
#: The water image of a Dixon acquisition: "t2_tse_dixon_sag_W", "sT2W mDIXON W", "Sag T2 IDEAL W".
_DIXON_WATER = re.compile(r"(DIXON|IDEAL|FLEX).*(?<![A-Z0-9])W(?![A-Z0-9])", re.I)


def fat_suppression(frame: FrameHeader) -> str | None:
    """Why the fat signal of an image is suppressed (description, image type, scan options), or None."""
    return fat_suppression_named(frame.series_description, frame.image_type, frame.scan_options)


def fat_suppression_named(description: str | None, image_type: tuple[str, ...] | list[str] = (),
                          scan_options: tuple[str, ...] | list[str] = ()) -> str | None:
    """Why a description, ImageType values or ScanOptions values say fat is suppressed, or None."""
    description = description or ""
    match = _FAT_SUPPRESSION.search(description)
    if match:
        return f"description '{description}' names fat suppression ('{match.group(0)}')"
    if _DIXON_WATER.search(description):
        return f"description '{description}' names a Dixon water image"
    image_type = tuple(str(t).upper() for t in image_type)
    if "WATER" in image_type or "W" in image_type[2:]:
        return f"image type {'/'.join(image_type)}: water image (Dixon)"
    options = tuple(str(o).upper() for o in scan_options)
    if any(_FAT_SUPPRESSION.fullmatch(option) for option in options):
        return f"scan options {'/'.join(options)}: fat saturation"
    return None


def weighting_from_description(description: str) -> str | None:
    """Weighting named by a series description, or None when it names none."""
    for weighting, pattern in _DESCRIPTION_RULES:
        if pattern.search(description or ""):
            return weighting
    return None


def weighting_from_parameters(frame: FrameHeader) -> tuple[str | None, str]:
    """Weighting implied by TR / TE / TI and the sequence type, with the values used."""
    tr, te, ti = frame.repetition_time, frame.echo_time, frame.inversion_time
    parts = []
    if tr is not None:
        parts.append(f"TR {tr:g} ms")
    if te is not None:
        parts.append(f"TE {te:g} ms")
    if ti is not None and ti > 0:
        parts.append(f"TI {ti:g} ms")
    values = ", ".join(parts) if parts else "no TR/TE"
    gradient_echo = "GR" in frame.scanning_sequence and "SE" not in frame.scanning_sequence
    if ti is not None and ti > 0:
        if 60 <= ti <= 300 and (tr is None or tr >= 1000):
            return "STIR", f"{values}: short-tau inversion recovery"
        if ti >= 1500:
            return "other", f"{values}: fluid-attenuated inversion recovery"
        if te is not None and te < 30:
            return "T1", f"{values}: inversion-prepared, short TE"
    if tr is None or te is None:
        return None, values
    if gradient_echo and tr < 100:
        return ("T1" if (frame.flip_angle or 0) >= 20 else "other"), f"{values}: gradient echo"
    if tr < 1000 and te < 30:
        return "T1", f"{values}: short TR, short TE"
    if tr >= 1500 and te >= 60:
        return "T2", f"{values}: long TR, long TE"
    if tr >= 1500 and te < 40:
        return "PD", f"{values}: long TR, short TE"
    return None, f"{values}: no clear weighting"


def classify_weighting(frame: FrameHeader) -> tuple[str, str]:
    """(weighting, reason) from the acquisition parameters and the series description.

    Parameters decide when the two disagree; the description decides when parameters are
    missing or ambiguous, and when it names a kind of series that TR/TE cannot tell apart
    (localizer, FLAIR, diffusion, T2*; a STIR without an inversion time in its header).  A
    T2-weighted image whose fat is suppressed (description, Dixon water image type, scan options)
    is "T2FS".
    """
    weighting, reason = _weighting(frame)
    if weighting == "T2":
        why = fat_suppression(frame)
        if why is not None:
            return "T2FS", f"{reason}; fat-suppressed: {why}"
    return weighting, reason


def fluid_contrast(weighting: str | None) -> str:
    """The kind of fluid-sensitive image a weighting gives: "STIR" or "T2FS" (fat suppressed), else "T2"."""
    name = (weighting or "").upper()
    return name if name in FAT_SUPPRESSED_FLUID else "T2"


def _weighting(frame: FrameHeader) -> tuple[str, str]:
    by_params, param_reason = weighting_from_parameters(frame)
    by_desc = weighting_from_description(frame.series_description)
    desc = f"description '{frame.series_description}'"
    if by_desc == "other" and by_params != "STIR":
        # localizer, FLAIR, DWI, T2*: TR/TE alone cannot tell these apart from anatomical series
        return "other", f"{desc} ({param_reason})"
    no_ti = frame.inversion_time is None or frame.inversion_time <= 0
    if by_desc == "STIR" and by_params in ("T2", "PD") and no_ti:
        # long TR with a T2 or PD echo time: TR/TE cannot tell a STIR from a T2 or PD without its TI
        return "STIR", f"{param_reason}; {desc} says STIR (no inversion time in the header to check)"
    if by_params and by_desc and by_params == by_desc:
        return by_params, f"{param_reason}; {desc}"
    if by_params and by_desc:
        return by_params, f"{param_reason}; {desc} says {by_desc} (parameters win)"
    if by_params:
        return by_params, param_reason
    if by_desc:
        return by_desc, f"{desc} ({param_reason})"
    return "other", param_reason
