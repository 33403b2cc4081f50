"""Cohort tables and figures from a batch's finished results (no allocation, ever).

- ``lesions_long.csv``: every lesion of every analysed study (one row per lesion and time point);
- ``lesion_changes.csv``: every baseline/follow-up lesion pair of every comparison;
- ``subject_changes.csv``: per subject and follow-up, counts and type-1 volume change;
- ``transition_counts.csv`` / ``transition_proportions.csv``: baseline type x follow-up type
  ("none" = no lesion: new lesions in the "none" row, regressed ones in the "none" column);
  proportions are per baseline type (rows sum to 1);
- ``transition_bars.png``, ``volume_change.png``; ``cohort.json`` with the same numbers.

The folder is rebuilt whole and swapped in atomically.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from modicseg.batch.store import TMP_PREFIX, ResultStore, replace_folder
from modicseg.longitudinal.change import CHANGE_JSON
from modicseg.longitudinal.classify import COLUMNS, type1_volume
from modicseg.report.models import ChangeDocument, ReportDocument, ReportFileError
from modicseg.report.writers import write_csv

REPORT_JSON = "report.json"
D = TypeVar("D", ReportDocument, ChangeDocument)

TYPE_ORDER = ("1", "1/2", "2/1", "2", "2/3", "3/2", "3", "unclassified", "none")
LESION_COLUMNS = ("subject", "timepoint", "id", "level", "endplate", "type", "primary_type", "secondary_type",
                  "volume_mm3", "type1_volume_mm3", "fraction_of_vertebral_volume", "craniocaudal_extent_mm",
                  "height_fraction", "extent_grade", "confidence", "study_eligible", "study_status",
                  "study_verdict_confidence")
SUBJECT_COLUMNS = ("subject", "baseline_timepoint", "followup_timepoint", "baseline_lesions", "followup_lesions",
                   "same_type", "type_change", "regressed", "new", "baseline_type1_lesions", "type1_to_type2",
                   "type1_regressed", "type1_volume_baseline_mm3", "type1_volume_followup_mm3",
                   "type1_volume_change_mm3", "type1_volume_change_percent", "same_patient", "registration_body_dice")


def _type_index(name: str) -> tuple[int, str]:
    return (TYPE_ORDER.index(name), name) if name in TYPE_ORDER else (len(TYPE_ORDER) - 1, name)


def _read(model: type[D], path: Path) -> D | None:
    """A finished job's report.json or change.json, typed; None when missing or unreadable."""
    try:
        return model.load(path)
    except ReportFileError:
        return None


def collect(store: ResultStore, plan: Any) -> dict[str, list[dict[str, Any]]]:
    """Rows of the cohort tables from the finished jobs of ``plan``."""
    lesions, changes, subjects = [], [], []
    for job in plan.studies.values():
        report = _read(ReportDocument, job.output / REPORT_JSON) \
            if store.is_done(job.job_id, job.fingerprint, job.output) else None
        if report is None:
            continue
        eligible = report.eligibility.eligible
        for les in report.lesions:
            lesions.append({"subject": job.entry.subject, "timepoint": job.entry.timepoint,
                            **les.model_dump(mode="json", by_alias=True, exclude_unset=True),
                            "type1_volume_mm3": type1_volume(les), "study_eligible": eligible,
                            "study_status": report.eligibility.status,
                            "study_verdict_confidence": report.eligibility.verdict_confidence})
    for job in plan.compares.values():
        change = _read(ChangeDocument, job.output / CHANGE_JSON) \
            if store.is_done(job.job_id, job.fingerprint, job.output) else None
        if change is None:
            continue
        where = {"subject": job.subject, "baseline_timepoint": job.baseline.timepoint,
                 "followup_timepoint": job.followup.timepoint}
        changes += [{**where, **row.model_dump(mode="json", exclude_unset=True)} for row in change.lesions]
        subjects.append({**where, **change.summary.model_dump(mode="json", exclude_unset=True),
                         "same_patient": change.identity.same_patient,
                         "registration_body_dice": (change.registration.body_dice or {}).get("chosen")})
    return {"lesions": lesions, "changes": changes, "subjects": subjects}


def transition_matrix(changes: list[dict[str, Any]]) -> tuple[list[str], list[str], list[list[int]]]:
    """(row types, column types, counts) of baseline type x follow-up type (every type seen, both ways)."""
    counts = Counter((str(r.get("baseline_type")), str(r.get("followup_type"))) for r in changes)
    types = sorted({t for pair in counts for t in pair}, key=_type_index)  # square: same types both ways
    return types, types, [[counts.get((b, f), 0) for f in types] for b in types]


def _matrix_rows(rows: list[str], cols: list[str], matrix: Sequence[Sequence[float]], proportions: bool) -> list[dict]:
    out = []
    for name, values in zip(rows, matrix, strict=True):
        total = sum(values)
        cells = [v / total if (proportions and total) else v for v in values]
        out.append({"baseline_type": name, **dict(zip(cols, cells, strict=True)), "total": total})
    return out


