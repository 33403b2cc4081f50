"""One study through a network: images -> model grid -> probabilities -> labels on the reference grid.

Shared by the torch ``Segmenter`` and the ONNX Runtime ``OnnxSegmenter``; imports neither torch nor
MONAI, so the ONNX path stays light. The network itself is the ``predict`` callable each passes in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modicseg.core.evidence import NetworkEvidence
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import LESION
from modicseg.io.errors import SelectionError
from modicseg.model.config import ModelConfig
from modicseg.model.postprocess import ColumnSettings, restrict_to_column
from modicseg.model.preprocess import ModelGrid, maps_to_reference, probabilities_to_labels, to_model_space

if TYPE_CHECKING:
    from modicseg.io.study import Study


@dataclass
class Segmentation:
    """A segmentation and how it was made."""

    labels: LabelImage
    contrasts: list[str]
    typing_possible: bool
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    evidence: NetworkEvidence | None = None  # with ``uncertainty=True``: probabilities and uncertainty maps


def left_right_axis(orientation: str) -> int:
    """The model array axis (0-2) that runs left-right in model orientation ``orientation`` (e.g. "RAS")."""
    for axis, code in enumerate(orientation.upper()):
        if code in "LR":
            return axis
    raise ValueError(f"orientation '{orientation}' has no left-right axis")


def network_evidence(probs: np.ndarray, mirrored: np.ndarray, grid: ModelGrid,
                     reference: ScalarImage) -> NetworkEvidence:
    """Evidence maps on the reference grid from two passes' class probabilities [K, ...] on the model grid
    (``mirrored``: the pass on the left-right mirrored input, mirrored back)."""
    mean = 0.5 * (probs + mirrored)
    k = mean.shape[0]
    entropy = -(mean * np.log(np.clip(mean, 1e-6, 1.0))).sum(axis=0) / np.log(k)
    maps = np.stack([mean[LESION], np.abs(probs[LESION] - mirrored[LESION]), np.clip(entropy, 0.0, 1.0)])
    on_reference = np.clip(maps_to_reference(maps, grid), 0.0, 1.0)
    provenance = reference.provenance.replace(source_format="derived", weighting=None, weighting_reason=None,
                                              acquisition={})
    images = [ScalarImage(on_reference[i], grid.reference_affine.copy(),
                          provenance.replace(series_description=name))
              for i, name in enumerate(("modicseg lesion probability", "modicseg lesion disagreement",
                                        "modicseg uncertainty"))]
    return NetworkEvidence(images[0], images[1], images[2], passes=2)


def segment_images(predict: Callable[[np.ndarray], Any], config: ModelConfig, study: Study | None = None, *,
                   t1: ScalarImage | None = None, t2: ScalarImage | None = None, register: str = "auto",
                   label_backend: str = "torch", uncertainty: bool = False) -> Segmentation:
    """Labels on the T2 grid (else the T1 grid) from ``predict`` (model-space input [C, ...] -> class
    probabilities), with the contrasts used, whether typing is possible, notes and timings.

    Pass a ``Study`` or the images (``t1`` and/or ``t2``, any grids in one physical space); with one
    contrast only, the other channel is marked absent. ``label_backend``: how ``probabilities_to_labels``
    interpolates (``"torch"`` for tensors, ``"numpy"`` for arrays). ``uncertainty``: also run the network on
    the left-right mirrored input (test-time augmentation; twice the network time) and return the
    ``evidence`` maps. The labels are always those of the pass on the input as given.
    """
    started = time.perf_counter()
    notes: list[str] = []
    if study is not None:
        if t1 is not None or t2 is not None:
            raise ValueError("pass a study or images, not both")
        if study.t1 is not None and study.t2 is not None:
            from modicseg.io.study import t1_on_t2_grid

            t1, t2 = t1_on_t2_grid(study, register=register)
            notes.extend(study.warnings)
        else:
            t1, t2 = study.t1, study.t2
    if t1 is None and t2 is None:
        raise SelectionError("no T1 or T2 image to segment")
    reference = t2 if t2 is not None else t1
    assert reference is not None
    if reference.provenance.plane not in (None, "sagittal"):
        notes.append(f"the reference image is {reference.provenance.plane}, the model expects sagittal slices")
    images = {"T1": t1, "T2": t2}
    x, grid = to_model_space(images, config, reference=reference)
    prepared = time.perf_counter()
    probs = np.asarray(predict(x))
    predicted = time.perf_counter()
    evidence = None
    if uncertainty:
        axis = 1 + left_right_axis(grid.orientation)
        mirrored = np.flip(np.asarray(predict(np.ascontiguousarray(np.flip(x, axis=axis)))), axis=axis)
        evidence = network_evidence(probs, mirrored, grid, reference)
    evidenced = time.perf_counter()
    column = ColumnSettings.from_config(config.postprocess)
    if column is not None:
        probs, removed = restrict_to_column(probs, np.linalg.norm(grid.affine[:3, :3], axis=0), column)
        if removed:
            notes.append(f"{removed} model-grid voxels labelled away from the spinal column were set to background")
    labels = probabilities_to_labels(probs, grid, backend=label_backend)
    labels.provenance = reference.provenance.replace(
        source_format="derived", series_description="modicseg segmentation", weighting=None,
        weighting_reason=None, acquisition={})
    done = time.perf_counter()
    contrasts = [c for c, img in images.items() if img is not None]
    if len(contrasts) < 2:
        notes.append(f"only {contrasts[0]} given: segmentation from one contrast; Modic typing is not possible")
    timings = {"preprocess_s": prepared - started, "network_s": predicted - prepared,
               "postprocess_s": done - evidenced, "total_s": done - started}
    if uncertainty:
        timings["uncertainty_s"] = evidenced - predicted
    return Segmentation(labels=labels, contrasts=contrasts, typing_possible=len(contrasts) == 2,
                        timings_s=timings, notes=notes, evidence=evidence)
