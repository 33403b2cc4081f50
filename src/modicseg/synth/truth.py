"""The ground-truth dictionary written as ``truth.json`` next to a case's images.

All positions and directions are scanner RAS+ mm (the images' world space).  Volumes, extents
and fractions come from the continuous model (``lesions.Lesion.measure``, exact column
integration), never from voxel counts.  Patient identifiers are never written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.labels import LABEL_NAMES
from modicseg.core.version import __version__
from modicseg.synth import tissues as tis
from modicseg.synth.lesions import TRIAL_HEIGHT_FRACTION
from modicseg.synth.scene import Scene, SynthCase

SCHEMA_VERSION = "1.0"
NIFTI_FILES = {
    "T1": "nifti/{subject}_T1w.nii.gz",
    "T2": "nifti/{subject}_T2w.nii.gz",
    "labels": "nifti/labels.nii.gz",
    "types": "nifti/types.nii.gz",
    "instances": "nifti/vertebrae.nii.gz",
}


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _point(m: np.ndarray, p: np.ndarray) -> list[float]:
    return [_r(v) for v in m[:3, :3] @ p + m[:3, 3]]


def _direction(m: np.ndarray, d: np.ndarray) -> list[float]:
    v = m[:3, :3] @ d
    return [_r(x, 6) for x in v / np.linalg.norm(v)]


def vertebra_entries(scene: Scene) -> list[dict[str, Any]]:
    """One entry per labelled vertebral body (T10..S1), top to bottom."""
    spine, m = scene.spine, scene.subject_to_scanner
    scope = set(spine.levels_in_scope)
    out = []
    for v in spine.bodies:
        out.append({
            "level": v.level,
            "instance_label": v.index + 1,
            "in_scope": v.level in scope,
            "height_mm": _r(v.centre_height),
            "volume_mm3": _r(v.volume_mm3(), 1),
            "depth_mm": _r(v.depth),
            "width_mm": _r(v.width),
            "endplate_concavity_mm": _r(v.concavity),
            "wedge_fraction": _r(v.wedge),
            "fractured": bool(v.wedge > 0),
            "centre_ras": _point(m, v.centre),
            "axis_ras": _direction(m, v.axis),
            "anterior_ras": _direction(m, v.rotation[:, 1]),
        })
    return out


def disc_entries(scene: Scene) -> list[dict[str, Any]]:
    m = scene.subject_to_scanner
    return [{
        "name": d.name, "upper": d.upper.level, "lower": d.lower.level,
        "height_mm": _r(d.height), "wedge_deg": _r(d.wedge_deg, 3), "degeneration_grade": int(d.grade),
        "centre_ras": _point(m, d.centre),
    } for d in scene.spine.anatomical_discs]


def lesion_entries(scene: Scene) -> list[dict[str, Any]]:
    """One entry per lesion with its measured (continuous) size and its drawn signal ratios."""
    m = scene.subject_to_scanner
    scope = set(scene.spine.levels_in_scope)
    out = []
    for lesion in scene.lesions:
        vertebra = scene.spine.vertebra(lesion.level)
        size = lesion.measure(vertebra)
        fractions = {k: _r(v, 5) for k, v in size["type_fractions"].items()}  # type: ignore[union-attr]
        has_type1 = lesion.primary == 1 or lesion.secondary == 1
        z = np.zeros(1)
        w = float(vertebra.endplate(lesion.endplate, z + lesion.u0, z + lesion.v0)[0])
        out.append({
            "id": lesion.id,
            "level": lesion.level,
            "endplate": lesion.endplate,
            "type": lesion.type_code,
            "primary_type": lesion.primary,
            "secondary_type": lesion.secondary,
            "type_fractions": fractions,
            "volume_mm3": _r(size["volume_mm3"], 2),  # type: ignore[arg-type]
            "craniocaudal_extent_mm": _r(size["craniocaudal_extent_mm"]),  # type: ignore[arg-type]
            "height_fraction": _r(size["height_fraction"], 5),  # type: ignore[arg-type]
            "ap_depth_fraction": _r(size["ap_depth_fraction"], 5),  # type: ignore[arg-type]
            "endplate_area_mm2": _r(size["endplate_area_mm2"], 2),  # type: ignore[arg-type]
            "endplate_area_fraction": _r(size["endplate_area_fraction"], 5),  # type: ignore[arg-type]
            "meets_trial_size": bool(size["height_fraction"] >= TRIAL_HEIGHT_FRACTION),  # type: ignore[operator]
            "trial_eligible": bool(size["height_fraction"] >= TRIAL_HEIGHT_FRACTION  # type: ignore[operator]
                                   and has_type1 and lesion.level in scope),
            "signal_ratio_to_marrow": {("primary" if p == "0" else "secondary"): {k: _r(v) for k, v in r.items()}
                                       for p, r in lesion.ratios.items()},
            "footprint_centre_ras": _point(m, vertebra.to_subject(np.array([[lesion.u0, lesion.v0, w]]))[0]),
            "tissue_ids": [tis.lesion_part_id(lesion.index, p) for p in ((0, 1) if lesion.secondary else (0,))],
        })
    return out


def build_truth(case: SynthCase) -> dict[str, Any]:
    """The truth dictionary of a case (deterministic for a seed: no UIDs, no dates, no names)."""
    scene, acq = case.scene, case.acquisition
    spine, app = scene.spine, scene.appearance
    subject = subject_name(case.case_id)
    files = {k: v.format(subject=subject) for k, v in NIFTI_FILES.items()}
    if case.extra_maps:
        files.update({k: f"nifti/{k.replace('instances', 'vertebrae')}.nii.gz" for k in case.extra_maps})
    lumbar = [v.level for v in spine.bodies if v.level.startswith("L")]
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "modicseg.synth", "version": __version__},
        "case_id": case.case_id,
        "seed": case.seed,
        "world": "scanner RAS+ mm (x right, y anterior, z superior); same as the NIfTI affines",
        "parameters": {
            "lumbar_count": spine.lumbar_count,
            "lumbar_levels": lumbar,
            "transitional": spine.lumbar_count != 5,
            "fracture_level": spine.fracture_level,
            "lordosis_l1_s1_deg": _r(spine.lordosis_deg(), 3),
            "sacral_slope_deg": _r(spine.sacral_slope_deg, 3),
            "subject_to_scanner": np.round(scene.subject_to_scanner, 6).tolist(),
            "acquisition": {
                "inplane_mm": _r(case.grids["T2"].spacing[0]), "slice_thickness_mm": _r(acq.thickness),
                "slice_gap_mm": _r(acq.gap), "slice_step_mm": _r(case.grids["T2"].spacing[2]),
                "n_slices": case.grids["T2"].shape[2], "t1_separate_grid": case.grids["T1"] is not case.grids["T2"],
            },
            "sequences": {k: {"repetition_time_ms": s.tr, "echo_time_ms": s.te, "series_description": s.description}
                          for k, s in app.sequences.items()},
            "snr": {k: _r(v, 3) for k, v in app.snr.items()},
            "rescale": {k: (list(v) if v else None) for k, v in case.rescale.items()},
            "physical_contrast": app.physical,
            "label_rule": "centre point: a voxel takes the tissue at its centre; signal averages "
                          "sub-samples spread over the slice thickness (partial volume)",
        },
        "grids": {k: g.to_dict() for k, g in case.grids.items()},
        "label_grid": "T2",
        "files": files,
        "label_values": {str(k): v for k, v in LABEL_NAMES.items()},
        "type_values": {"0": "none", "1": "Modic 1", "2": "Modic 2", "3": "Modic 3"},
        "signal_bands": {str(t): {ch: list(b) for ch, b in bands.items()}
                         for t, bands in tis.TYPE_SIGNAL_BANDS.items()},
        "levels_in_scope": spine.levels_in_scope,
        "vertebrae": vertebra_entries(scene),
        "discs": disc_entries(scene),
        "lesions": lesion_entries(scene),
    }


def subject_name(case_id: str) -> str:
    """BIDS-like subject label used in file names (never a patient identifier)."""
    return "sub-" + "".join(ch for ch in case_id if ch.isalnum())


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=_default) + "\n")
    return path


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
