"""The analysis stage: a label map with T1/T2 on its grid in, a :class:`Report` out (``analyze_images``).

Also the analysis-side steps of a whole study that ``modicseg.pipeline.analyze`` composes with the
network: ``prepare_study`` (images on the reference grid), ``load_labels`` (a label map checked and
put on that grid) and ``analyze_study``.  Nothing here runs the network.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from modicseg.analysis import geometry as geo
from modicseg.analysis.confidence import (
    UNCALIBRATED_NOTE,
    Calibrator,
    lesion_confidence,
    lesion_inputs,
    signal_contrast,
    unreported_lesion_evidence,
)
from modicseg.analysis.config import AnalysisConfig, VertebraConfig, load_config
from modicseg.analysis.eligibility import assess, is_borderline
from modicseg.analysis.lesion_screening import screen_lesions
from modicseg.analysis.lesions import find_lesions
from modicseg.analysis.levels import name_levels, parse_level
from modicseg.analysis.measures import measure_lesion
from modicseg.analysis.modic_typing import (
    lesion_type,
    reference_marrow,
    type_lesion_voxels,
    unclassified_type,
)
from modicseg.analysis.result import LesionRecord, Report, VertebraRecord
from modicseg.analysis.vertebrae import VertebraSet, find_vertebrae, splitting_discs
from modicseg.core.convert import from_nibabel
from modicseg.core.evidence import NetworkEvidence
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import BODY, LABEL_MEANING, LABEL_VALUES, LESION, UNCLASSIFIED_CODE
from modicseg.core.resample import resample_to
from modicseg.core.version import __version__
from modicseg.io.classify import fluid_contrast as fluid_contrast_of
from modicseg.io.errors import InputError, SelectionError
from modicseg.io.study import (
    Study,
    StudyRequest,
    no_image_error,
    open_study,
    refused_candidates,
    t1_on_t2_grid,
)

log = logging.getLogger(__name__)


def as_study(study: Study | StudyRequest | str | Path) -> Study:
    if isinstance(study, Study):
        return study
    request = study if isinstance(study, StudyRequest) else StudyRequest(path=Path(study))
    return open_study(request, require=())


def as_config(config: AnalysisConfig | str | Path | None) -> AnalysisConfig:
    if isinstance(config, AnalysisConfig):
        return config
    return load_config(config)


#: Share of a given label map's labelled voxels that must lie inside the image it is analysed with.
MIN_LABELS_INSIDE = 0.95


def _read_label_file(path: Path) -> LabelImage:
    """A label map file as a LabelImage; InputError naming the file for anything unreadable."""
    import nibabel as nib

    from modicseg.io.integrity import check_nifti
    from modicseg.io.nifti_input import require_nifti

    if not path.exists():
        raise InputError(f"{path}: label map not found")
    if not path.is_file():
        raise InputError(f"{path}: label map is not a regular file")
    try:
        loaded = nib.load(str(path))
    except Exception as exc:  # not NIfTI, not gzip, truncated header: nibabel raises many kinds
        raise InputError(f"{path}: cannot read label map: not a readable NIfTI file "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    nii = require_nifti(loaded, path, "label map")  # MGH/MGZ, Analyze ...: refused with what the file is
    if len(nii.shape) not in (3, 4) or (len(nii.shape) == 4 and nii.shape[3] != 1):
        raise InputError(f"{path}: label map is not a 3-D image (shape {nii.shape})")
    check_nifti(nii, path)
    try:
        array = np.asanyarray(nii.dataobj)
    except MemoryError:
        raise
    except Exception as exc:  # corrupt gzip stream, truncated data
        raise InputError(f"{path}: cannot read label map voxels ({type(exc).__name__}: {exc})") from None
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"{path}: label map holds non-finite values (NaN or Inf); expected {LABEL_MEANING}")
        fractional = array[array != np.rint(array)]
        if fractional.size:
            raise InputError(f"{path}: label map holds non-integer values (e.g. {float(fractional.flat[0]):g}); "
                             f"expected {LABEL_MEANING}")
    return from_nibabel(nii, kind=LabelImage)


def _labelled_share_inside(labels: LabelImage, grid: ScalarImage) -> tuple[float, float]:
    """(share of labelled voxels whose centre lies inside ``grid``'s image, distance (mm) from the
    centre of the labelled voxels to the nearest point of the image)."""
    ijk = np.argwhere(np.asarray(labels.array) > 0)
    if len(ijk) > 200_000:  # a regular subsample is exact enough for a share
        ijk = ijk[:: len(ijk) // 200_000 + 1]
    world = ijk @ labels.affine[:3, :3].T + labels.affine[:3, 3]
    inverse = np.linalg.inv(grid.affine)
    index = world @ inverse[:3, :3].T + inverse[:3, 3]
    shape = np.asarray(grid.shape, dtype=np.float64)
    inside = np.all((index >= -0.5) & (index <= shape - 0.5), axis=1)
    centre = world.mean(axis=0)
    corners = np.array([[a, b, c] for a in (-0.5, shape[0] - 0.5) for b in (-0.5, shape[1] - 0.5)
                        for c in (-0.5, shape[2] - 0.5)])
    centre_index = inverse[:3, :3] @ centre + inverse[:3, 3]
    nearest = np.clip(centre_index, corners.min(axis=0), corners.max(axis=0))
    distance = float(np.linalg.norm(grid.affine[:3, :3] @ (centre_index - nearest)))
    return float(inside.mean()), distance


def load_labels(labels: LabelImage | str | Path, grid: ScalarImage, notes: list[str]) -> LabelImage:
    """A label map (LabelImage or NIfTI path) checked and put on ``grid`` (resampled, nearest neighbour, with a
    note appended to ``notes``); InputError naming the file for values other than 0-3, an empty file, or a map
    that does not cover the image."""
    given = not isinstance(labels, LabelImage)
    where = f"{Path(labels)}" if given else "label map"  # type: ignore[arg-type]
    if given:
        labels = _read_label_file(Path(labels))  # type: ignore[arg-type]
    assert isinstance(labels, LabelImage)
    values = np.unique(labels.array)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise InputError(f"{where}: label map holds non-finite values (NaN or Inf); expected {LABEL_MEANING}")
    unexpected = np.setdiff1d(values, LABEL_VALUES)
    if unexpected.size:
        raise InputError(f"{where}: label map has values {unexpected.tolist()[:5]}; expected {LABEL_MEANING}")
    if given and values.max(initial=0) == 0:
        raise InputError(f"{where}: label map is empty (no labelled voxel): nothing to analyse")
    if given and not labels.same_grid(grid):
        share, distance = _labelled_share_inside(labels, grid)
        if share < MIN_LABELS_INSIDE:
            where_lies = (f"its labelled voxels lie {distance:.0f} mm from the image" if share == 0
                          else f"only {100 * share:.1f} % of its labelled voxels lie inside the image")
            raise InputError(f"{where}: label map does not cover the image it is analysed with: {where_lies} "
                             "(wrong file, or a wrong affine?)")
    if not labels.same_grid(grid):
        message = "label map is not on the reference grid: resampled (nearest neighbour) onto it"
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        labels = resample_to(labels, grid)
    return LabelImage(labels.array.astype(np.uint8), grid.affine.copy(), grid.provenance.replace(
        source_format="derived", series_description="modicseg labels"))


def _series_summary(image: ScalarImage | None) -> dict[str, Any] | None:
    if image is None:
        return None
    p = image.provenance
    return {"series_number": p.series_number, "series_description": p.series_description,
            "series_instance_uid": p.series_instance_uid, "weighting": p.weighting,
            "source_format": p.source_format, "shape": list(image.shape),
            "voxel_size_mm": [round(float(v), 4) for v in image.spacing],
            "orientation": "".join(image.axcodes)}


def _refused_series(study: Study) -> list[dict[str, Any]]:
    """Every refused stack of a DICOM study and why; ``instead_of`` names the role it would have filled."""
    if study.scan is None:
        return []
    chosen = {role: next((s for s in study.scan.stacks if s.role == role), None) for role in ("t1", "t2")}
    candidates = {id(s): role for role in ("t1", "t2")
                  for s in refused_candidates(study.scan.stacks, role, chosen[role])}
    root = f"{study.scan.root}{os.sep}"  # files named relative to the study folder: no full paths in the report
    return [{"series": s.name, "series_number": s.series_number, "series_description": s.series_description,
             "plane": s.plane, "weighting": s.weighting, "n_images": s.n_slices,
             "refusal": (s.refusal or "").replace(root, ""),
             "instead_of": candidates.get(id(s))}
            for s in study.scan.stacks if not s.usable]


def _reference_stack(study: Study, role: str) -> Any:
    if study.scan is None:
        return None
    return next((s for s in study.scan.stacks if s.role == role), None)


@dataclass
class PreparedStudy:
    """A study's T1 and T2 on the reference grid (the T2's, else the T1's), ready for a label map."""

    study: Study
    t1: ScalarImage | None
    t2: ScalarImage | None
    grid: ScalarImage
    reference_role: str  # "t2" or "t1"
    notes: list[str] = field(default_factory=list)  # the study's warnings, then what later steps add


