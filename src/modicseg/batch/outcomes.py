"""Unblinding, last: the trial's imaging outcomes by arm, from a finished batch's cohort tables.

Outcomes (probiotics trial NCT03100266: "change of type 1 Modic during the first year", "change in
volume of type 1 Modic during the first year"):

- lesion level: share of baseline type-1 lesions (primary or secondary type 1) whose follow-up is
  primarily type 2 (see ``modicseg.longitudinal.classify.turned_type2``); Fisher's exact test when
  a 2x2 table has an expected count below 5, else chi-square (k arms: chi-square).  Lesions of one
  patient are not independent: the patient-level outcome is the primary one;
- patient level: share of patients with >= 1 baseline type-1 lesion of whom >= 1 turned type 2;
- type-1 volume change (mm³, follow-up - baseline) per patient with type 1 at baseline:
  Wilcoxon rank-sum (Mann-Whitney U) and Welch's t-test (k arms: Kruskal-Wallis and ANOVA).

Each subject's first follow-up is used.  Allocation is read from ``--arms`` here and nowhere else.
"""

from __future__ import annotations

import csv
import html
import json
import math
import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from modicseg.batch.manifest import timepoint_key
from modicseg.batch.store import TMP_PREFIX, replace_folder
from modicseg.io.errors import InputError
from modicseg.longitudinal.classify import NEW, is_type1, turned_type2

ARM_HEADERS = ("arm", "group", "treatment", "allocation")


def read_arms(path: str | Path) -> dict[str, str]:
    """subject -> arm from a CSV with columns subject and arm (or group / treatment / allocation)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"{path}: cannot read arms file ({exc.strerror})") from None
    if not rows:
        raise InputError(f"{path}: empty arms file (columns: subject,arm)")
    header = {k.strip().lower(): k for k in rows[0] if k}
    arm_key = next((header[h] for h in ARM_HEADERS if h in header), None)
    if "subject" not in header or arm_key is None:
        raise InputError(f"{path}: needs columns subject and arm")
    arms: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        subject, arm = (row.get(header["subject"]) or "").strip(), (row.get(arm_key) or "").strip()
        if not subject:
            continue
        if not arm:
            raise InputError(f"{path}:{number}: subject {subject} has no arm")
        if subject in arms and arms[subject] != arm:
            raise InputError(f"{path}:{number}: subject {subject} listed in two arms")
        arms[subject] = arm
    return arms


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path}: not found; run `modicseg batch` into this folder first")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass
class ArmData:
    """Per arm: the numbers the tests use."""

    subjects_allocated: int = 0
    subjects_compared: int = 0
    type1_lesions: int = 0
    type1_lesions_to_type2: int = 0
    type1_patients: int = 0
    type1_patients_with_conversion: int = 0
    volume_change: list[float] = field(default_factory=list)
    volume_change_percent: list[float] = field(default_factory=list)


def _first_followups(subjects: list[dict[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for row in subjects:
        s, fu = row["subject"], row["followup_timepoint"]
        if s not in first or timepoint_key(fu) < timepoint_key(first[s]):
            first[s] = fu
    return first


def gather(outdir: Path, arms: dict[str, str]) -> tuple[dict[str, ArmData], dict[str, Any]]:
    """Per-arm data from OUTDIR/cohort and the bookkeeping of who was (not) included."""
    cohort = Path(outdir) / "cohort"
    subjects = _read_csv(cohort / "subject_changes.csv")
    changes = _read_csv(cohort / "lesion_changes.csv")
    followup = _first_followups(subjects)
    data: dict[str, ArmData] = defaultdict(ArmData)
    for arm in sorted(set(arms.values())):
        data[arm] = ArmData()
    for arm in arms.values():
        data[arm].subjects_allocated += 1
    rows_by_subject: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in changes:
        if followup.get(row["subject"]) == row["followup_timepoint"]:
            rows_by_subject[row["subject"]].append(row)
    for row in subjects:
        s = row["subject"]
        if s not in arms or followup.get(s) != row["followup_timepoint"]:
            continue
        arm_data = data[arms[s]]
        arm_data.subjects_compared += 1
        type1 = [r for r in rows_by_subject[s] if r["status"] != NEW and is_type1(r["baseline_type"])]
        turned = sum(turned_type2(r) for r in type1)
        arm_data.type1_lesions += len(type1)
        arm_data.type1_lesions_to_type2 += turned
        if type1:
            arm_data.type1_patients += 1
            arm_data.type1_patients_with_conversion += int(turned > 0)
            change = _float(row.get("type1_volume_change_mm3"))
            if change is not None:
                arm_data.volume_change.append(change)
            percent = _float(row.get("type1_volume_change_percent"))
            if percent is not None:
                arm_data.volume_change_percent.append(percent)
    compared = {row["subject"] for row in subjects}
    bookkeeping = {
        "allocated_without_comparison": sorted(s for s in arms if s not in compared),
        "compared_without_allocation": len(compared - set(arms)),
        "subjects_with_several_followups": sorted(s for s in compared
                                                  if sum(r["subject"] == s for r in subjects) > 1),
    }
    return dict(data), bookkeeping


def proportion_test(successes: list[int], totals: list[int]) -> dict[str, Any]:
    """Fisher's exact (2 arms with an expected count < 5) or chi-square on the k x 2 table."""
    table = np.array([[s, t - s] for s, t in zip(successes, totals, strict=True)], dtype=float)
    if len(table) < 2 or table.sum() == 0 or (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return {"test": None, "p_value": None, "note": "not testable (an arm or an outcome has no count)"}
    expected = stats.contingency.expected_freq(table)
    if len(table) == 2 and (expected < 5).any():
        odds, p = stats.fisher_exact(table.astype(int))
        return {"test": "Fisher's exact test (two-sided)", "p_value": float(p), "odds_ratio": _num(odds)}
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=True)
    return {"test": "chi-square test" + (" with Yates' correction" if dof == 1 else ""), "p_value": float(p),
            "statistic": float(chi2), "dof": int(dof)}


