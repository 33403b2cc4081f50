"""Validation: segment annotated cases with a model and compute Dice per class (what training and
fine-tuning report).  The analysis-side scores (level names, heights) are added by
``modicseg.evaluation.segmentation.evaluate_cases`` through ``case_columns``: the model stage never
imports the analysis stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from modicseg.core.image import LabelImage
from modicseg.core.labels import BACKGROUND
from modicseg.core.resample import resample_to
from modicseg.model.cases import IGNORE_LABEL, LabelledCase
from modicseg.model.config import ModelConfig
from modicseg.model.metrics import (
    beyond_annotated_levels,
    component_detection,
    dice,
    dice_per_class,
    precision_recall,
    predicted_group,
    summarize,
    surface_dice,
)

#: Extra columns of one case's row from its prediction (the label array on the case's label grid).
CaseColumns = Callable[[np.ndarray, LabelledCase], dict[str, Any]]


class SegmenterLike(Protocol):
    """What scoring needs of a segmenter: ``Segmenter``, ``OnnxSegmenter`` or a wrapper around one."""

    @property
    def config(self) -> ModelConfig: ...

    def segment(self, *args: Any, **kwargs: Any) -> LabelImage: ...


def validate_cases(segmenter: SegmenterLike, cases: Sequence[LabelledCase],
                   contrasts: Sequence[str] | None = None,
                   surface_tolerance_mm: float | None = None,
                   annotated_levels: bool = False,
                   unannotated_min_part_mm3: float | None = None,
                   overlap: bool = False,
                   case_columns: CaseColumns | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(summary {"dice_<class>": mean, "dice_mean": ...}, one row per case).

    Each case is segmented from its own images (``contrasts`` restricts them, e.g. ["T2"]) on its
    reference grid and compared with its labels, for the classes it annotates. A prediction of a
    class nested in an unannotated-for-this-case parent counts as the parent (lesion -> body).
    With ``surface_tolerance_mm`` the rows and summary also hold the normalised surface Dice
    (``nsd_<class>``) at that tolerance. For nested classes (lesions) the rows count objects:
    ``<class>_truth``, ``_detected``, ``_predicted``, ``_false`` (connected components).
    With ``annotated_levels`` they also hold ``dice_<class>_annotated_levels``: Dice without the
    predicted structures beyond the annotated levels (``metrics.beyond_annotated_levels``), for
    masks that label only part of the spine in view.
    ``case_columns(predicted, case)`` adds columns to each case's row (after the Dice columns);
    ``levels_named_right`` / ``levels_reference`` columns are summed in the summary, ``height_diff_*``
    columns averaged (``evaluation.segmentation.evaluate_cases`` adds them: level names).
    With ``unannotated_min_part_mm3``, rows of cases that do not annotate a class hold the volume
    the model predicts of it and its parts of at least that size (``<class>_unannotated_mm3`` /
    ``_parts``; summed in the summary): lesions on real scans without Modic labels.
    With ``overlap``, rows and summary also hold ``precision_<class>`` (share of the prediction inside the
    labels) and ``recall_<class>`` (share of the labels predicted) for annotated classes that are not nested:
    they tell a model that draws larger or smaller structures than the annotators (a convention) from one
    that misses or invents them.
    """
    labels = segmenter.config.labels
    nested = segmenter.config.nested
    rows, per_case = [], []
    for case in cases:
        t1 = case.t1 if contrasts is None or "T1" in contrasts else None
        t2 = case.t2 if contrasts is None or "T2" in contrasts else None
        if t1 is None and t2 is None:
            continue
        started = time.perf_counter()
        pred = segmenter.segment(t1=t1, t2=t2)
        elapsed = time.perf_counter() - started
        if not pred.same_grid(case.labels):  # e.g. T1 only, on its own grid: compare on the labels' grid
            pred = resample_to(pred, case.labels)
        truth, predicted = np.asarray(case.labels.array), np.asarray(pred.array)
        raw = predicted
        unknown = truth == IGNORE_LABEL
        if unknown.any():  # voxels the labels say nothing about (readers' ties): scored as neither
            predicted = np.where(unknown, IGNORE_LABEL, predicted).astype(predicted.dtype)
        d = dice_per_class(predicted, truth, case.annotated, nested)
        per_case.append(d)
        row: dict[str, Any] = {"case": case.name, "contrasts": "+".join(c for c, i in (("T1", t1), ("T2", t2))
                                                                          if i is not None),
                               "seconds": round(elapsed, 2)}
        row.update({f"dice_{labels[c]}": (None if np.isnan(v) else round(v, 4)) for c, v in d.items()})
        for c in d:
            class_truth = truth == c
            if c in nested:  # nested classes (lesions) are objects: count them too
                found = component_detection(predicted == c, class_truth)
                row.update({f"{labels[c]}_{k}": v for k, v in found.items()})
            if surface_tolerance_mm is None and not annotated_levels and not overlap:
                continue
            group = predicted_group(predicted, c, case.annotated, nested)
            if overlap and c not in nested:
                for name, value in zip(("precision", "recall"), precision_recall(group, class_truth), strict=True):
                    row[f"{name}_{labels[c]}"] = None if np.isnan(value) else round(value, 4)
            if surface_tolerance_mm is not None:
                value = surface_dice(group, class_truth, case.labels.spacing, surface_tolerance_mm)
                row[f"nsd_{labels[c]}"] = None if np.isnan(value) else round(value, 4)
            if annotated_levels and c not in nested:
                scored = group & ~beyond_annotated_levels(group, class_truth, case.labels.affine)
                row[f"dice_{labels[c]}_annotated_levels"] = round(dice(scored, class_truth), 4)
        if case_columns is not None:
            row.update(case_columns(raw, case))
        if unannotated_min_part_mm3 is not None:
            row.update(_unannotated_parts(raw, case, labels, unannotated_min_part_mm3))
        rows.append(row)
    summary = summarize(per_case, labels)
    named = [r for r in rows if "levels_reference" in r]
    if named:
        summary["levels_named_right"] = sum(r["levels_named_right"] for r in named)
        summary["levels_reference"] = sum(r["levels_reference"] for r in named)
    for name in {k for r in rows for k in r if "_unannotated_" in k}:
        summary[name] = float(sum(r.get(name, 0) for r in rows))
    for name in {k for r in rows for k in r
                 if k.startswith(("nsd_", "precision_", "recall_", "height_diff_")) or k.endswith("_annotated_levels")}:
        values = [r[name] for r in rows if r.get(name) is not None and not np.isnan(r[name])]
        if values:
            summary[name] = float(np.mean(values))
    return summary, rows


def _unannotated_parts(predicted: np.ndarray, case: LabelledCase, labels: dict[int, str],
                       min_part_mm3: float) -> dict[str, Any]:
    """Volume and parts (>= ``min_part_mm3``) the model predicts of classes the case does not annotate.

    On real-spine (bodies only) these are the discs and the lesions: not scorable, but every lesion
    part is a false positive on a spine without Modic changes.
    """
    from scipy import ndimage

    voxel_mm3 = float(np.prod(case.labels.spacing))
    out: dict[str, Any] = {}
    for c, name in labels.items():
        if c == BACKGROUND or c in case.annotated:
            continue
        mask = predicted == c
        comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(comp.ravel())[1:] * voxel_mm3 if n else np.zeros(0)
        out[f"{name}_unannotated_mm3"] = round(float(mask.sum() * voxel_mm3), 1)
        out[f"{name}_unannotated_parts"] = int(np.count_nonzero(sizes >= min_part_mm3))
    return out