def prepare_study(study: Study | StudyRequest | str | Path, register: str = "auto") -> PreparedStudy:
    """Open ``study`` (a :class:`~modicseg.io.study.Study`, a :class:`~modicseg.io.study.StudyRequest`, or
    a DICOM / BIDS-like NIfTI folder) and put its T1 on its T2's grid (``register``: see
    :func:`~modicseg.io.study.t1_on_t2_grid`)."""
    opened = as_study(study)
    if opened.t1 is None and opened.t2 is None:
        if opened.scan is not None:
            raise no_image_error(opened.scan)
        raise SelectionError("no T1 or T2 image given (--t1 FILE, --t2 FILE)")
    notes: list[str] = list(opened.warnings)
    t1: ScalarImage | None
    t2: ScalarImage | None
    if opened.t1 is not None and opened.t2 is not None:
        t1, t2 = t1_on_t2_grid(opened, register=register)
        grid: ScalarImage = t2
    else:
        t1, t2 = opened.t1, opened.t2
        either = t2 if t2 is not None else t1
        assert either is not None  # refused above when neither is given
        grid = either
    reference_role = "t2" if t2 is not None else "t1"
    return PreparedStudy(opened, t1, t2, grid, reference_role, notes)


def analyze_study(prepared: PreparedStudy, label_image: LabelImage, segmentation: dict[str, Any],
                  config: AnalysisConfig, lowest_level: str | None = None,
                  lumbar_count: int | None = None, evidence: NetworkEvidence | None = None,
                  calibrator: Calibrator | None = None, thoracic_count: int | None = None) -> Report:
    """Analyse a prepared study's label map (already on its grid, see :func:`load_labels`); ``segmentation``
    says where the labels came from (``provenance.segmentation`` of the report); ``evidence`` and
    ``calibrator``: the network's maps and the checkpoint's confidence calibrator (lesion confidence)."""
    opened = prepared.study
    provenance = {
        "tool": "modicseg", "version": __version__, "segmentation": segmentation,
        "source_format": opened.source, "reference_grid": prepared.reference_role,
        "series": {"t1": _series_summary(opened.t1), "t2": _series_summary(opened.t2)},
        "series_choice": {role: reason for role, reason in opened.choice.items() if reason},
        "refused_series": _refused_series(opened),
        "t1_resampled_onto_t2": bool(opened.t1 is not None and opened.t2 is not None),
    }
    report = analyze_images(label_image, t1=prepared.t1, t2=prepared.t2, config=config, lowest_level=lowest_level,
                            provenance=provenance, notes=prepared.notes, lumbar_count=lumbar_count,
                            thoracic_count=thoracic_count, evidence=evidence, calibrator=calibrator)
    report.reference_stack = _reference_stack(opened, prepared.reference_role)
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
        reach_mm = config.sacrum_check_height_factor * last.height_mm + config.sacrum_check_margin_mm
        if t < last.inferior_mm and np.linalg.norm(disc.centre_ras - last.centre_ras) < reach_mm:
            notes.append(f"a disc lies below the lowest vertebra, named {lowest}: the sacrum may be outside the "
                         "field of view (set --lowest-level if the names are wrong)")
            break
    above = vset.vertebrae[-2].volume_mm3 if len(vset.vertebrae) > 1 else np.inf
    if last.truncated and not overridden and last.volume_mm3 < 0.6 * above:
        notes.append(f"the lowest vertebra, named {lowest}, is cut by the edge of the field of view "
                     "(set --lowest-level if the names are wrong)")
    return notes


