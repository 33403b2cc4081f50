"""A tiny geometric spine phantom in model space: a stand-in for the synthetic generator in tests
and smoke runs (seconds to train on, not a substitute for ``modicseg.synth``)."""

from __future__ import annotations

import numpy as np


def toy_sample(rng: np.random.Generator, shape: tuple[int, int, int] = (8, 48, 48),
               n_channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(image [2, X, Y, Z] float32 (T1, T2), labels [X, Y, Z] uint8) in model orientation (RAS:
    axis 0 left-right slices, axis 1 posterior->anterior, axis 2 inferior->superior).

    A column of boxes: vertebral bodies (1) separated by discs (2), with a lesion band (3) at a
    random endplate. T1: body bright, disc dark, lesion dark (type 1); T2: disc bright, lesion bright.
    """
    nx, ny, nz = shape
    labels = np.zeros(shape, dtype=np.uint8)
    y0 = int(rng.integers(ny // 5, ny // 3))
    y1 = y0 + int(rng.integers(ny // 3, ny // 2))
    x0, x1 = max(0, nx // 2 - nx // 3), min(nx, nx // 2 + nx // 3 + 1)
    z = int(rng.integers(0, 4))
    body_h, disc_h = max(4, nz // 6), max(2, nz // 14)
    bodies = []
    while z + body_h < nz:
        labels[x0:x1, y0:y1, z:z + body_h] = 1
        bodies.append((z, z + body_h))
        z += body_h
        labels[x0:x1, y0 + 1:y1 - 1, z:min(nz, z + disc_h)] = 2
        z += disc_h
    if bodies and rng.random() < 0.8:
        b0, b1 = bodies[int(rng.integers(len(bodies)))]
        band = max(1, body_h // 3)
        ly0 = int(rng.integers(y0, max(y0 + 1, y1 - (y1 - y0) // 2)))
        if rng.random() < 0.5:
            labels[x0:x1, ly0:ly0 + (y1 - y0) // 2, b0:b0 + band] = 3
        else:
            labels[x0:x1, ly0:ly0 + (y1 - y0) // 2, b1 - band:b1] = 3
    t1_values = np.array([0.1, 0.7, 0.35, 0.2]) * rng.uniform(0.8, 1.2)
    t2_values = np.array([0.15, 0.4, 0.8, 0.9]) * rng.uniform(0.8, 1.2)
    t1 = t1_values[labels] + rng.normal(0, 0.04, shape)
    t2 = t2_values[labels] + rng.normal(0, 0.04, shape)
    image = np.stack([t1, t2][:n_channels]).astype(np.float32)
    return image, labels


def toy_cases(n: int, seed: int, spacing_mm: tuple[float, float, float] = (4.0, 1.0, 1.0),
              shape: tuple[int, int, int] = (8, 48, 48)) -> list:
    """``n`` toy phantoms as annotated cases (T1, T2 ScalarImages on an RAS grid)."""
    from modicseg.core.image import LabelImage, Provenance, ScalarImage
    from modicseg.model.cases import LabelledCase

    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing_mm, 1.0])
    cases = []
    for i in range(n):
        image, labels = toy_sample(rng, shape)
        t1 = ScalarImage(image[0], affine, Provenance(weighting="T1", plane="sagittal", source_format="synthetic"))
        t2 = ScalarImage(image[1], affine, Provenance(weighting="T2", plane="sagittal", source_format="synthetic"))
        cases.append(LabelledCase(f"toy_{seed}_{i}", t1, t2, LabelImage(labels, affine)))
    return cases
