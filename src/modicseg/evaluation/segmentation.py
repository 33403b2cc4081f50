"""Evaluation of a segmentation model with the analysis: Dice per class (the model stage's validation)
and the analysis's level names and vertebral heights on the prediction (``evaluate_cases``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.analysis.config import VertebraConfig
from modicseg.analysis.level_agreement import level_agreement
from modicseg.analysis.levels import name_levels
from modicseg.analysis.vertebrae import find_vertebrae
from modicseg.core.convert import load_nifti
from modicseg.core.image import LabelImage
from modicseg.core.labels import BODY, DISC
from modicseg.core.resample import resample_to
from modicseg.model.cases import LabelledCase
from modicseg.model.validation import SegmenterLike, validate_cases


def evaluate_cases(segmenter: SegmenterLike, cases: Sequence[LabelledCase],
                   contrasts: Sequence[str] | None = None,
                   surface_tolerance_mm: float | None = None,
                   annotated_levels: bool = False,
                   level_names: bool = False,
                   unannotated_min_part_mm3: float | None = None,
                   overlap: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(summary {"dice_<class>": mean, "dice_mean": ...}, one row per case): the model stage's
    :func:`~modicseg.model.validation.validate_cases` (see there for ``contrasts``,
    ``surface_tolerance_mm``, ``annotated_levels``, ``unannotated_min_part_mm3`` and ``overlap``),
    plus the analysis's level names on the prediction.

    With ``level_names``, cases whose ``info`` names the level of every body of an instance map
    (``level_map``, ``level_names``: real-spine) also get ``levels_named_right`` of
    ``levels_reference``: the analysis's level names on the prediction against the mask's; cases
    that annotate bodies and discs (synthetic) are compared with the names the analysis gives their
    exact labels. The rows also hold ``height_diff_mm_S1`` and ``height_diff_mm_other_median``: the
    analysis's vertebral height on the prediction minus on the reference, for levels named right.
    """
    return validate_cases(segmenter, cases, contrasts, surface_tolerance_mm=surface_tolerance_mm,
                          annotated_levels=annotated_levels, unannotated_min_part_mm3=unannotated_min_part_mm3,
                          overlap=overlap, case_columns=_level_columns if level_names else None)


def _level_columns(predicted: np.ndarray, case: LabelledCase) -> dict[str, Any]:
    """The level-name columns of a case that names its levels or annotates bodies and discs, else none."""
    if case.info.get("level_names") or {BODY, DISC} <= set(case.annotated):
        return _level_row(predicted, case)
    return {}


def _level_row(predicted: np.ndarray, case: LabelledCase) -> dict[str, Any]:
    """Level-name agreement of one case's prediction with its named instance mask, or else with the
    analysis's names on its exact labels; and the height differences of the levels named right."""
    if case.info.get("level_names"):
        reference = load_nifti(Path(case.info["level_map"]), LabelImage)
        if not reference.same_grid(case.labels):
            reference = resample_to(reference, case.labels)
        instances, names = np.asarray(reference.array), case.info["level_names"]
        reference_heights = _heights_by_level(instances, names, case.labels.affine)
    else:
        truth = find_vertebrae(np.asarray(case.labels.array), case.labels.affine, VertebraConfig())
        instances = truth.instances
        names = dict(enumerate(name_levels(len(truth.vertebrae)), start=1))
        reference_heights = {names[v.label]: v.height_mm for v in truth.vertebrae}
    found = level_agreement(predicted, case.labels.affine, instances, names)
    wrong = [f"{p['level']}->{p['named']}" for p in found["per_level"] if not p.get("right")]
    row = {"levels_named_right": found["levels_named_right"], "levels_reference": found["levels_reference"],
           "levels_wrong": " ".join(wrong)}
    row.update(_height_differences(found["per_level"], reference_heights))
    return row


def _heights_by_level(instances: np.ndarray, names: dict[int, str], affine: np.ndarray) -> dict[str, float]:
    """The analysis's height (mm) of every body of a named instance mask, by level name: the mask's own
    level agreement (each level's height is that of the body the analysis finds in it)."""
    own = level_agreement((instances > 0).astype(np.uint8), affine, instances, names)
    return {p["level"]: p["height_mm"] for p in own["per_level"] if "height_mm" in p}


def _height_differences(per_level: list[dict[str, Any]], reference: dict[str, float]) -> dict[str, float]:
    """Height on the prediction minus height on the reference (mm, the analysis's own measurement), for
    the levels named right: ``height_diff_mm_S1`` and the median over the others."""
    diffs = {p["level"]: p["height_mm"] - reference[p["level"]] for p in per_level
             if p.get("right") and p["level"] in reference}
    out: dict[str, float] = {}
    if "S1" in diffs:
        out["height_diff_mm_S1"] = round(diffs["S1"], 2)
    others = [d for level, d in diffs.items() if level != "S1"]
    if others:
        out["height_diff_mm_other_median"] = round(float(np.median(others)), 2)
    return out
