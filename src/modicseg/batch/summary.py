"""The end-of-batch summary: counts, failures with their errors, workers used, throughput."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modicseg.batch.store import write_json_atomic


@dataclass
class Problem:
    """Something a researcher must look at; never fatal to the batch."""

    subject: str
    timepoint: str
    job: str
    kind: str  # "study failed", "subject mismatch", "comparison failed", "missing follow-up", ...
    message: str


def _kind(job_kind: str, error: str) -> str:
    if "subject mismatch" in error:
        return "subject mismatch"
    return "study failed" if job_kind == "study" else "comparison failed"


def _where(job_id: str) -> tuple[str, str]:
    parts = job_id.split("/")
    return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")


@dataclass
class BatchSummary:
    """Counts per job kind and status, problems, workers; written as summary.json and summary.md."""

    outdir: Path
    manifest: str | None = None
    started: float = field(default_factory=time.time)
    elapsed_s: float = 0.0
    executor: str = ""
    counts: dict[str, Counter] = field(default_factory=lambda: {"study": Counter(), "compare": Counter()})
    problems: list[Problem] = field(default_factory=list)
    workers: Counter = field(default_factory=Counter)
    job_seconds: list[float] = field(default_factory=list)
    stale_removed: int = 0
    cohort: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, outcome: Any) -> None:
        self.counts[outcome.kind][outcome.status] += 1
        if outcome.worker and outcome.worker != "?":
            self.workers[outcome.worker] += 1
        if outcome.status == "done":
            self.job_seconds.append(outcome.elapsed_s)
        else:
            subject, timepoint = _where(outcome.job_id)
            self.problems.append(Problem(subject, timepoint, outcome.job_id, _kind(outcome.kind, outcome.error or ""),
                                         outcome.error or "unknown error"))

    def skip(self, job: Any) -> None:
        self.counts[job.kind]["skipped"] += 1

    def block(self, job: Any, message: str) -> None:
        self.counts[job.kind]["not run"] += 1
        subject, timepoint = _where(job.job_id)
        self.problems.append(Problem(subject, timepoint, job.job_id, "not compared", message))

    def finish(self) -> None:
        self.elapsed_s = time.time() - self.started

    @property
    def studies_run(self) -> int:
        return self.counts["study"]["done"] + self.counts["study"]["failed"]

    def to_dict(self) -> dict[str, Any]:
        hours = self.elapsed_s / 3600 if self.elapsed_s else 0
        return {
            "manifest": self.manifest,
            "executor": self.executor,
            "elapsed_s": round(self.elapsed_s, 2),
            "studies": dict(self.counts["study"]),
            "comparisons": dict(self.counts["compare"]),
            "studies_per_hour": round(self.studies_run / hours, 1) if hours and self.studies_run else None,
            "workers": dict(self.workers),
            "median_job_s": round(sorted(self.job_seconds)[len(self.job_seconds) // 2], 3) if self.job_seconds
            else None,
            "stale_temporary_removed": self.stale_removed,
            "problems": [asdict(p) for p in self.problems],
            "cohort": self.cohort,
            "notes": self.notes,
        }

    def text(self) -> str:
        """Markdown summary (also printed at the end of a batch)."""
        d = self.to_dict()
        fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"  # noqa: E731
        lines = ["# Batch summary", "",
                 f"- studies: {fmt(d['studies'])}",
                 f"- comparisons: {fmt(d['comparisons'])}",
                 f"- elapsed: {d['elapsed_s']:.1f} s" + (f" ({d['studies_per_hour']} studies/hour)"
                                                         if d["studies_per_hour"] else ""),
                 f"- executor: {d['executor']}; jobs per worker: "
                 + (", ".join(f"{w} {n}" for w, n in sorted(d["workers"].items())) or "none")]
        if self.stale_removed:
            lines.append(f"- removed {self.stale_removed} temporary folder(s) left by an interrupted run")
        if self.cohort:
            lines.append(f"- cohort tables: {self.cohort.get('folder')}")
        if self.problems:
            lines += ["", f"## Problems ({len(self.problems)})", "", "| subject | time point | problem | message |",
                      "|---|---|---|---|"]
            lines += [f"| {p.subject} | {p.timepoint} | {p.kind} | {p.message.replace('|', '/')} |"
                      for p in self.problems]
        else:
            lines += ["", "No problems."]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        write_json_atomic(self.outdir / "summary.json", self.to_dict())
        tmp = self.outdir / ".tmp-summary.md"
        tmp.write_text(self.text())
        tmp.replace(self.outdir / "summary.md")
