"""Baseline vs follow-up: registration, lesion matching, change classification, change.json/csv, QC.

One module per job: ``timepoint`` (an analysed time point, from a Report or an analysis folder),
``identity`` (same patient? keyed hashes in memory), ``registration`` (rigid, vertebral bodies +
T2), ``matching`` (lesion pairs), ``classify`` (status, transition, volumes), ``change`` (the
result and its files), ``qc`` (figure) and ``pipeline`` (``compare``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChangeReport", "Side", "SubjectMismatchError", "compare", "compare_timepoints", "load_timepoint",
           "write_comparison"]


def __getattr__(name: str) -> Any:
    if name in ("Side", "SubjectMismatchError", "compare", "compare_timepoints", "write_comparison"):
        from modicseg.longitudinal import pipeline

        return getattr(pipeline, name)
    if name == "ChangeReport":
        from modicseg.longitudinal.change import ChangeReport

        return ChangeReport
    if name == "load_timepoint":
        from modicseg.longitudinal.timepoint import load_timepoint

        return load_timepoint
    raise AttributeError(f"module 'modicseg.longitudinal' has no attribute {name!r}")
