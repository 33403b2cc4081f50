"""``review export``: reads joined back to subjects and time points, tables, agreement.

Writes into DIR (all or nothing):

* ``reads.csv``    one row per (case, reader): subject, time point, arm, status, eligibility, time.
* ``lesions.csv``  one row per lesion per rater (each reader, and ``model``) with its status.
* ``levels.csv``   one row per (case, level, endplate, rater): type of the largest lesion there
  ("none" when there is none), number of lesions, summed volume, largest height fraction.
* ``agreement.csv`` / ``agreement.json``  reader vs reader and model vs reader:
  Cohen's kappa per pair and Fleiss' kappa over all readers for the Modic type per level and
  endplate (categories: the types and "none") and for trial eligibility per case; ICC(2,1)
  (absolute agreement, single rater) for lesion volume and height fraction per level and
  endplate, over the units where at least one compared rater found a lesion (0 for the others).

Only reads marked done count unless ``include_unfinished``; a comparison uses the cases that
every compared rater has read. Reads may come from several databases (readers who each read a
copy of the package): they are merged, and a case read by the same reader in more than one keeps
its latest save (the summary lists such cases).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modicseg.core.labels import ENDPLATES, UNCLASSIFIED
from modicseg.io.atomic import atomic_output_dir
from modicseg.io.errors import InputError
from modicseg.report.writers import write_csv
from modicseg.review import agreement as agr
from modicseg.review.db import ReadRecord, ReadStore
from modicseg.review.key import KeyEntry, read_key
from modicseg.review.package import Package, reader_key

MODEL = "model"
NONE = "none"
ELIGIBILITY = {True: "yes", False: "no", None: "undecided"}

READ_COLUMNS = ["code", "subject", "timepoint", "arm", "reader", "status", "eligible", "lesions", "seconds_spent",
                "revision", "comment", "mask_file", "updated_at"]
LESION_COLUMNS = ["code", "subject", "timepoint", "arm", "rater", "level", "endplate", "status", "type",
                  "primary_type", "secondary_type", "model_type", "volume_mm3", "fraction_of_vertebral_volume",
                  "craniocaudal_extent_mm", "height_fraction", "extent_grade"]
LEVEL_COLUMNS = ["code", "subject", "timepoint", "arm", "rater", "level", "endplate", "type", "lesions",
                 "volume_mm3", "height_fraction"]
AGREEMENT_COLUMNS = ["measure", "comparison", "raters", "statistic", "value", "units", "percent_agreement"]


@dataclass
class Rating:
    """One rater's read of one case, reduced to what agreement needs."""

    code: str
    rater: str
    lesions: list[dict[str, Any]]  # kept lesions (rejected ones left out)
    eligible: bool | None

    def level_summary(self, level: str, endplate: str) -> dict[str, Any]:
        here = [les for les in self.lesions if les.get("level") == level and les.get("endplate") == endplate]
        if not here:
            return {"type": NONE, "lesions": 0, "volume_mm3": 0.0, "height_fraction": 0.0}
        largest = max(here, key=lambda les: les.get("volume_mm3") or 0.0)
        return {"type": largest.get("type") or UNCLASSIFIED, "lesions": len(here),
                "volume_mm3": float(sum(les.get("volume_mm3") or 0.0 for les in here)),
                "height_fraction": float(max(les.get("height_fraction") or 0.0 for les in here))}


def _ratings(package: Package, records: list[ReadRecord]) -> dict[str, dict[str, Rating]]:
    """rater -> code -> Rating, for the readers and the model."""
    out: dict[str, dict[str, Rating]] = {}
    for rec in records:
        kept = [les for les in rec.lesions if les.get("status") != "rejected"]
        out.setdefault(rec.reader, {})[rec.case_code] = Rating(rec.case_code, rec.reader, kept, rec.eligible)
    model: dict[str, Rating] = {}
    for code in package.codes:
        case = package.case(code)
        model[code] = Rating(code, MODEL, case.model_lesions, case.model_eligibility.get("eligible"))
    out[MODEL] = model
    return out