def _depth_inside(instances: np.ndarray, affine: np.ndarray,
                  lesion_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distance (mm) of every voxel to the outside of its own vertebral body (0 outside bodies),
    flat index of the nearest voxel outside its body for each voxel of ``lesion_mask`` (-1 elsewhere;
    a lesion voxel outside every body is its own nearest outside voxel))."""
    spacing = geo.spacing_of(affine)
    depth = np.zeros(instances.shape, dtype=np.float32)
    outside = np.full(instances.shape, -1, dtype=np.int64)
    wanted = np.zeros(instances.shape, dtype=bool) if lesion_mask is None else lesion_mask
    for label in np.unique(instances[instances > 0]):
        body = instances == label
        box = geo.bounding_box(body, pad=1)
        body_box = body[box]
        padded = np.pad(body_box, 1, mode="edge")  # a body reaching the array's edge continues beyond it
        inside, nearest = ndimage.distance_transform_edt(padded, sampling=spacing, return_indices=True)
        inside = inside[1:-1, 1:-1, 1:-1]
        depth[box][body_box] = inside[body_box]
        want = body_box & wanted[box]
        if want.any():
            ijk = np.stack([np.clip(nearest[axis][1:-1, 1:-1, 1:-1][want] - 1 + box[axis].start, 0,
                                    instances.shape[axis] - 1) for axis in range(3)])
            outside[box][want] = np.ravel_multi_index(tuple(ijk), instances.shape)
    alone = wanted & (outside < 0)
    outside[alone] = np.flatnonzero(alone)
    return depth, outside


def analyze_images(labels: LabelImage, t1: ScalarImage | None = None, t2: ScalarImage | None = None,
                   config: AnalysisConfig | None = None, lowest_level: str | None = None,
                   provenance: dict[str, Any] | None = None, notes: list[str] | None = None,
                   lumbar_count: int | None = None, fluid_contrast: str | None = None,
                   evidence: NetworkEvidence | None = None, calibrator: Calibrator | None = None,
                   thoracic_count: int | None = None) -> Report:
    """Analyse a label map with T1 and/or T2 already on its grid (no study loading, no network).

    ``lumbar_count`` (4, 5, 6) and ``thoracic_count`` (12, 13): the spine's vertebrae as the reader counted
    them, for the names counted up from the lowest level (default from ``config.vertebrae``).

    ``t2`` is the fluid-sensitive image; ``fluid_contrast`` ("T2", "STIR" or "T2FS") says what it
    is (default: from its provenance's weighting, "T2" when that names none) and so which bands
    type the lesions: ``typing.bands`` for a T2, ``typing.stir_bands`` for a fat-suppressed image.
    ``evidence`` (the network's probability and uncertainty maps on this grid) gives every lesion a
    ``confidence``, through ``calibrator`` when given (``analysis.confidence``).
    """
    started = time.perf_counter()
    cfg = config or AnalysisConfig()
    notes = list(notes or [])
    for name, image in (("T1", t1), ("T2", t2)):
        if image is not None and not image.same_grid(labels):
            raise InputError(f"{name} is not on the label map's grid")
    if evidence is not None and not evidence.lesion_probability.same_grid(labels):
        raise InputError("the network's evidence maps are not on the label map's grid")
    if evidence is not None and calibrator is None:
        notes.append(UNCALIBRATED_NOTE)
    affine = labels.affine
    array = np.asarray(labels.array)
    lowest = parse_level(lowest_level or cfg.vertebrae.lowest_level)

    vset = find_vertebrae(array, affine, cfg.vertebrae)
    notes.extend(vset.warnings)
    lumbar = int(lumbar_count or cfg.vertebrae.lumbar_count)
    thoracic = int(thoracic_count or cfg.vertebrae.thoracic_count)
    names = name_levels(len(vset.vertebrae), lowest, lumbar, thoracic)
    if lumbar != 5:
        notes.append(f"levels named for a spine with {lumbar} lumbar vertebrae, counted up from {lowest}")
    if thoracic != 12:
        notes.append(f"levels named for a spine with {thoracic} thoracic vertebrae, counted up from {lowest}")
    for vertebra, level_name in zip(vset.vertebrae, names, strict=True):
        vertebra.level = level_name
    notes.extend(_check_sacrum(vset, lowest, lowest_level is not None, cfg.vertebrae))
    if not vset.vertebrae:
        notes.append("no vertebral body found in the label map")

    lset = find_lesions(array, affine, vset, cfg.lesions)
    notes.extend(lset.warnings)
    lesion_mask = lset.lesion_map > 0

    typing_possible = t1 is not None and t2 is not None
    fluid = None
    if t2 is not None:
        fluid = fluid_contrast_of(fluid_contrast or t2.provenance.weighting)
    bands_key, bands = cfg.typing.bands_for(fluid)
    if typing_possible:
        typing_info: dict[str, Any] = {"possible": True, "reason": None}
    else:
        have = "T1" if t1 is not None else fluid
        needs = "both T1 and T2" if fluid in (None, "T2") else "T1 as well as the fluid-sensitive image"
        typing_info = {"possible": False, "reason": f"only {have} available: Modic typing needs {needs}"}
    fluid_name = {"T2": "T2", "STIR": "STIR", "T2FS": "fat-suppressed T2", None: "T2"}[fluid]
    typing_info["method"] = (f"per-voxel T1 and {fluid_name} ratios to the median of normal-appearing marrow of "
                             f"the same vertebra, classified by the configured bands ({bands_key})")
    typing_info["fluid_contrast"] = fluid
    typing_info["bands"] = bands_key if typing_possible else None
    t1_array = None if t1 is None else np.asarray(t1.array, dtype=np.float32)
    t2_array = None if t2 is None else np.asarray(t2.array, dtype=np.float32)
    refs = reference_marrow(t1_array, t2_array, vset, lesion_mask, affine, cfg.typing)
    lset, screened = screen_lesions(lset, vset, refs, (t1_array, t2_array), bands, affine, cfg.lesions)
    notes.extend(screened)
    lesion_mask = lset.lesion_map > 0

    types = np.zeros(array.shape, dtype=np.uint8)
    lesion_records = []
    depth, outside = (_depth_inside(vset.instances, affine, lesion_mask) if (typing_possible and lset.lesions)
                      else (None, None))
    for lesion in lset.lesions:
        vertebra = vset.by_label(lesion.vertebra)
        if typing_possible:
            assert t1_array is not None and t2_array is not None  # typing_possible: both images given
            index = tuple(lesion.ijk.T)
            lesion_depth = None if depth is None else depth[index]
            outside_ijk = None if outside is None else np.stack(np.unravel_index(outside[index], array.shape), axis=1)
            codes = type_lesion_voxels(t1_array, t2_array, lesion.ijk, refs[lesion.vertebra], cfg.typing,
                                       lesion_depth, affine, bands=bands, outside_ijk=outside_ijk)
            ltype = lesion_type(codes, cfg.typing, lesion.ijk, affine, vertebra.axis_ras)
        else:
            codes = np.full(len(lesion.ijk), UNCLASSIFIED_CODE, dtype=np.uint8)
            ltype = unclassified_type()
        types[tuple(lesion.ijk.T)] = codes
        m = measure_lesion(lesion, vertebra, cfg.grading, affine)
        lesion_records.append(LesionRecord(
            id=lesion.id, level=vertebra.level, vertebra=vertebra.label, endplate=lesion.endplate,
            type=ltype.type, primary_type=ltype.primary_type, secondary_type=ltype.secondary_type,
            type_fractions=ltype.type_fractions, unclassified_fraction=ltype.unclassified_fraction,
            volume_mm3=m.volume_mm3, fraction_of_vertebral_volume=m.fraction_of_vertebral_volume,
            craniocaudal_extent_mm=m.craniocaudal_extent_mm, height_fraction=m.height_fraction,
            ap_depth_mm=m.ap_depth_mm, ap_depth_fraction=m.ap_depth_fraction, extent_grade=m.extent_grade,
            centre_ras=lesion.centre_ras.tolist(), voxels=len(lesion.ijk),
            extent_of_change_mm=m.extent_of_change_mm, extent_from_endplate_mm=m.extent_from_endplate_mm,
            height_fraction_uncertainty=m.height_fraction_uncertainty))
        lesion_records[-1].borderline = is_borderline(lesion_records[-1], cfg.eligibility)
        if evidence is not None:
            ref = refs.get(lesion.vertebra)
            contrast = signal_contrast([t1_array, t2_array], [None if ref is None else ref.t1,
                                                              None if ref is None else ref.t2], lesion.ijk)
            gap = (m.extent_from_endplate_mm or m.craniocaudal_extent_mm) - (m.extent_of_change_mm or 0.0)
            inputs = lesion_inputs(lesion.ijk, evidence, m.volume_mm3, contrast, gap)
            lesion_records[-1].confidence_inputs = inputs
            lesion_records[-1].confidence = lesion_confidence(inputs, calibrator)

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

    unreported = None
    if evidence is not None:
        unreported = unreported_lesion_evidence(evidence, lesion_mask, vset.instances > 0, labels.voxel_volume_mm3,
                                                cfg.lesions.min_volume_mm3)
    eligibility = assess(lesion_records, cfg.eligibility, typing_possible, typing_info.get("reason"),
                         unreported_evidence=unreported)

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
        lesion_map=lset.lesion_map, instances=vset.instances, t1=t1, t2=t2, warnings=notes,
        uncertainty=None if evidence is None else evidence.uncertainty, unreported_lesion_evidence=unreported)
    report.timings_s["analysis_s"] = time.perf_counter() - started
    return report
