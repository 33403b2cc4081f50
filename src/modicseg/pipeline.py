"""The pipeline: a study in, a :class:`~modicseg.analysis.result.Report` out (``modicseg.analyze``).

The one place that composes the stages: ``io`` opens the study, ``model`` segments it (unless a label
map is given), ``analysis`` measures and types the lesions; ``report.writers.write_report`` writes the
files.  ``cli``, ``batch``, ``longitudinal`` and ``review`` call this module; the stages below it
know nothing of each other (``docs/architecture.md``).  Importing it imports neither torch nor MONAI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modicseg.analysis.confidence import Calibrator
from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.pipeline import analyze_study, as_config, load_labels, prepare_study
from modicseg.analysis.result import Report
from modicseg.core.evidence import NetworkEvidence
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.errors import InputError, ModicsegError
from modicseg.io.study import Study, StudyRequest

__all__ = ["ModelUnavailableError", "NetworkRun", "Report", "analyze", "run_network"]


class ModelUnavailableError(ModicsegError):
    """No segmentation model can be run: the user must pass a label map."""


@dataclass
class NetworkRun:
    """What the network gave: labels, ``provenance.segmentation`` of the report, notes, and (with
    confidence) its evidence maps and the checkpoint's calibrator."""

    labels: LabelImage
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    evidence: NetworkEvidence | None = None
    calibrator: Calibrator | None = None


def run_network(t1: ScalarImage | None, t2: ScalarImage | None, model: str | Path | None,
                device: str, confidence: bool = True) -> NetworkRun:
    """Segment with the model stage's segmenter (ONNX Runtime on CPU when the checkpoint has a current
    export, else torch; loaded once per process); ModelUnavailableError when there is no model.

    ``confidence``: also run the mirrored pass (twice the network time) for the lesion confidence and
    the uncertainty map, and load the checkpoint's calibrator (``confidence.json``).
    """
    try:
        from modicseg.model.runtime import load_segmenter
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("modicseg.model"):
            raise ModelUnavailableError("no segmentation model available; pass --labels FILE "
                                        "(a label map: 0 background, 1 body, 2 disc, 3 lesion)") from None
        raise

    try:
        segmenter = load_segmenter(model, device=device)
    except InputError as exc:
        if model is not None:
            raise
        raise ModelUnavailableError(f"{exc}; or pass --labels FILE to analyse a label map") from None
    result = segmenter.segment_detailed(t1=t1, t2=t2, uncertainty=confidence)
    info: dict[str, Any] = {"source": "network", "checkpoint_sha256": segmenter.checkpoint_sha256,
                            "model_version": str(segmenter.config.version), "device": str(segmenter.device),
                            "runtime": segmenter.runtime,
                            "timings_s": {k: round(float(v), 3) for k, v in result.timings_s.items()}}
    calibrator = None
    notes: list[str] = []
    if confidence:
        directory = getattr(segmenter, "directory", None)
        if directory is None and getattr(segmenter, "checkpoint", None) is not None:
            directory = segmenter.checkpoint.directory
        calibrator = Calibrator.for_checkpoint(directory)
        fitted_for = None if calibrator is None else calibrator.fitted_on.get("checkpoint_sha256")
        if calibrator is not None and fitted_for != segmenter.checkpoint_sha256:
            calibrator = None  # fitted for other weights: its probabilities would mean nothing here
            notes.append("the checkpoint's confidence.json was fitted for other weights (model.pt changed): "
                         "lesion confidence is not calibrated")
        info["confidence"] = {"passes": 2 if result.evidence is not None else 1,
                              "test_time_augmentation": "the input as given and mirrored left-right",
                              "calibrated": calibrator is not None,
                              "calibrated_on": None if calibrator is None else calibrator.fitted_on.get("summary")}
    return NetworkRun(result.labels, info, [*result.notes, *notes], result.evidence, calibrator)


def analyze(study: Study | StudyRequest | str | Path, labels: LabelImage | str | Path | None = None,
            config: AnalysisConfig | str | Path | None = None, lowest_level: str | None = None,
            model: str | Path | None = None, register: str = "auto", device: str = "auto",
            lumbar_count: int | None = None, confidence: bool = True,
            thoracic_count: int | None = None) -> Report:
    """Analyse a study: segmentation (or the given label map), levels, lesions, types, measures.

    ``study``: a :class:`~modicseg.io.study.Study`, a :class:`~modicseg.io.study.StudyRequest`, or
    a DICOM / BIDS-like NIfTI folder.  Its fluid-sensitive image is a T2, or a STIR / fat-suppressed
    T2 when there is no T2: lesions are then typed with ``typing.stir_bands``.  ``labels``: a label
    map (LabelImage or NIfTI path; 0 background, 1 body, 2 disc, 3 lesion) to analyse instead of
    running the network.
    ``lowest_level``: name of the lowest vertebra in view (default from the config: S1).
    ``lumbar_count``: 4, 5 or 6 lumbar vertebrae when counting up from S1 (default from the config: 5);
    ``thoracic_count``: 12 or 13 thoracic vertebrae (13: a T13 between T12 and L1; default from the config: 12).
    ``model``: a checkpoint folder for the network (default: the shipped model); ``device``:
    "auto", "cpu" or "cuda".  ``confidence``: give every lesion the probability that it is real (a second,
    mirrored network pass; ``analysis.confidence``) and write the uncertainty map.
    Write the files with :func:`modicseg.report.writers.write_report`.
    """
    started = time.perf_counter()
    cfg = as_config(config)
    prepared = prepare_study(study, register=register)
    notes = prepared.notes
    loaded = time.perf_counter()
    evidence, calibrator = None, None
    if labels is not None:
        label_image = load_labels(labels, prepared.grid, notes)
        segmentation: dict[str, Any] = {"source": "labels given", "checkpoint_sha256": None}
    else:
        run = run_network(prepared.t1, prepared.t2, model, device, confidence=confidence)
        segmentation, evidence, calibrator = run.info, run.evidence, run.calibrator
        notes.extend(n for n in run.notes if n not in notes)
        label_image = load_labels(run.labels, prepared.grid, notes)
    segmented = time.perf_counter()
    report = analyze_study(prepared, label_image, segmentation, cfg, lowest_level=lowest_level,
                           lumbar_count=lumbar_count, thoracic_count=thoracic_count, evidence=evidence,
                           calibrator=calibrator)
    report.timings_s.update({"load_s": loaded - started, "segment_s": segmented - loaded,
                             "total_s": time.perf_counter() - started})
    return report
