"""Arguments shared by every command that takes a STUDY."""

from __future__ import annotations

import argparse
from pathlib import Path

from modicseg.io.study import StudyRequest


def add_study_arguments(parser: argparse.ArgumentParser, study_required: bool = False) -> None:
    """STUDY (DICOM folder or BIDS-like NIfTI folder), --t1/--t2 files, series overrides."""
    parser.add_argument("study", nargs=None if study_required else "?", type=Path, metavar="STUDY",
                        help="DICOM folder (any layout) or a folder with *_T1w/*_T2w NIfTI files")
    parser.add_argument("--t1", type=Path, metavar="FILE", help="T1-weighted NIfTI file")
    parser.add_argument("--t2", type=Path, metavar="FILE", help="T2-weighted NIfTI file")
    parser.add_argument("--t1-series", metavar="N|UID", help="use this DICOM series as T1 (number or UID)")
    parser.add_argument("--t2-series", metavar="N|UID", help="use this DICOM series as T2 (number or UID)")
    parser.add_argument("--resample-irregular", action="store_true",
                        help="interpolate stacks with missing slices or uneven spacing onto a regular "
                             "grid (with a warning) instead of refusing them")


def study_request(args: argparse.Namespace) -> StudyRequest:
    return StudyRequest(path=args.study, t1=args.t1, t2=args.t2, t1_series=args.t1_series,
                        t2_series=args.t2_series, resample_irregular=args.resample_irregular)
