"""The one place that knows the synthetic generator's API (``modicseg.synth``).

``generate_training_sample`` works on a scanner-like sagittal grid: array axes (i, j, k) =
(anterior->posterior, superior->inferior, left->right slices), spacing (in-plane, in-plane, slice).
The model orientation is RAS (slices left->right, posterior->anterior, inferior->superior), so the
sample is transposed to (k, i, j) and axes 1 and 2 are reversed (exact, no interpolation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modicseg.core.labels import STRUCTURE_VALUES


def synth_training_sample(rng: np.random.Generator, spacing: tuple[float, float, float],
                          shape: tuple[int, int, int], **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image [2, X, Y, Z] (T1, T2), labels [X, Y, Z] uint8) in model orientation (RAS) and spacing.

    ``spacing`` and ``shape`` are in model axis order (slice, antero-posterior, cranio-caudal).
    """
    from modicseg.synth.case import generate_training_sample

    scanner_spacing = (spacing[1], spacing[2], spacing[0])
    scanner_shape = (shape[1], shape[2], shape[0])
    image, labels = generate_training_sample(rng, spacing=scanner_spacing, shape=scanner_shape, **kwargs)
    image = np.asarray(image, dtype=np.float32).transpose(0, 3, 1, 2)[:, :, ::-1, ::-1]
    labels = np.asarray(labels).transpose(2, 0, 1)[:, ::-1, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels.astype(np.uint8))


def synth_validation_cases(n: int, seed: int, **kwargs: Any) -> list:
    """``n`` full synthetic cases (T1 and T2 on their scanner grids, labels on the T2 grid) as
    ``LabelledCase``s; ``kwargs`` are ``modicseg.synth.case.CaseOptions`` fields."""
    from modicseg.model.cases import LabelledCase
    from modicseg.synth.case import CaseOptions, generate_case

    options = CaseOptions(**kwargs)
    seeds = np.random.SeedSequence(seed).spawn(n)
    cases = []
    for i, s in enumerate(seeds):
        case = generate_case(s, case_id=f"synth_{seed}_{i:03d}", options=options)
        cases.append(LabelledCase(case.case_id, case.t1, case.t2, case.labels, STRUCTURE_VALUES,
                                  {"source": "modicseg.synth", "seed": seed, "index": i}))
    return cases