def _figures(folder: Path, rows: list[str], cols: list[str], matrix: list[list[int]],
             subjects: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"1": "#e41a1c", "1/2": "#ff7f00", "2/1": "#fdae61", "2": "#ffd92f", "2/3": "#a6d854",
               "3/2": "#66c2a5", "3": "#4dd2ff", "unclassified": "#bbbbbb", "none": "#444444"}
    written = []
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(2, len(rows)) + 1.5))
    baseline_rows = [(name, values) for name, values in zip(rows, matrix, strict=True) if name != "none"]
    for y, (_, values) in enumerate(baseline_rows):
        total = sum(values) or 1
        left = 0.0
        for col, value in zip(cols, values, strict=True):
            if value:
                ax.barh(y, value / total, left=left, color=colours.get(col, "#999999"), edgecolor="white")
                if value / total > 0.07:
                    ax.text(left + value / total / 2, y, str(value), ha="center", va="center", fontsize=8)
                left += value / total
    ax.set_yticks(range(len(baseline_rows)))
    ax.set_yticklabels([f"type {n} (n={sum(v)})" for n, v in baseline_rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of baseline lesions, by follow-up type")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours.get(c, "#999999")) for c in cols]
    if cols:
        ax.legend(handles, [f"→ {c}" for c in cols], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18),
                  ncol=min(len(cols), 5))
    else:
        ax.text(0.5, 0.5, "no comparison finished", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Modic type transitions, baseline → follow-up")
    fig.tight_layout()
    fig.savefig(folder / "transition_bars.png", dpi=90)
    plt.close(fig)
    written.append("transition_bars.png")

    ordered = sorted(subjects, key=lambda s: s.get("type1_volume_change_mm3") or 0.0)
    fig, ax = plt.subplots(figsize=(max(5, 0.12 * len(ordered) + 3), 3.5))
    volumes = [s.get("type1_volume_change_mm3") or 0.0 for s in ordered]
    ax.bar(range(len(volumes)), volumes, color=["#2b83ba" if v < 0 else "#d7191c" for v in volumes])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("subjects (sorted)")
    ax.set_ylabel("type-1 volume change (mm³)")
    ax.set_title("Change in type-1 Modic volume per subject")
    if len(ordered) <= 30:
        ax.set_xticks(range(len(ordered)))
        ax.set_xticklabels([s["subject"] for s in ordered], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(folder / "volume_change.png", dpi=90)
    plt.close(fig)
    written.append("volume_change.png")
    return written


def write_cohort(folder: Path, data: dict[str, list[dict[str, Any]]], figures: bool = True) -> dict[str, Any]:
    """Write every table (and figure) into an existing empty folder; returns cohort.json's content."""
    write_csv(folder / "lesions_long.csv", LESION_COLUMNS, data["lesions"])
    change_columns = ("subject", "baseline_timepoint", "followup_timepoint", *COLUMNS)
    write_csv(folder / "lesion_changes.csv", change_columns, data["changes"])
    write_csv(folder / "subject_changes.csv", SUBJECT_COLUMNS, data["subjects"])
    rows, cols, matrix = transition_matrix(data["changes"])
    table_cols = ("baseline_type", *cols, "total")
    write_csv(folder / "transition_counts.csv", table_cols, _matrix_rows(rows, cols, matrix, False))
    write_csv(folder / "transition_proportions.csv", table_cols, _matrix_rows(rows, cols, matrix, True))
    files = ["lesions_long.csv", "lesion_changes.csv", "subject_changes.csv", "transition_counts.csv",
             "transition_proportions.csv"]
    if figures:
        files += _figures(folder, rows, cols, matrix, data["subjects"])
    volume_changes = [s["type1_volume_change_mm3"] for s in data["subjects"]
                      if s.get("type1_volume_change_mm3") is not None]
    content = {
        "studies_with_results": len({(r["subject"], r["timepoint"]) for r in data["lesions"]}),
        "lesions": len(data["lesions"]),
        "comparisons": len(data["subjects"]),
        "transitions": {"rows": rows, "columns": cols, "counts": matrix},
        "type1_volume_change_mm3": {"n": len(volume_changes),
                                    "median": sorted(volume_changes)[len(volume_changes) // 2] if volume_changes
                                    else None},
        "files": [*files, "cohort.json"],
    }
    (folder / "cohort.json").write_text(json.dumps(content, indent=2) + "\n")
    return content


def build_cohort(store: ResultStore, plan: Any, figures: bool = True) -> dict[str, Any]:
    """Collect, write into a temporary folder, swap it in as OUTDIR/cohort; returns a short summary."""
    data = collect(store, plan)
    final = store.cohort_dir
    tmp = final.parent / f"{TMP_PREFIX}cohort-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        content = write_cohort(tmp, data, figures)
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": store.rel(final), "lesions": content["lesions"], "comparisons": content["comparisons"]}
