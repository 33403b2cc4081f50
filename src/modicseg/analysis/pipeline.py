"""``analyze``: a study (and optionally its label map) in, a :class:`Report` out."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modicseg import __version__
from modicseg.analysis import geometry as geo
from modicseg.analysis.config import AnalysisConfig, VertebraConfig, load_config
from modicseg.analysis.eligibility import assess
from modicseg.analysis.lesions import find_lesions
from modicseg.analysis.levels import name_levels, parse_level
from modicseg.analysis.measures import measure_lesion
from modicseg.analysis.modic_typing import (
    UNCLASSIFIED_CODE,
    lesion_type,
    reference_marrow,
    type_lesion_voxels,
    unclassified_type,
)
from modicseg.analysis.result import LesionRecord, Report, VertebraRecord
from modicseg.analysis.vertebrae import BODY, LESION, VertebraSet, find_vertebrae, splitting_discs
from modicseg.core.convert import load_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.resample import resample_to
from modicseg.io.errors import InputError, ModicsegError, SelectionError
from modicseg.io.study import Study, StudyRequest, open_study, t1_on_t2_grid

log = logging.getLogger(__name__)

LABEL_VALUES = (0, 1, 2, 3)


class ModelUnavailableError(ModicsegError):
    """No segmentation model can be run: the user must pass a label map."""


def _as_study(study: Study | StudyRequest | str | Path) -> Study:
    if isinstance(study, Study):
        return study
    request = study if isinstance(study, StudyRequest) else StudyRequest(path=Path(study))
    return open_study(request, require=())


def _as_config(config: AnalysisConfig | str | Path | None) -> AnalysisConfig:
    if isinstance(config, AnalysisConfig):
        return config
    return load_config(config)


def _load_labels(labels: LabelImage | str | Path, grid: ScalarImage, notes: list[str]) -> LabelImage:
    if not isinstance(labels, LabelImage):
        path = Path(labels)
        if not path.is_file():
            raise InputError(f"{path}: label map not found")
        try:
            labels = load_nifti(path, LabelImage)  # type: ignore[assignment]
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: cannot read label map ({exc})") from None
    assert isinstance(labels, LabelImage)
    unexpected = np.setdiff1d(np.unique(labels.array), LABEL_VALUES)
    if unexpected.size:
        raise InputError(f"label map has values {unexpected.tolist()[:5]}; expected 0 background, "
                         "1 vertebral body, 2 disc, 3 lesion")
    if not labels.same_grid(grid):
        message = "label map is not on the reference grid: resampled (nearest neighbour) onto it"
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        labels = resample_to(labels, grid)
    return LabelImage(labels.array.astype(np.uint8), grid.affine.copy(), grid.provenance.replace(
        source_format="derived", series_description="modicseg labels"))


def _run_network(t1: ScalarImage | None, t2: ScalarImage | None, model: str | Path | None,
                 device: str) -> tuple[LabelImage, dict[str, Any], list[str]]:
    """Segment with the model stage's ``Segmenter``; ModelUnavailableError when there is no model."""
    try:
        from modicseg.model.inference import Segmenter
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("modicseg.model"):
            raise ModelUnavailableError("no segmentation model available; pass --labels FILE "
                                        "(a label map: 0 background, 1 body, 2 disc, 3 lesion)") from None
        raise
    try:
        segmenter = Segmenter.load(model, device=device)
    except InputError as exc:
        if model is not None:
            raise
        raise ModelUnavailableError(f"{exc}; or pass --labels FILE to analyse a label map") from None
    result = segmenter.segment_detailed(t1=t1, t2=t2)
    info = {"source": "network", "checkpoint_sha256": segmenter.checkpoint_sha256,
            "model_version": str(segmenter.config.version), "device": str(segmenter.device),
            "timings_s": {k: round(float(v), 3) for k, v in result.timings_s.items()}}
    return result.labels, info, list(result.notes)


def _series_summary(image: ScalarImage | None) -> dict[str, Any] | None:
    if image is None:
        return None
    p = image.provenance
    return {"series_number": p.series_number, "series_description": p.series_description,
            "series_instance_uid": p.series_instance_uid, "weighting": p.weighting,
            "source_format": p.source_format, "shape": list(image.shape),
            "voxel_size_mm": [round(float(v), 4) for v in image.spacing],
            "orientation": "".join(image.axcodes)}


def _reference_stack(study: Study, role: str) -> Any:
    if study.scan is None:
        return None
    return next((s for s in study.scan.stacks if s.role == role), None)


