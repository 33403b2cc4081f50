"""Batch jobs: what one worker does for one study or one comparison.

``execute`` wraps a job function ``fn(job, tmp_dir) -> dict`` (the real ones are
:func:`analyze_study` and :func:`compare_subject`; tests pass stand-ins): it runs it in a temporary
folder, commits the folder atomically, then writes the state record; on an exception it deletes
the temporary folder and writes a failure record with the error.  It never raises for a job
error, so one failing study never stops the batch.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.batch.manifest import StudyEntry
from modicseg.batch.store import ResultStore
from modicseg.core.version import __version__
from modicseg.io.errors import ModicsegError

JobFn = Callable[[Any, Path], dict[str, Any]]


@dataclass(frozen=True)
class JobOptions:
    """Analysis settings shared by every job of a batch."""

    config: str | None = None  # analysis configuration YAML
    model: str | None = None  # model checkpoint folder (None: the shipped model)
    refine_registration: bool = True
    figures: bool = True  # qc.png per study and comparison, cohort PNGs
    seg: bool = True  # DICOM SEG per study (DICOM input)
    threads: int | None = 1  # threads per job inside a worker (None: library defaults)
    confidence: bool = True  # lesion confidence + uncertainty map (a second, mirrored network pass)


@dataclass(frozen=True)
class StudyJob:
    """Analyse one study."""

    job_id: str
    entry: StudyEntry
    output: Path
    fingerprint: str
    root: Path
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def kind(self) -> str:
        return "study"


@dataclass(frozen=True)
class CompareJob:
    """Compare the baseline and one follow-up of a subject (both analysed already)."""

    job_id: str
    subject: str
    baseline: StudyEntry
    followup: StudyEntry
    baseline_output: Path
    followup_output: Path
    output: Path
    fingerprint: str
    root: Path
    depends_on: tuple[str, str] = ("", "")
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def kind(self) -> str:
        return "compare"


@dataclass
class JobOutcome:
    """What the batch runner learns about a job."""

    job_id: str
    kind: str
    status: str  # "done", "failed"
    worker: str
    elapsed_s: float
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def worker_name() -> str:
    """The Dask worker's address inside a Dask task, else host:pid."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def limit_threads(threads: int | None) -> None:
    """Keep one job from using every core (several jobs share the machine)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:  # pragma: no cover
        pass
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def error_text(exc: BaseException) -> str:
    """A one-line message: the user-facing text for ModicsegError, else type and message."""
    if isinstance(exc, ModicsegError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def execute(job: StudyJob | CompareJob, fn: JobFn) -> JobOutcome:
    """Run ``fn`` for ``job`` with atomic output and a state record (see the module docstring)."""
    started = time.perf_counter()
    limit_threads(job.options.threads)
    store = ResultStore(job.root)
    worker = worker_name()
    tmp = store.new_tmp(job.output)
    try:
        info = fn(job, tmp) or {}
        record = {"job_id": job.job_id, "kind": job.kind, "fingerprint": job.fingerprint, "version": __version__,
                  "worker": worker, "elapsed_s": round(time.perf_counter() - started, 3), "info": info}
        store.commit(tmp, job.output, record)
        store.write_state(job.job_id, {"status": "done", "fingerprint": job.fingerprint,
                                       "output": store.rel(job.output), "worker": worker,
                                       "elapsed_s": record["elapsed_s"]})
        return JobOutcome(job.job_id, job.kind, "done", worker, time.perf_counter() - started, info=info)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        message = error_text(exc)
        store.write_state(job.job_id, {"status": "failed", "fingerprint": job.fingerprint, "error": message,
                                       "error_type": type(exc).__name__, "worker": worker,
                                       "traceback": traceback.format_exc(limit=-8).splitlines()[-12:]})
        return JobOutcome(job.job_id, job.kind, "failed", worker, time.perf_counter() - started, error=message)


# --- the real job functions ---------------------------------------------------------------------

def analyze_study(job: StudyJob, out: Path) -> dict[str, Any]:
    """``analyze`` one study and write its report into ``out``."""
    from modicseg.io.study import StudyRequest
    from modicseg.pipeline import analyze
    from modicseg.report.writers import write_report

    entry = job.entry
    request = StudyRequest(path=entry.path, t1=entry.t1, t2=entry.t2)
    report = analyze(request, labels=entry.labels, config=job.options.config, model=job.options.model,
                     confidence=job.options.confidence)
    write_report(report, out, qc=job.options.figures, dicom_seg=job.options.seg)
    save_maps(report, out)
    segmentation = report.provenance.get("segmentation", {})
    return {"lesions": len(report.lesions), "vertebrae": len(report.vertebrae),
            "eligible": report.eligibility.eligible, "warnings": len(report.warnings),
            "segmentation": segmentation.get("source"), "runtime": segmentation.get("runtime"),
            "timings_s": {k: round(float(v), 3) for k, v in report.timings_s.items()},
            "network_s": (segmentation.get("timings_s") or {}).get("network_s"), **worker_memory_mb()}


def worker_memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (Linux ``/proc/self/status``), MB: a batch
    worker's growth from job to job shows in the job records."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                name = "worker_rss_mb" if key == "VmRSS" else "worker_peak_rss_mb"
                out[name] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def save_maps(report: Any, out: Path) -> None:
    """The lesion-id and vertebra-instance maps, so that a comparison need not recompute them."""
    from modicseg.core.convert import save_nifti
    from modicseg.core.image import LabelImage
    from modicseg.longitudinal.timepoint import INSTANCES_FILE, LESION_MAP_FILE

    affine = report.labels.affine
    save_nifti(LabelImage(np.asarray(report.lesion_map, dtype=np.int16), affine), str(out / LESION_MAP_FILE))
    save_nifti(LabelImage(np.asarray(report.instances, dtype=np.int16), affine), str(out / INSTANCES_FILE))


def _reference(entry: StudyEntry, grid: Any) -> Any:
    from modicseg.core.resample import resample_to
    from modicseg.io.study import StudyRequest, open_study

    try:
        study = open_study(StudyRequest(path=entry.path, t1=entry.t1, t2=entry.t2), require=())
    except (ModicsegError, OSError, ValueError):
        return None
    image = study.t2 if study.t2 is not None else study.t1
    if image is None:
        return None
    return image if image.same_grid(grid) else resample_to(image, grid)


def compare_subject(job: CompareJob, out: Path) -> dict[str, Any]:
    """Compare two finished analyses of one subject and write change.json/csv (+ qc.png)."""
    from modicseg.longitudinal.pipeline import Side, check_identity, compare_timepoints
    from modicseg.longitudinal.timepoint import load_timepoint
    from modicseg.longitudinal.writers import write_change

    sides = (Side(None, study=job.baseline.path), Side(None, study=job.followup.path))
    same = check_identity(*sides)
    baseline = load_timepoint(job.baseline_output, study_path=job.baseline.path)
    followup = load_timepoint(job.followup_output, study_path=job.followup.path)
    for tp, entry in ((baseline, job.baseline), (followup, job.followup)):
        if tp.t2 is None:
            tp.t2 = _reference(entry, tp.labels)
    change = compare_timepoints(baseline, followup, same, job.subject, refine=job.options.refine_registration)
    write_change(change, out, figure=job.options.figures)
    return {"baseline_timepoint": job.baseline.timepoint, "followup_timepoint": job.followup.timepoint,
            **{k: change.summary[k] for k in ("baseline_lesions", "followup_lesions", "type_change", "regressed",
                                              "new", "type1_to_type2")},
            "body_dice": change.registration.body_dice.get("chosen")}
