"""Agreement statistics with numpy: Cohen's kappa, Fleiss' kappa, intraclass correlation.

* Cohen's kappa (unweighted), two raters: (p_o - p_e) / (1 - p_e), p_e from each rater's marginals.
* Fleiss' kappa, any number of raters per subject (the same number for every subject).
* ICC after Shrout & Fleiss (1979) from the two-way ANOVA mean squares of an n subjects x k raters
  table.  ``review export`` reports **ICC(2,1)**: two-way random effects, absolute agreement,
  single rater -- readers are a sample of possible readers and a systematic offset between them
  counts as disagreement.  ICC(3,1) (consistency) and ICC(1,1) are available too.

Undefined values (a single category used by everyone, no variance) are returned as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _categories(*ratings: Sequence[Any]) -> list[Any]:
    return sorted({r for rs in ratings for r in rs}, key=lambda v: (str(type(v)), v))


def confusion_matrix(a: Sequence[Any], b: Sequence[Any], categories: Sequence[Any] | None = None) -> np.ndarray:
    """Counts of (category of a, category of b)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same subjects")
    categories = list(categories) if categories is not None else _categories(a, b)
    index = {c: i for i, c in enumerate(categories)}
    matrix = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        matrix[index[x], index[y]] += 1
    return matrix


def percent_agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    if not len(a):
        return float("nan")
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], categories: Sequence[Any] | None = None) -> float:
    """Cohen's (unweighted) kappa of two raters' categories for the same subjects."""
    matrix = confusion_matrix(a, b, categories).astype(np.float64)
    n = matrix.sum()
    if n == 0:
        return float("nan")
    observed = np.trace(matrix) / n
    expected = float(matrix.sum(axis=1) @ matrix.sum(axis=0)) / n**2
    if np.isclose(expected, 1.0):
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def fleiss_counts(ratings: Sequence[Sequence[Any]], categories: Sequence[Any] | None = None) -> np.ndarray:
    """Subjects x categories counts from a subjects x raters table of categories."""
    categories = list(categories) if categories is not None else _categories(*ratings)
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros((len(ratings), len(categories)), dtype=np.int64)
    for s, row in enumerate(ratings):
        for value in row:
            counts[s, index[value]] += 1
    return counts


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from a subjects x categories table of how many raters chose each category."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return float("nan")
    raters = counts.sum(axis=1)
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    n, m = counts.shape[0], raters[0]
    p_j = counts.sum(axis=0) / (n * m)
    p_i = (np.sum(counts**2, axis=1) - m) / (m * (m - 1))
    p_bar = p_i.mean()
    p_e = float(np.sum(p_j**2))
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def mean_squares(data: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA mean squares of an n x k table: rows (MSR), columns (MSC), error (MSE), within (MSW)."""
    x = np.asarray(data, dtype=np.float64)
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((x - grand) ** 2)
    ss_error = ss_total - ss_rows - ss_cols
    return {"MSR": ss_rows / (n - 1), "MSC": ss_cols / (k - 1), "MSE": ss_error / ((n - 1) * (k - 1)),
            "MSW": (ss_cols + ss_error) / (n * (k - 1))}


def icc(data: np.ndarray | Sequence[Sequence[float]], kind: str = "2,1") -> float:
    """Intraclass correlation (Shrout & Fleiss) of an n subjects x k raters table.

    ``kind``: "2,1" (two-way random, absolute agreement, single rater; the default),
    "3,1" (two-way mixed, consistency, single rater) or "1,1" (one-way random).
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        return float("nan")
    n, k = x.shape
    ms = mean_squares(x)
    if kind == "2,1":
        denominator = ms["MSR"] + (k - 1) * ms["MSE"] + k * (ms["MSC"] - ms["MSE"]) / n
        numerator = ms["MSR"] - ms["MSE"]
    elif kind == "3,1":
        denominator = ms["MSR"] + (k - 1) * ms["MSE"]
        numerator = ms["MSR"] - ms["MSE"]
    elif kind == "1,1":
        denominator = ms["MSR"] + (k - 1) * ms["MSW"]
        numerator = ms["MSR"] - ms["MSW"]
    else:
        raise ValueError(f"unknown ICC kind {kind!r} (use '1,1', '2,1' or '3,1')")
    if np.isclose(denominator, 0.0):
        return float("nan")
    return float(numerator / denominator)