def analyze(study: Study | StudyRequest | str | Path, labels: LabelImage | str | Path | None = None,
            config: AnalysisConfig | str | Path | None = None, lowest_level: str | None = None,
            model: str | Path | None = None, register: str = "auto", device: str = "auto",
            lumbar_count: int | None = None) -> Report:
    """Analyse a study: segmentation (or the given label map), levels, lesions, types, measures.

    ``study``: a :class:`~modicseg.io.study.Study`, a :class:`~modicseg.io.study.StudyRequest`, or
    a DICOM / BIDS-like NIfTI folder.  ``labels``: a label map (LabelImage or NIfTI path; 0
    background, 1 body, 2 disc, 3 lesion) to analyse instead of running the network.
    ``lowest_level``: name of the lowest vertebra in view (default from the config: S1).
    ``lumbar_count``: 4, 5 or 6 lumbar vertebrae when counting up from S1 (default from the config: 5).
    ``model``: a checkpoint folder for the network (default: the shipped model); ``device``:
    "auto", "cpu" or "cuda".
    """
    started = time.perf_counter()
    cfg = _as_config(config)
    opened = _as_study(study)
    if opened.t1 is None and opened.t2 is None:
        raise SelectionError("no T1 or T2 image found in the study")
    notes: list[str] = list(opened.warnings)
    if opened.t1 is not None and opened.t2 is not None:
        t1, t2 = t1_on_t2_grid(opened, register=register)
        grid: ScalarImage = t2
    else:
        t1, t2 = opened.t1, opened.t2
        grid = t2 if t2 is not None else t1  # type: ignore[assignment]
    reference_role = "t2" if t2 is not None else "t1"
    loaded = time.perf_counter()
    if labels is not None:
        label_image = _load_labels(labels, grid, notes)
        segmentation = {"source": "labels given", "checkpoint_sha256": None}
    else:
        label_image, segmentation, model_notes = _run_network(t1, t2, model, device)
        notes.extend(n for n in model_notes if n not in notes)
        label_image = _load_labels(label_image, grid, notes)
    segmented = time.perf_counter()
    provenance = {
        "tool": "modicseg", "version": __version__, "segmentation": segmentation,
        "source_format": opened.source, "reference_grid": reference_role,
        "series": {"t1": _series_summary(opened.t1), "t2": _series_summary(opened.t2)},
        "t1_resampled_onto_t2": bool(opened.t1 is not None and opened.t2 is not None),
    }
    report = analyze_images(label_image, t1=t1, t2=t2, config=cfg, lowest_level=lowest_level,
                            provenance=provenance, notes=notes, lumbar_count=lumbar_count)
    report.reference_stack = _reference_stack(opened, reference_role)
    report.timings_s.update({"load_s": loaded - started, "segment_s": segmented - loaded,
                             "total_s": time.perf_counter() - started})
    return report


def _check_sacrum(vset: VertebraSet, lowest: str, overridden: bool, config: VertebraConfig) -> list[str]:
    """Warnings when the lowest body is probably not the level it is named after.

    Only discs of a normal size count: a small disc under S1 is the rudimentary S1-S2 disc of the sacrum.
    """
    if not vset.vertebrae:
        return []
    last = vset.vertebrae[-1]
    notes = []
    for disc in splitting_discs(vset.discs, config):
        t = float((disc.centre_ras - last.centre_ras) @ last.axis_ras)
        if t < last.inferior_mm and np.linalg.norm(disc.centre_ras - last.centre_ras) < 2.5 * last.height_mm + 10:
            notes.append(f"a disc lies below the lowest vertebra, named {lowest}: the sacrum may be outside the "
                         "field of view (set --lowest-level if the names are wrong)")
            break
    above = vset.vertebrae[-2].volume_mm3 if len(vset.vertebrae) > 1 else np.inf
    if last.truncated and not overridden and last.volume_mm3 < 0.6 * above:
        notes.append(f"the lowest vertebra, named {lowest}, is cut by the edge of the field of view "
                     "(set --lowest-level if the names are wrong)")
    return notes