def _units(package: Package, codes: list[str]) -> list[tuple[str, str, str]]:
    return [(code, level, endplate) for code in codes for level in package.case(code).levels for endplate in ENDPLATES]


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def agreement_rows(package: Package, ratings: dict[str, dict[str, Rating]]) -> list[dict[str, Any]]:
    """Kappa and ICC rows: each reader pair, all readers together, model vs each reader."""
    readers = sorted(r for r in ratings if r != MODEL)
    rows: list[dict[str, Any]] = []
    levels_cache: dict[str, list[str]] = {c: package.case(c).levels for c in package.codes}

    def common(raters: list[str]) -> list[str]:
        return sorted(set.intersection(*(set(ratings[r]) for r in raters)))

    def add(measure: str, comparison: str, raters: list[str], statistic: str, value: float, units: int,
            agreement: float | None = None) -> None:
        rows.append({"measure": measure, "comparison": comparison, "raters": " | ".join(raters),
                     "statistic": statistic, "value": _number(value), "units": units,
                     "percent_agreement": None if agreement is None else _number(agreement)})

    def level_values(raters: list[str], codes: list[str], field: str) -> list[list[Any]]:
        table = []
        for code in codes:
            for level in levels_cache[code]:
                for endplate in ENDPLATES:
                    table.append([ratings[r][code].level_summary(level, endplate)[field] for r in raters])
        return table

    def numeric(raters: list[str], codes: list[str], field: str) -> list[list[float]]:
        types = level_values(raters, codes, "type")
        values = level_values(raters, codes, field)
        return [v for t, v in zip(types, values, strict=True) if any(x != NONE for x in t)]

    comparisons = [("reader vs reader", [a, b], "Cohen's kappa") for a, b in itertools.combinations(readers, 2)]
    if len(readers) > 2:
        comparisons.append(("all readers", readers, "Fleiss' kappa"))
    comparisons += [("model vs reader", [MODEL, reader], "Cohen's kappa") for reader in readers]

    for comparison, raters, statistic in comparisons:
        codes = common(raters)
        if not codes:
            continue
        types = level_values(raters, codes, "type")
        eligible = [[ELIGIBILITY[ratings[r][c].eligible] for r in raters] for c in codes]
        for measure, table in (("type per level and endplate", types), ("eligibility per case", eligible)):
            if len(raters) == 2:
                a_values, b_values = [t[0] for t in table], [t[1] for t in table]
                add(measure, comparison, raters, statistic, agr.cohen_kappa(a_values, b_values), len(table),
                    agr.percent_agreement(a_values, b_values))
            else:
                add(measure, comparison, raters, statistic, agr.fleiss_kappa(agr.fleiss_counts(table)), len(table),
                    sum(len(set(t)) == 1 for t in table) / len(table))
        for field, measure in (("volume_mm3", "volume per level and endplate (mm³)"),
                               ("height_fraction", "height fraction per level and endplate")):
            table = numeric(raters, codes, field)
            add(measure, comparison, raters, "ICC(2,1)", agr.icc(table, "2,1") if table else float("nan"),
                len(table))
    return rows


