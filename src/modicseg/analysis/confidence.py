"""How sure the analysis is: a confidence per lesion (probability that it is real) and per verdict.

Each lesion gets *inputs* from the network's own uncertainty (``core.evidence.NetworkEvidence``: two
passes, the input as given and mirrored left-right) and from the lesion itself:

- ``probability``: mean lesion probability of the two passes over the lesion's voxels;
- ``core_probability``: its 90th percentile (a sure core inside a soft rim);
- ``disagreement``: mean |difference| of the lesion probability between the passes;
- ``uncertainty``: mean normalised entropy of the class probabilities;
- ``log10_volume_mm3``; ``contrast``: the largest |log| ratio of the lesion's median signal to the same
  vertebra's normal marrow over the images given; ``endplate_gap_mm``: how far its near border lies
  from the body's surface at the endplate.

A :class:`Calibrator` (logistic regression on the standardised inputs, fitted by
``scripts/bench_confidence.py`` on held-out real scans the training generator never produced:
healthy volunteers, whose every lesion is false, and lesions painted by the independent painter)
turns the inputs into a probability.  It ships beside the weights (``confidence.json``); a checkpoint
without one gets the uncalibrated ``probability`` input and a note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.evidence import NetworkEvidence
from modicseg.io.errors import InputError

#: The calibrator's inputs, in order.
FEATURES = ("probability", "core_probability", "disagreement", "uncertainty", "log10_volume_mm3", "contrast",
            "endplate_gap_mm")
#: File of a checkpoint folder that holds its calibrator.
CALIBRATION_FILE = "confidence.json"
UNCALIBRATED_NOTE = ("lesion confidence is not calibrated for this model (no confidence.json beside its weights): "
                     "it is the network's mean lesion probability")


def lesion_inputs(ijk: np.ndarray, evidence: NetworkEvidence, volume_mm3: float, contrast: float,
                  endplate_gap_mm: float) -> dict[str, float]:
    """The calibrator's inputs for one lesion (voxel indices ``ijk`` (N, 3) on the evidence's grid)."""
    probability, disagreement, uncertainty = evidence.values_at(ijk)
    return {"probability": float(np.mean(probability)),
            "core_probability": float(np.percentile(probability, 90)),
            "disagreement": float(np.mean(disagreement)),
            "uncertainty": float(np.mean(uncertainty)),
            "log10_volume_mm3": float(math.log10(max(volume_mm3, 1.0))),
            "contrast": float(contrast),
            "endplate_gap_mm": float(max(endplate_gap_mm, 0.0))}


def signal_contrast(images: Sequence[np.ndarray | None], references: Sequence[float | None],
                    ijk: np.ndarray) -> float:
    """The largest |log(median lesion signal / reference marrow)| over the images with a reference (0 if none)."""
    best = 0.0
    index = tuple(np.asarray(ijk).T)
    for array, reference in zip(images, references, strict=True):
        if array is None or reference is None or not reference > 0:
            continue
        median = float(np.median(array[index]))
        if median > 0:
            best = max(best, abs(math.log(median / reference)))
    return best


@dataclass
class Calibrator:
    """Logistic regression on standardised inputs: P(real) = 1 / (1 + exp(-(b + w . (x - mean) / scale)))."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    fitted_on: dict[str, Any] = field(default_factory=dict)  # what it was fitted on (subjects, counts)

    def logit(self, inputs: Mapping[str, float]) -> float:
        x = np.array([float(inputs[name]) for name in self.features])
        return float(self.intercept + self.coef @ ((x - self.mean) / self.scale))

    def probability(self, inputs: Mapping[str, float]) -> float:
        """P(the lesion is real) for one lesion's inputs."""
        return float(1.0 / (1.0 + math.exp(-min(max(self.logit(inputs), -50.0), 50.0))))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "logistic regression on standardised inputs (modicseg.analysis.confidence)",
                "features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "calibrator") -> Calibrator:
        try:
            features = tuple(str(f) for f in data["features"])
            arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
            intercept = float(data["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a modicseg confidence calibrator ({type(exc).__name__}: {exc})") from None
        unknown = set(features) - set(FEATURES)
        if unknown or any(a.shape != (len(features),) for a in arrays) or not np.all(arrays[1] > 0):
            raise InputError(f"{source}: calibrator inputs do not fit (features {list(features)})")
        return cls(features, arrays[0], arrays[1], arrays[2], intercept, dict(data.get("fitted_on") or {}))

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read confidence calibrator ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def for_checkpoint(cls, directory: str | Path | None) -> Calibrator | None:
        """The calibrator beside a checkpoint's weights, or None when it has none."""
        if directory is None:
            return None
        path = Path(directory) / CALIBRATION_FILE
        return cls.load(path) if path.is_file() else None


def lesion_confidence(inputs: Mapping[str, float], calibrator: Calibrator | None) -> float:
    """P(real) from a calibrator, else the uncalibrated mean lesion probability."""
    if calibrator is None:
        return float(min(max(inputs["probability"], 0.0), 1.0))
    return calibrator.probability(inputs)


def fit_calibrator(x: np.ndarray, y: np.ndarray, features: Sequence[str] = FEATURES, l2: float = 1.0,
                   fitted_on: Mapping[str, Any] | None = None) -> Calibrator:
    """Fit the logistic regression (L2 penalty ``l2`` on the weights, not the intercept) by L-BFGS."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(features) or len(y) != len(x):
        raise ValueError("x must be (n, len(features)) and y (n,)")
    if not (0 < y.sum() < len(y)):
        raise ValueError("calibration needs both real and false lesions")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = params[0], params[1:]
        t = b + z @ w
        # log(1 + exp(t)) - y t, stably
        value = np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * w @ w
        p = 1.0 / (1.0 + np.exp(-t))
        grad = np.concatenate([[np.sum(p - y)], z.T @ (p - y) + l2 * w])
        return float(value), grad

    result = minimize(loss, np.zeros(len(features) + 1), jac=True, method="L-BFGS-B")
    return Calibrator(tuple(features), mean, scale, result.x[1:].copy(), float(result.x[0]), dict(fitted_on or {}))


def unreported_lesion_evidence(evidence: NetworkEvidence, reported: np.ndarray, bodies: np.ndarray,
                               voxel_mm3: float, min_volume_mm3: float, level: float = 0.3) -> float:
    """Evidence of a lesion the analysis did not report: the largest mean lesion probability of a region
    inside the vertebral bodies where the mean probability is >= ``level``, outside the reported lesions,
    of at least ``min_volume_mm3`` (0 when there is none)."""
    from scipy import ndimage

    probability = np.asarray(evidence.lesion_probability.array)
    candidate = (probability >= level) & ~reported & bodies
    if not candidate.any():
        return 0.0
    components, count = ndimage.label(candidate, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sums = np.bincount(components.ravel(), weights=probability.ravel(), minlength=count + 1)
    big = np.flatnonzero(sizes[1:] * voxel_mm3 >= min_volume_mm3) + 1
    if big.size == 0:
        return 0.0
    return float(np.max(sums[big] / sizes[big]))
