"""Sliding-window inference in NumPy, for a network that is not a torch module (ONNX Runtime).

The same windows, Gaussian weights and blending as ``monai.inferers.sliding_window_inference``
with ``mode="gaussian"``, ``sigma_scale=0.125`` and constant padding (what
``modicseg.model.inference`` calls), written without torch or MONAI so that a CPU analysis
imports neither. ``tests/test_onnx_runtime.py`` checks the result against MONAI's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

#: Runs the network on a batch of windows [B, C, *roi] and returns logits [B, K, *roi].
Predictor = Callable[[np.ndarray], np.ndarray]


def scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: float) -> list[int]:
    """Step between window starts per axis (MONAI's ``_get_scan_interval``)."""
    out = []
    for size, r in zip(image_size, roi, strict=True):
        if r == size:
            out.append(int(r))
        else:
            out.append(max(int(r * (1 - overlap)), 1))
    return out


def window_starts(image_size: Sequence[int], roi: Sequence[int], interval: Sequence[int]) -> list[tuple[int, ...]]:
    """Start index of every window, in MONAI's order (``dense_patch_slices``: last axis fastest)."""
    per_axis = []
    for size, r, step in zip(image_size, roi, interval, strict=True):
        num = int(math.ceil(float(size) / step))
        count = next((d + 1 for d in range(num) if d * step + r >= size), 1)
        per_axis.append([idx * step - max(idx * step + r - size, 0) for idx in range(count)])
    grids = np.meshgrid(*per_axis, indexing="ij")
    return [tuple(int(v) for v in row) for row in np.stack([g.ravel() for g in grids], axis=1)]


def gaussian_importance(roi: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """The window weights (MONAI's ``compute_importance_map``, Gaussian mode), float32."""
    weights: np.ndarray | None = None
    for i, r in enumerate(roi):
        x = np.arange(-(r - 1) / 2.0, (r - 1) / 2.0 + 1, dtype=np.float32)
        sigma = np.float32(r * sigma_scale)
        g = np.exp(x**2 / (np.float32(-2) * sigma**2)).astype(np.float32)
        weights = g if weights is None else weights[..., None] * g[(None,) * i]
    assert weights is not None
    floor = max(float(weights.min()), 1e-3)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def _window(start: Sequence[int], roi: Sequence[int]) -> tuple[slice, ...]:
    """Every channel of the window of size ``roi`` at ``start``."""
    return (slice(None), *(slice(a, a + r) for a, r in zip(start, roi, strict=True)))


def sliding_window_logits(x: np.ndarray, roi: Sequence[int], predictor: Predictor, batch_size: int = 1,
                          overlap: float = 0.25, cval: float = 0.0) -> np.ndarray:
    """Blended logits [K, *spatial] for an input [C, *spatial]: windows of ``roi``, Gaussian blend.

    An input smaller than ``roi`` along an axis is padded with ``cval`` (split evenly, the extra
    voxel after) and the output cropped back, as MONAI does.
    """
    x = np.asarray(x, dtype=np.float32)
    spatial = x.shape[1:]
    roi = [int(r) for r in roi]
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, spatial, strict=True)]
    if any(any(p) for p in pads):
        x = np.pad(x, [(0, 0), *pads], mode="constant", constant_values=np.float32(cval))
    size = x.shape[1:]
    starts = window_starts(size, roi, scan_interval(size, roi, overlap))
    weights = gaussian_importance(roi)
    output: np.ndarray | None = None
    count = np.zeros(size, dtype=np.float32)
    for s in starts:
        count[tuple(slice(a, a + r) for a, r in zip(s, roi, strict=True))] += weights
    for first in range(0, len(starts), max(int(batch_size), 1)):
        batch = starts[first:first + max(int(batch_size), 1)]
        windows = np.stack([x[_window(s, roi)] for s in batch])
        logits = np.asarray(predictor(np.ascontiguousarray(windows)), dtype=np.float32)
        if output is None:
            output = np.zeros((logits.shape[1], *size), dtype=np.float32)
        for s, window in zip(batch, logits, strict=True):
            output[_window(s, roi)] += window * weights
    assert output is not None
    output /= count
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, spatial, strict=True))
    everything = (slice(None), *crop)
    return output[everything]


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax along ``axis`` in float32."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted
