"""Arguments shared by every command that takes a STUDY."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command runs: ``modicseg --help`` stays light
    from modicseg.io.study import StudyRequest


def add_study_arguments(parser: argparse.ArgumentParser, study_required: bool = False) -> None:
    """STUDY (DICOM folder or BIDS-like NIfTI folder), --t1/--t2/--stir files, series overrides."""
    parser.add_argument("study", nargs=None if study_required else "?", type=Path, metavar="STUDY",
                        help="DICOM folder (any layout) or a folder with *_T1w/*_T2w (or *_STIR) NIfTI files")
    parser.add_argument("--t1", type=Path, metavar="FILE", help="T1-weighted NIfTI file")
    parser.add_argument("--t2", type=Path, metavar="FILE", help="T2-weighted NIfTI file")
    parser.add_argument("--stir", type=Path, metavar="FILE",
                        help="fat-suppressed fluid-sensitive NIfTI file (STIR, TIRM, fat-saturated T2, Dixon "
                             "water) used in place of a T2; Modic types from the STIR bands")
    parser.add_argument("--t1-series", metavar="N|UID", help="use this DICOM series as T1 (number or UID)")
    parser.add_argument("--t2-series", metavar="N|UID",
                        help="use this DICOM series as the fluid-sensitive image: a T2, or a STIR (number or UID)")
    parser.add_argument("--resample-irregular", action="store_true",
                        help="interpolate stacks with missing slices or uneven spacing onto a regular "
                             "grid (with a warning) instead of refusing them")
    parser.add_argument("--allow-missing-contrast", action="store_true",
                        help="go on when the study's T1 or T2 series exists but cannot be used (it is named, with "
                             "the reason, in the warnings and report.json); default: refuse the study")


def study_request(args: argparse.Namespace) -> StudyRequest:
    from modicseg.io.study import StudyRequest

    return StudyRequest(path=args.study, t1=args.t1, t2=args.t2, stir=getattr(args, "stir", None),
                        t1_series=args.t1_series,
                        t2_series=args.t2_series, resample_irregular=args.resample_irregular,
                        allow_missing_contrast=getattr(args, "allow_missing_contrast", False))
