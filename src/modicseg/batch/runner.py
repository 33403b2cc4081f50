"""``run_batch``: analyse every study, compare every subject's time points, build the cohort tables.

Study jobs are submitted in manifest order, a bounded number at a time (twice the workers), and a
subject's comparison as soon as both of its analyses are finished, so results flow from the start.
Jobs whose result exists with the same fingerprint are skipped.  A job that fails (unreadable
study, subject mismatch, crash) is recorded and the batch goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modicseg.batch.executors import make_executor
from modicseg.batch.fingerprint import (
    checkpoint_fingerprint,
    compare_fingerprint,
    inputs_fingerprint,
    study_fingerprint,
)
from modicseg.batch.jobs import (
    CompareJob,
    JobFn,
    JobOptions,
    JobOutcome,
    StudyJob,
    analyze_study,
    compare_subject,
    execute,
)
from modicseg.batch.manifest import Manifest, is_baseline_name
from modicseg.batch.store import ResultStore
from modicseg.batch.summary import BatchSummary, Problem

MAX_ATTEMPTS = 2  # a job whose worker process dies is tried this many times


@dataclass
class BatchPlan:
    """Every job of a batch, keyed by job id, and what cannot be compared."""

    studies: dict[str, StudyJob]
    compares: dict[str, CompareJob]
    problems: list[Problem] = field(default_factory=list)


def _config_dict(config: str | None) -> dict[str, Any]:
    from modicseg.analysis.config import load_config

    return load_config(config).to_dict()


def _model_fingerprint(model: str | None) -> str | None:
    """Content hash of the named checkpoint, else of the shipped one (None when there is none)."""
    if model is None:
        try:
            from modicseg.model.checkpoint import default_checkpoint
            from modicseg.shipped import shipped_model

            model = str(shipped_model() or default_checkpoint())
        except Exception:  # no model stage or no shipped model: the analysis will say so
            return None
    return checkpoint_fingerprint(model)


def plan_batch(manifest: Manifest, store: ResultStore, options: JobOptions, content_hash: bool = False) -> BatchPlan:
    """Jobs and their fingerprints (no job is run)."""
    config = _config_dict(options.config)
    needs_model = any(entry.labels is None for entry in manifest.entries)
    model = _model_fingerprint(options.model) if needs_model else None
    study_options = {"figures": options.figures, "seg": options.seg, "confidence": options.confidence}
    studies: dict[str, StudyJob] = {}
    for entry in manifest.entries:
        job_id = f"study/{entry.subject}/{entry.timepoint}"
        uses_model = model if entry.labels is None else None  # a given label map: the network never runs
        fingerprint = study_fingerprint(inputs_fingerprint(entry.input_paths(), content_hash), uses_model, config,
                                        {"labels_given": entry.labels is not None, **study_options})
        studies[job_id] = StudyJob(job_id, entry, store.study_dir(entry.subject, entry.timepoint), fingerprint,
                                   store.root, options)
    compare_options = {"refine": options.refine_registration, "figures": options.figures}
    compares: dict[str, CompareJob] = {}
    for baseline, followup in manifest.comparisons():
        b_id, f_id = (f"study/{e.subject}/{e.timepoint}" for e in (baseline, followup))
        job_id = f"compare/{baseline.subject}/{baseline.timepoint}_to_{followup.timepoint}"
        compares[job_id] = CompareJob(
            job_id, baseline.subject, baseline, followup, studies[b_id].output, studies[f_id].output,
            store.compare_dir(baseline.subject, baseline.timepoint, followup.timepoint),
            compare_fingerprint(studies[b_id].fingerprint, studies[f_id].fingerprint, compare_options),
            store.root, (b_id, f_id), options)
    problems = []
    for entry in manifest.single_timepoint():
        what = "missing follow-up" if is_baseline_name(entry.timepoint) else "single time point"
        problems.append(Problem(entry.subject, entry.timepoint, f"subject/{entry.subject}", what,
                                f"only time point '{entry.timepoint}' listed: analysed, not compared"))
    return BatchPlan(studies, compares, problems)


class _Progress:
    """tqdm progress bar with ETA over the jobs that actually run."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="job", desc="batch", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)
        self.skipped = self.failed = 0

    def skip(self) -> None:
        self.skipped += 1
        self.bar.total = max(0, (self.bar.total or 0) - 1)
        self._postfix()

    def advance(self, failed: bool = False) -> None:
        self.failed += int(failed)
        self._postfix()
        self.bar.update(1)

    def _postfix(self) -> None:
        self.bar.set_postfix(skipped=self.skipped, failed=self.failed, refresh=True)

    def close(self) -> None:
        self.bar.close()


