"""Dice per class, aware of partial annotation (a class's prediction includes its unannotated
nested classes, e.g. a predicted lesion counts as vertebral body in a bodies-only case)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def predicted_group(pred: np.ndarray, cls: int, annotated: Iterable[int], nested: Mapping[int, int]) -> np.ndarray:
    """Voxels predicted as ``cls`` or as an unannotated class nested in it."""
    ann = set(annotated)
    members = [cls] + [c for c, parent in nested.items() if parent == cls and c not in ann]
    return np.isin(pred, members)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; NaN when both are empty."""
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return float("nan")
    return 2.0 * float(np.logical_and(a, b).sum()) / (sa + sb)


def dice_per_class(pred: np.ndarray, truth: np.ndarray, annotated: Iterable[int],
                   nested: Mapping[int, int] | None = None) -> dict[int, float]:
    """Dice of every annotated foreground class (NaN when absent from both truth and prediction)."""
    nested = dict(nested or {})
    ann = sorted({int(c) for c in annotated} - {0})
    return {c: dice(predicted_group(pred, c, ann, nested), truth == c) for c in ann}


def summarize(per_case: list[dict[int, float]], labels: Mapping[int, str]) -> dict[str, float]:
    """Mean Dice per class over cases (NaNs skipped) as {"dice_<name>": value, "dice_mean": ...}."""
    out: dict[str, float] = {}
    classes = sorted({c for d in per_case for c in d})
    means = []
    for c in classes:
        vals = [d[c] for d in per_case if c in d and not np.isnan(d[c])]
        if vals:
            out[f"dice_{labels.get(c, str(c))}"] = float(np.mean(vals))
            means.append(out[f"dice_{labels.get(c, str(c))}"])
    if means:
        out["dice_mean"] = float(np.mean(means))
    return out


def surface_dice(a: np.ndarray, b: np.ndarray, spacing: Iterable[float], tolerance_mm: float) -> float:
    """Normalised surface Dice: the share of both masks' boundary voxels that lie within
    ``tolerance_mm`` of the other mask's boundary (1 = boundaries agree within the tolerance).
    It separates a boundary convention (e.g. cortex included or not) from missed or extra
    structures, which plain Dice mixes. NaN when both masks are empty."""
    from scipy import ndimage

    spacing = tuple(float(s) for s in spacing)
    if not a.any() and not b.any():
        return float("nan")
    if not a.any() or not b.any():
        return 0.0
    edge_a = a & ~ndimage.binary_erosion(a)
    edge_b = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~edge_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~edge_a, sampling=spacing)
    close = int((to_b[edge_a] <= tolerance_mm).sum() + (to_a[edge_b] <= tolerance_mm).sum())
    return close / int(edge_a.sum() + edge_b.sum())


def component_detection(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Object-level agreement of two masks (26-connected components): truth components hit by
    the prediction, and predicted components that touch no truth (false detections)."""
    from scipy import ndimage

    structure = np.ones((3, 3, 3), dtype=bool)
    truth_cc, n_truth = ndimage.label(truth, structure=structure)
    pred_cc, n_pred = ndimage.label(pred, structure=structure)
    hit_truth = np.unique(truth_cc[pred & truth])
    hit_pred = np.unique(pred_cc[pred & truth])
    return {"truth": int(n_truth), "detected": int(np.count_nonzero(hit_truth)),
            "predicted": int(n_pred), "false": int(n_pred - np.count_nonzero(hit_pred))}
