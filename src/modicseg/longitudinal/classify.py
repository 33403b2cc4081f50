"""What happened to each lesion between baseline and follow-up, and the numbers that go with it.

Status of a baseline lesion: ``same type`` (type string unchanged), ``type change`` (e.g. 1 -> 2,
1 -> 1/2) or ``regressed`` (no follow-up lesion).  A follow-up lesion without a baseline lesion is
``new``.  Type-1 volume is the volume of a lesion's voxels typed 1 (volume x typed share x share
of type 1).  ``size_change`` calls a volume change beyond +-``tolerance`` grown or shrunk.
"""

from __future__ import annotations

from typing import Any

from modicseg.longitudinal.matching import LesionPair
from modicseg.report.models import Lesion

SAME, CHANGED, REGRESSED, NEW = "same type", "type change", "regressed", "new"
NONE = "none"  # the type of an absent lesion in a transition
SIZE_TOLERANCE = 0.20

#: columns of change.csv, in order
COLUMNS = (
    "level", "endplate", "status", "transition", "baseline_type", "followup_type", "baseline_id", "followup_id",
    "matched_by", "overlap_dice", "volume_baseline_mm3", "volume_followup_mm3", "volume_change_mm3",
    "volume_change_percent", "size_change", "type1_volume_baseline_mm3", "type1_volume_followup_mm3",
    "type1_volume_change_mm3", "height_fraction_baseline", "height_fraction_followup", "height_fraction_change",
    "extent_grade_baseline", "extent_grade_followup", "followup_level", "confidence_baseline",
    "confidence_followup",
)


def type1_volume(lesion: Lesion | None) -> float:
    """Volume (mm³) of the lesion's voxels typed 1; 0 for an absent lesion."""
    return 0.0 if lesion is None else lesion.type1_volume_mm3


def has_type(lesion: Lesion | None, kind: str) -> bool:
    """Whether the lesion is of primary or secondary type ``kind``."""
    return lesion is not None and kind in (lesion.primary_type, lesion.secondary_type)


def status_of(baseline: Lesion | None, followup: Lesion | None) -> str:
    if baseline is None:
        return NEW
    if followup is None:
        return REGRESSED
    return SAME if baseline.type == followup.type else CHANGED


def size_change(before: float, after: float, tolerance: float = SIZE_TOLERANCE) -> str:
    if before <= 0:
        return NEW if after > 0 else "none"
    if after <= 0:
        return "gone"
    ratio = after / before - 1.0
    return "grown" if ratio > tolerance else "shrunk" if ratio < -tolerance else "stable"


def _diff(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def change_row(pair: LesionPair, baseline: Lesion | None, followup: Lesion | None,
               level: str | None) -> dict[str, Any]:
    """One row of change.csv / one entry of change.json "lesions"."""
    vb = baseline.volume_mm3 if baseline else 0.0
    vf = followup.volume_mm3 if followup else 0.0
    hb = baseline.height_fraction if baseline else None
    hf = followup.height_fraction if followup else None
    if baseline is None and hb is None:
        hb = 0.0
    if followup is None and hf is None:
        hf = 0.0
    t1b, t1f = type1_volume(baseline), type1_volume(followup)
    type_b = baseline.type if baseline else NONE
    type_f = followup.type if followup else NONE
    either = baseline or followup
    return {
        "level": level,
        "endplate": either.endplate if either else None,
        "status": status_of(baseline, followup),
        "transition": f"{type_b} -> {type_f}",
        "baseline_type": type_b,
        "followup_type": type_f,
        "baseline_id": pair.baseline_id,
        "followup_id": pair.followup_id,
        "matched_by": pair.matched_by,
        "overlap_dice": pair.dice,
        "volume_baseline_mm3": vb,
        "volume_followup_mm3": vf,
        "volume_change_mm3": vf - vb,
        "volume_change_percent": None if vb <= 0 else 100.0 * (vf - vb) / vb,
        "size_change": size_change(vb, vf),
        "type1_volume_baseline_mm3": t1b,
        "type1_volume_followup_mm3": t1f,
        "type1_volume_change_mm3": t1f - t1b,
        "height_fraction_baseline": hb,
        "height_fraction_followup": hf,
        "height_fraction_change": _diff(hf, hb),
        "extent_grade_baseline": baseline.extent_grade if baseline else None,
        "extent_grade_followup": followup.extent_grade if followup else None,
        "followup_level": followup.level if followup else None,
        "confidence_baseline": baseline.confidence if baseline else None,
        "confidence_followup": followup.confidence if followup else None,
    }


def summarise(rows: list[dict[str, Any]], baseline_lesions: list[Lesion], followup_lesions: list[Lesion]) -> dict:
    """Per-subject counts and type-1 volumes (the trial's imaging outcomes, per patient)."""
    t1_before = sum(type1_volume(les) for les in baseline_lesions)
    t1_after = sum(type1_volume(les) for les in followup_lesions)
    type1_rows = [r for r in rows if r["status"] != NEW and is_type1(r["baseline_type"])]
    return {
        "baseline_lesions": len(baseline_lesions),
        "followup_lesions": len(followup_lesions),
        "same_type": sum(r["status"] == SAME for r in rows),
        "type_change": sum(r["status"] == CHANGED for r in rows),
        "regressed": sum(r["status"] == REGRESSED for r in rows),
        "new": sum(r["status"] == NEW for r in rows),
        "baseline_type1_lesions": len(type1_rows),
        "type1_to_type2": sum(turned_type2(r) for r in type1_rows),
        "type1_regressed": sum(r["status"] == REGRESSED for r in type1_rows),
        "type1_volume_baseline_mm3": t1_before,
        "type1_volume_followup_mm3": t1_after,
        "type1_volume_change_mm3": t1_after - t1_before,
        "type1_volume_change_percent": None if t1_before <= 0 else 100.0 * (t1_after - t1_before) / t1_before,
    }


def is_type1(type_text: str | None) -> bool:
    """A type string with a type-1 component, primary or secondary ("1", "1/2", "2/1")."""
    return bool(type_text) and "1" in str(type_text).split("/")


def turned_type2(row: dict[str, Any]) -> bool:
    """A baseline type-1 lesion that became primarily type 2 at follow-up.

    "1" or "1/2" -> "2", "2/1", "2/3"; a "2/1" baseline counts only when no type 1 is left ("2",
    "2/3"), so an unchanged "2/1" is not a conversion.
    """
    before = str(row.get("baseline_type") or "").split("/")
    after = str(row.get("followup_type") or "").split("/")
    if "1" not in before or after[0] != "2":
        return False
    return before[0] == "1" or "1" not in after