def run_batch(manifest: Manifest, outdir: str | Path, options: JobOptions | None = None, workers: int = 2,
              scheduler: str | None = None, client: Any = None, study_fn: JobFn = analyze_study,
              compare_fn: JobFn = compare_subject, progress: bool = True, content_hash: bool = False,
              cohort: bool = True, log: Callable[[str], None] | None = None) -> BatchSummary:
    """Run (or resume) a batch into ``outdir``; returns its summary (also written there)."""
    options = options or JobOptions()
    if workers <= 0 and scheduler is None and client is None:
        options = dataclasses.replace(options, threads=None)  # jobs run in this process: keep its threads
    store = ResultStore(outdir)
    started = time.time()
    with store.lock():
        removed = store.cleanup()
        plan = plan_batch(manifest, store, options, content_hash)
        summary = BatchSummary(outdir=store.root, manifest=str(manifest.source) if manifest.source else None,
                               started=started, problems=list(plan.problems), stale_removed=removed,
                               notes=list(manifest.notes))
        with make_executor(workers, scheduler, client) as executor:
            summary.executor = type(executor).__name__
            _drive(plan, executor, store, study_fn, compare_fn, summary, progress)
        if cohort:
            try:
                from modicseg.batch.cohort import build_cohort

                summary.cohort = build_cohort(store, plan, figures=options.figures)
            except Exception as exc:  # the summary must still be written
                summary.problems.append(Problem("", "", "cohort", "cohort tables failed", repr(exc)))
        summary.finish()
        summary.write()
    if log is not None:
        log(summary.text())
    return summary


def _drive(plan: BatchPlan, executor: Any, store: ResultStore, study_fn: JobFn, compare_fn: JobFn,
           summary: BatchSummary, progress: bool) -> None:
    bar = _Progress(len(plan.studies) + len(plan.compares), progress)
    status: dict[str, str] = {}
    attempts: dict[str, int] = {}
    running: dict[cf.Future, tuple[Any, JobFn, int]] = {}

    def submit(job: Any, fn: JobFn) -> None:
        attempts[job.job_id] = attempts.get(job.job_id, 0) + 1
        running[executor.submit(execute, job, fn)] = (job, fn, executor.generation)

    def record(outcome: JobOutcome) -> None:
        status[outcome.job_id] = outcome.status
        summary.add(outcome)
        bar.advance(failed=outcome.status != "done")

    queue: deque[StudyJob] = deque()
    for job in plan.studies.values():
        if store.is_done(job.job_id, job.fingerprint, job.output):
            status[job.job_id] = "skipped"
            summary.skip(job)
            bar.skip()
        else:
            queue.append(job)
    waiting = dict(plan.compares)
    try:
        while True:
            for job_id, compare in list(waiting.items()):
                deps = [status.get(d) for d in compare.depends_on]
                if any(d is None for d in deps):
                    continue
                del waiting[job_id]
                if any(d == "failed" for d in deps):
                    failed = [d for d, s in zip(compare.depends_on, deps, strict=True) if s == "failed"]
                    summary.block(compare, f"not compared: analysis failed for {', '.join(failed)}")
                    status[job_id] = "blocked"
                    bar.advance(failed=True)
                elif store.is_done(compare.job_id, compare.fingerprint, compare.output):
                    status[job_id] = "skipped"
                    summary.skip(compare)
                    bar.skip()
                else:
                    submit(compare, compare_fn)
            # a bounded window of studies in flight: comparisons start as soon as both analyses exist
            window = max(2, 2 * executor.capacity)
            while queue and len(running) < window:
                submit(queue.popleft(), study_fn)
            if not running:
                break
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                job, fn, generation = running.pop(future)
                try:
                    record(future.result())
                except Exception as exc:  # worker died, task lost, pickling error...
                    if isinstance(exc, cf.process.BrokenProcessPool):
                        if generation == executor.generation:
                            executor.rebuild()
                        if attempts[job.job_id] < MAX_ATTEMPTS:
                            submit(job, fn)
                            continue
                    message = f"worker error: {type(exc).__name__}: {exc}".strip()
                    store.write_state(job.job_id, {"status": "failed", "fingerprint": job.fingerprint,
                                                   "error": message, "error_type": type(exc).__name__})
                    record(JobOutcome(job.job_id, job.kind, "failed", "?", 0.0, error=message))
    finally:
        bar.close()
