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


def precision_recall(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(share of ``pred`` inside ``truth``, share of ``truth`` inside ``pred``); NaN for an empty mask."""
    hit = float(np.logical_and(pred, truth).sum())
    sp, st = int(pred.sum()), int(truth.sum())
    return (hit / sp if sp else float("nan")), (hit / st if st else float("nan"))


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


def beyond_annotated_levels(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Predicted voxels of structures outside the annotated range of a partly labelled spine.

    Masks often label only some vertebrae (e.g. T10-S1) while the field of view shows more
    (T8, T9, the sacrum below S1). A predicted connected component (6-connectivity, as the
    analysis separates bodies) is beyond the annotated levels when it touches no annotated voxel
    and its centroid lies cranial to the centroid of the highest annotated component or caudal to
    that of the lowest (world superior-inferior coordinate from ``affine``, RAS). Everything else,
    including extra voxels beside the annotated levels, stays in the comparison.
    """
    from scipy import ndimage

    truth_cc, n_truth = ndimage.label(truth)
    pred_cc, n_pred = ndimage.label(pred)
    out = np.zeros(pred.shape, dtype=bool)
    if n_truth == 0 or n_pred == 0:
        return out

    def superior(labels: np.ndarray, n: int) -> np.ndarray:
        centroids = np.asarray(ndimage.center_of_mass(np.ones(labels.shape), labels, np.arange(1, n + 1)))
        return centroids @ np.asarray(affine)[2, :3] + float(np.asarray(affine)[2, 3])

    truth_s = superior(truth_cc, n_truth)
    pred_s = superior(pred_cc, n_pred)
    touching = np.zeros(n_pred + 1, dtype=bool)
    touching[np.unique(pred_cc[pred & truth])] = True
    beyond = ~touching[1:] & ((pred_s > truth_s.max()) | (pred_s < truth_s.min()))
    return np.concatenate([[False], beyond])[pred_cc]