def distribution_tests(groups: list[list[float]]) -> dict[str, Any]:
    """Rank-sum and t-test (2 groups) or Kruskal-Wallis and ANOVA (k groups)."""
    groups = [g for g in groups if g]
    if len(groups) < 2 or any(len(g) < 2 for g in groups):
        return {"note": "not testable (fewer than 2 values in an arm)"}
    if len(groups) == 2:
        u = stats.mannwhitneyu(groups[0], groups[1], alternative="two-sided")
        t = stats.ttest_ind(groups[0], groups[1], equal_var=False)
        return {"wilcoxon_rank_sum": {"U": float(u.statistic), "p_value": float(u.pvalue)},
                "welch_t_test": {"t": _num(t.statistic), "p_value": _num(t.pvalue)}}
    h = stats.kruskal(*groups)
    f = stats.f_oneway(*groups)
    return {"kruskal_wallis": {"H": float(h.statistic), "p_value": float(h.pvalue)},
            "anova": {"F": _num(f.statistic), "p_value": _num(f.pvalue)}}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _describe(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, float)
    return {"n": len(a), "mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else None,
            "median": float(np.median(a)), "q1": float(np.percentile(a, 25)), "q3": float(np.percentile(a, 75))}


def compute_outcomes(outdir: str | Path, arms_file: str | Path) -> dict[str, Any]:
    """The outcomes by arm, with tests (content of outcomes.json)."""
    arms = read_arms(arms_file)
    data, bookkeeping = gather(Path(outdir), arms)
    names = sorted(data)
    per_arm = {}
    for name in names:
        d = data[name]
        per_arm[name] = {
            "subjects_allocated": d.subjects_allocated, "subjects_compared": d.subjects_compared,
            "type1_lesions": d.type1_lesions, "type1_lesions_to_type2": d.type1_lesions_to_type2,
            "type1_lesions_to_type2_proportion": d.type1_lesions_to_type2 / d.type1_lesions if d.type1_lesions
            else None,
            "type1_patients": d.type1_patients, "type1_patients_with_conversion": d.type1_patients_with_conversion,
            "type1_patients_with_conversion_proportion": d.type1_patients_with_conversion / d.type1_patients
            if d.type1_patients else None,
            "type1_volume_change_mm3": _describe(d.volume_change),
            "type1_volume_change_percent": _describe(d.volume_change_percent),
        }
    return {
        "arms": names,
        "by_arm": per_arm,
        "tests": {
            "type1_lesions_to_type2": proportion_test([data[n].type1_lesions_to_type2 for n in names],
                                                      [data[n].type1_lesions for n in names]),
            "type1_patients_with_conversion": proportion_test([data[n].type1_patients_with_conversion for n in names],
                                                              [data[n].type1_patients for n in names]),
            "type1_volume_change_mm3": distribution_tests([data[n].volume_change for n in names]),
        },
        "bookkeeping": bookkeeping,
        "definitions": {"population": "subjects with a comparison and >= 1 baseline type-1 lesion (first follow-up)",
                        "conversion": "baseline type-1 lesion primarily type 2 at follow-up",
                        "volume": "sum of type-1 voxel volume at follow-up minus baseline (mm³), new lesions included"},
    }


