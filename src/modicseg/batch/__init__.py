"""Cohort batches: manifest, parallel runner (local processes or Dask), atomic resumable results,
cohort tables and figures, and (last, unblinded) the imaging outcomes by arm.

Modules: ``manifest`` (which studies), ``fingerprint`` (is a result still valid), ``store`` (output
layout, atomic commits, state records, lock), ``jobs`` (what a worker does), ``executors`` (where
jobs run), ``runner`` (``run_batch``), ``summary``, ``cohort`` (tables, figures), ``outcomes``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JobOptions", "compute_outcomes", "read_manifest", "run_batch", "write_outcomes"]


def __getattr__(name: str) -> Any:
    if name == "run_batch":
        from modicseg.batch.runner import run_batch

        return run_batch
    if name == "JobOptions":
        from modicseg.batch.jobs import JobOptions

        return JobOptions
    if name == "read_manifest":
        from modicseg.batch.manifest import read_manifest

        return read_manifest
    if name in ("compute_outcomes", "write_outcomes"):
        from modicseg.batch import outcomes

        return getattr(outcomes, name)
    raise AttributeError(f"module 'modicseg.batch' has no attribute {name!r}")