def _depth_inside(instances: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel to the outside of its own vertebral body (0 outside bodies)."""
    spacing = geo.spacing_of(affine)
    depth = np.zeros(instances.shape, dtype=np.float32)
    for label in np.unique(instances[instances > 0]):
        body = instances == label
        box = geo.bounding_box(body, pad=1)
        inside = geo.distance_inside_mm(body[box], spacing)
        depth[box][body[box]] = inside[body[box]]
    return depth


def analyze_images(labels: LabelImage, t1: ScalarImage | None = None, t2: ScalarImage | None = None,
                   config: AnalysisConfig | None = None, lowest_level: str | None = None,
                   provenance: dict[str, Any] | None = None, notes: list[str] | None = None,
                   lumbar_count: int | None = None) -> Report:
    """Analyse a label map with T1 and/or T2 already on its grid (no study loading, no network)."""
    started = time.perf_counter()
    cfg = config or AnalysisConfig()
    notes = list(notes or [])
    for name, image in (("T1", t1), ("T2", t2)):
        if image is not None and not image.same_grid(labels):
            raise InputError(f"{name} is not on the label map's grid")
    affine = labels.affine
    array = np.asarray(labels.array)
    lowest = parse_level(lowest_level or cfg.vertebrae.lowest_level)

    vset = find_vertebrae(array, affine, cfg.vertebrae)
    notes.extend(vset.warnings)
    lumbar = int(lumbar_count or cfg.vertebrae.lumbar_count)
    names = name_levels(len(vset.vertebrae), lowest, lumbar)
    if lumbar != 5:
        notes.append(f"levels named for a spine with {lumbar} lumbar vertebrae, counted up from {lowest}")
    for vertebra, name in zip(vset.vertebrae, names, strict=True):
        vertebra.level = name
    notes.extend(_check_sacrum(vset, lowest, lowest_level is not None, cfg.vertebrae))
    if not vset.vertebrae:
        notes.append("no vertebral body found in the label map")

    lset = find_lesions(array, affine, vset, cfg.lesions)
    notes.extend(lset.warnings)
    lesion_mask = lset.lesion_map > 0

    typing_possible = t1 is not None and t2 is not None
    if typing_possible:
        typing_info: dict[str, Any] = {"possible": True, "reason": None}
    else:
        have = "T1" if t1 is not None else "T2"
        typing_info = {"possible": False,
                       "reason": f"only {have} available: Modic typing needs both T1 and T2"}
    typing_info["method"] = ("per-voxel T1 and T2 ratios to the median of normal-appearing marrow of the same "
                             "vertebra, classified by the configured bands")
    t1_array = None if t1 is None else np.asarray(t1.array, dtype=np.float32)
    t2_array = None if t2 is None else np.asarray(t2.array, dtype=np.float32)
    refs = reference_marrow(t1_array, t2_array, vset, lesion_mask, affine, cfg.typing)

    types = np.zeros(array.shape, dtype=np.uint8)
    lesion_records = []
    depth = _depth_inside(vset.instances, affine) if (typing_possible and lset.lesions) else None
    for lesion in lset.lesions:
        vertebra = vset.by_label(lesion.vertebra)
        if typing_possible:
            lesion_depth = None if depth is None else depth[tuple(lesion.ijk.T)]
            codes = type_lesion_voxels(t1_array, t2_array, lesion.ijk, refs[lesion.vertebra], cfg.typing,
                                       lesion_depth, affine)
            ltype = lesion_type(codes, cfg.typing)
        else:
            codes = np.full(len(lesion.ijk), UNCLASSIFIED_CODE, dtype=np.uint8)
            ltype = unclassified_type()
        types[tuple(lesion.ijk.T)] = codes
        m = measure_lesion(lesion, vertebra, cfg.grading)
        lesion_records.append(LesionRecord(
            id=lesion.id, level=vertebra.level, vertebra=vertebra.label, endplate=lesion.endplate,
            type=ltype.type, primary_type=ltype.primary_type, secondary_type=ltype.secondary_type,
            type_fractions=ltype.type_fractions, unclassified_fraction=ltype.unclassified_fraction,
            volume_mm3=m.volume_mm3, fraction_of_vertebral_volume=m.fraction_of_vertebral_volume,
            craniocaudal_extent_mm=m.craniocaudal_extent_mm, height_fraction=m.height_fraction,
            ap_depth_mm=m.ap_depth_mm, ap_depth_fraction=m.ap_depth_fraction, extent_grade=m.extent_grade,
            centre_ras=lesion.centre_ras.tolist(), voxels=len(lesion.ijk)))

    vertebra_records = []
    for v in vset.vertebrae:
        ref = refs.get(v.label)
        vertebra_records.append(VertebraRecord(
            label=v.label, level=v.level, height_mm=v.height_mm, volume_mm3=v.volume_mm3,
            ap_depth_mm=v.ap_depth_mm, centre_ras=v.centre_ras.tolist(), axis_ras=v.axis_ras.tolist(),
            truncated=v.truncated, axis_method=v.axis_method,
            reference_t1=None if ref is None else ref.t1, reference_t2=None if ref is None else ref.t2,
            reference_voxels=0 if ref is None else ref.voxels, reference_method="none" if ref is None else ref.method))
    if typing_possible and any(r.reference_voxels == 0 for r in vertebra_records):
        notes.append("some vertebrae had no normal-appearing marrow to use as reference: "
                     "see vertebrae[].reference_method")

    eligibility = assess(lesion_records, cfg.eligibility, typing_possible, typing_info.get("reason"))

    # the analysed label map: lesion voxels that were dropped become body voxels
    out_labels = array.astype(np.uint8).copy()
    out_labels[(out_labels == LESION) & ~lesion_mask] = BODY
    geometry = {"shape": list(labels.shape), "voxel_size_mm": [round(float(v), 4) for v in geo.spacing_of(affine)],
                "orientation": "".join(labels.axcodes), "affine_ras": np.round(affine, 6).tolist()}
    prov = dict(provenance or {"tool": "modicseg", "version": __version__,
                               "segmentation": {"source": "labels given", "checkpoint_sha256": None}})
    prov["grid"] = geometry
    report = Report(
        vertebrae=vertebra_records, lesions=lesion_records, eligibility=eligibility, typing=typing_info,
        provenance=prov, config=cfg,
        labels=LabelImage(out_labels, affine.copy(), labels.provenance),
        types=LabelImage(types, affine.copy(), labels.provenance.replace(series_description="modicseg Modic types")),
        lesion_map=lset.lesion_map, instances=vset.instances, t1=t1, t2=t2, warnings=notes)
    report.timings_s["analysis_s"] = time.perf_counter() - started
    return report