def _p(value: Any) -> str:
    return "–" if value is None else (f"{value:.3g}" if value >= 0.001 else "< 0.001")


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f} %)" if d else f"{n}/0"


def markdown(result: dict[str, Any]) -> str:
    """The outcomes as a Markdown summary."""
    names = result["arms"]
    a = result["by_arm"]
    t = result["tests"]
    head = "| | " + " | ".join(names) + " | test | p |"
    rule = "|---" * (len(names) + 3) + "|"
    vol = t["type1_volume_change_mm3"]
    vol_tests = [(k.replace("_", " "), v.get("p_value")) for k, v in vol.items() if isinstance(v, dict)]

    def cell(desc: dict[str, Any]) -> str:
        if not desc.get("n"):
            return "n = 0"
        return f"median {desc['median']:.0f} (IQR {desc['q1']:.0f} to {desc['q3']:.0f}), mean {desc['mean']:.0f}, " \
               f"n = {desc['n']}"

    lines = ["# Imaging outcomes by arm", "",
             "Unblinded summary. " + result["definitions"]["population"] + ".", "", head, rule,
             "| subjects allocated / compared | " + " | ".join(
                 f"{a[n]['subjects_allocated']} / {a[n]['subjects_compared']}" for n in names) + " | | |",
             "| patients with type 1 turning type 2 | " + " | ".join(
                 _pct(a[n]["type1_patients_with_conversion"], a[n]["type1_patients"]) for n in names)
             + f" | {t['type1_patients_with_conversion'].get('test') or '–'} | "
               f"{_p(t['type1_patients_with_conversion'].get('p_value'))} |",
             "| type-1 lesions turning type 2 | " + " | ".join(
                 _pct(a[n]["type1_lesions_to_type2"], a[n]["type1_lesions"]) for n in names)
             + f" | {t['type1_lesions_to_type2'].get('test') or '–'} | "
               f"{_p(t['type1_lesions_to_type2'].get('p_value'))} |"]
    for i, (name, p) in enumerate(vol_tests or [("–", None)]):
        first = "| type-1 volume change (mm³) | " + " | ".join(cell(a[n]["type1_volume_change_mm3"]) for n in names)
        lines.append((first if i == 0 else "| | " + " | ".join("" for _ in names)) + f" | {name} | {_p(p)} |")
    b = result["bookkeeping"]
    lines += ["", "Lesions of one patient are not independent: the lesion-level test is descriptive.",
              f"Allocated subjects without a comparison: {len(b['allocated_without_comparison'])}"
              + (f" ({', '.join(b['allocated_without_comparison'])})" if b["allocated_without_comparison"] else ""),
              f"Compared subjects without an allocation (excluded): {b['compared_without_allocation']}"]
    return "\n".join(lines) + "\n"


def html_page(md: str) -> str:
    """A minimal standalone HTML page of the Markdown tables."""
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;" \
            "padding:4px 8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Imaging outcomes</title><style>{style}" \
           f"</style></head><body>{''.join(body)}</body></html>\n"


def write_outcomes(outdir: str | Path, arms_file: str | Path, folder: str | Path | None = None) -> Path:
    """Compute and write outcomes.json/.md/.html and outcomes_by_arm.csv (default OUTDIR/outcomes)."""
    result = compute_outcomes(outdir, arms_file)
    final = Path(folder) if folder is not None else Path(outdir) / "outcomes"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / "outcomes.json").write_text(json.dumps(result, indent=2) + "\n")
        md = markdown(result)
        (tmp / "outcomes.md").write_text(md)
        (tmp / "outcomes.html").write_text(html_page(md))
        with open(tmp / "outcomes_by_arm.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            keys = ["subjects_allocated", "subjects_compared", "type1_lesions", "type1_lesions_to_type2",
                    "type1_patients", "type1_patients_with_conversion"]
            writer.writerow(["arm", *keys, "type1_volume_change_median_mm3", "type1_volume_change_mean_mm3"])
            for name in result["arms"]:
                row = result["by_arm"][name]
                vol = row["type1_volume_change_mm3"]
                writer.writerow([name, *(row[k] for k in keys), vol.get("median", ""), vol.get("mean", "")])
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