def read_sources(package: Package, db_urls: str | Sequence[str] | None,
                 masks_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(database URL, masks folder) of each reads database: the package's own by default; the
    masks of an SQLite file are the ``masks`` folder beside it when there is one (a package copy's
    ``reads/``), else ``masks_dir`` or the package's."""
    urls = [db_urls] if isinstance(db_urls, str) else list(db_urls or [package.default_db_url])
    sources = []
    for url in urls:
        masks = Path(masks_dir) if masks_dir is not None else package.default_masks_dir
        if masks_dir is None and url.startswith("sqlite:///"):
            beside = Path(url.removeprefix("sqlite:///")).parent / "masks"
            masks = beside if beside.is_dir() else masks
        sources.append((url, masks))
    return sources


def collect_reads(package: Package, sources: Sequence[tuple[str, Path]],
                  status: str | None) -> tuple[list[ReadRecord], list[str]]:
    """The reads of the package in all databases, one per (case, reader): where the same reader read
    a case in several databases the latest save is kept; the notes name those cases."""
    latest: dict[tuple[str, str], ReadRecord] = {}  # (case, reader key) -> its latest read
    newest: dict[str, ReadRecord] = {}  # reader key -> the reader's latest read of any case
    seen: dict[tuple[str, str], int] = {}
    for url, masks in sources:
        with ReadStore(url, masks) as store:
            for record in store.reads(package.package_id, status):
                key = reader_key(record.reader)
                unit = (record.case_code, key)
                seen[unit] = seen.get(unit, 0) + 1
                if unit not in latest or record.updated_at > latest[unit].updated_at:
                    latest[unit] = record
                if key not in newest or record.updated_at > newest[key].updated_at:
                    newest[key] = record
    # one spelling per reader ("Dr A" in one database, "dr a" in another): that of the latest save
    for (_, key), record in latest.items():
        record.reader = newest[key].reader
    notes = [f"case {code}, reader {newest[key].reader}: read in {n} databases, the latest save is used"
             for (code, key), n in sorted(seen.items()) if n > 1]
    return sorted(latest.values(), key=lambda r: (r.case_code, r.reader)), notes


def export(package_path: str | Path, key_path: str | Path, out: str | Path,
           db_url: str | Sequence[str] | None = None, masks_dir: str | Path | None = None,
           include_unfinished: bool = False) -> dict[str, Any]:
    """Write the export tables into ``out``; returns the agreement summary. ``db_url``: one reads
    database URL or several (merged, see ``collect_reads``); default the package's SQLite file."""
    package = Package.open(package_path)
    key = read_key(Path(key_path), package.package_id)
    missing = sorted(set(package.codes) - set(key))
    if missing:
        raise InputError(f"{key_path}: the key lacks case(s) {', '.join(missing[:5])}")
    sources = read_sources(package, db_url, masks_dir)
    records, merge_notes = collect_reads(package, sources, None if include_unfinished else "done")
    ratings = _ratings(package, records)

    def who(code: str) -> dict[str, str]:
        entry: KeyEntry = key[code]
        return {"code": code, "subject": entry.subject, "timepoint": entry.timepoint, "arm": entry.arm}

    read_rows = [{**who(r.case_code), "reader": r.reader, "status": r.status, "eligible": ELIGIBILITY[r.eligible],
                  "lesions": sum(1 for les in r.lesions if les.get("status") != "rejected"),
                  "seconds_spent": round(r.seconds_spent, 1), "revision": r.revision, "comment": r.comment,
                  "mask_file": "" if r.mask_file is None else str(r.mask_file),
                  "updated_at": r.updated_at.isoformat()} for r in records]
    lesion_rows = []
    for r in records:
        lesion_rows += [{**who(r.case_code), "rater": r.reader, **les} for les in r.lesions]
    for code, rating in sorted(ratings[MODEL].items()):
        lesion_rows += [{**who(code), "rater": MODEL, "status": MODEL, **les} for les in rating.lesions]
    level_rows = []
    for rater in sorted(ratings):
        for code, rating in sorted(ratings[rater].items()):
            for level in package.case(code).levels:
                for endplate in ENDPLATES:
                    level_rows.append({**who(code), "rater": rater, "level": level, "endplate": endplate,
                                       **rating.level_summary(level, endplate)})
    agreement = agreement_rows(package, ratings)
    summary = {"package_id": package.package_id, "readers": sorted(r for r in ratings if r != MODEL),
               "reads": len(records), "only_done": not include_unfinished,
               "databases": len(sources), "merged_duplicates": merge_notes,
               "icc": "ICC(2,1): two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979)",
               "agreement": agreement}
    with atomic_output_dir(out) as tmp:
        write_csv(tmp / "reads.csv", READ_COLUMNS, read_rows)
        write_csv(tmp / "lesions.csv", LESION_COLUMNS, lesion_rows)
        write_csv(tmp / "levels.csv", LEVEL_COLUMNS, level_rows)
        write_csv(tmp / "agreement.csv", AGREEMENT_COLUMNS, agreement)
        (tmp / "agreement.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
