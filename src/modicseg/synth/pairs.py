"""Longitudinal pairs: the same subject about a year later, repositioned, with evolving lesions.

The follow-up keeps the anatomy, tissue properties and protocol of the baseline; the patient lies
differently (new rigid subject -> scanner transform, so every scanner coordinate changes), the
technologist plans a new stack, and each lesion follows a natural-course fate: type 1 turns into
type 2 (~40 %), disappears (~15 %), grows or shrinks; occasionally a new lesion appears.
``pair_truth.json`` links baseline and follow-up lesions and records the transform that maps
baseline scanner coordinates onto follow-up scanner coordinates of the same anatomical point.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.synth.case import CaseOptions, case_from_scene, draw_scene
from modicseg.synth.grid import rotation_matrix
from modicseg.synth.lesions import Lesion, endplates_in_scope, evolve, make_lesion
from modicseg.synth.randomize import draw_acquisition, draw_appearance
from modicseg.synth.scene import Scene, SynthCase
from modicseg.synth.truth import SCHEMA_VERSION, write_json
from modicseg.synth.write import BASE_DATE, write_case

#: Fate probabilities by the lesion's primary type.
FATES: dict[int, dict[str, float]] = {
    1: {"type_change": 0.40, "disappeared": 0.15, "grown": 0.20, "shrunk": 0.10, "stable": 0.15},
    2: {"type_change": 0.08, "disappeared": 0.04, "grown": 0.18, "shrunk": 0.15, "stable": 0.55},
    3: {"type_change": 0.0, "disappeared": 0.02, "grown": 0.15, "shrunk": 0.13, "stable": 0.70},
}
NEW_LESION_PROBABILITY = 0.35


@dataclass
class SynthPair:
    """A baseline and a follow-up case of one subject, and the truth linking them."""

    baseline: SynthCase
    followup: SynthCase
    truth: dict[str, Any]


def _fate(rng: np.random.Generator, lesion: Lesion) -> str:
    table = FATES[lesion.primary]
    names = list(table)
    p = np.array([table[n] for n in names])
    return str(rng.choice(names, p=p / p.sum()))


def evolve_lesions(scene: Scene, rng: np.random.Generator,
                   fates: dict[str, str] | None = None) -> tuple[list[Lesion], list[dict[str, Any]]]:
    """Follow-up lesions (re-indexed) and the link records (without volumes)."""
    spine = scene.spine
    followup: list[Lesion] = []
    links: list[dict[str, Any]] = []
    for lesion in scene.lesions:
        fate = (fates or {}).get(lesion.id) or _fate(rng, lesion)
        new = evolve(lesion, spine.vertebra(lesion.level), rng, fate)
        if new is not None:
            new = replace(new, index=len(followup))
            followup.append(new)
        links.append({"baseline_id": lesion.id, "followup_id": None if new is None else new.id, "fate": fate})
    if rng.random() < NEW_LESION_PROBABILITY or (fates or {}).get("new") == "new":
        used = {(les.level, les.endplate) for les in scene.lesions}
        free = [(level, ep) for _, level, ep in endplates_in_scope(spine) if (level, ep) not in used]
        if free:
            level, endplate = free[int(rng.integers(len(free)))]
            code = str(rng.choice(["1", "1", "2", "1/2"]))
            new = make_lesion(rng, spine.vertebra(level), endplate, code, len(followup),
                              lesion_id=f"lesion-{len(scene.lesions):02d}")
            followup.append(new)
            links.append({"baseline_id": None, "followup_id": new.id, "fate": "new"})
    return followup, links


def reposition(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A new subject -> scanner transform: a few degrees and up to a few centimetres different."""
    ax, ay, az = (float(a) for a in np.asarray(scene.subject_angles_deg) + rng.normal(0.0, [3.0, 2.0, 2.0]))
    angles = (ax, ay, az)
    m = scene.subject_to_scanner.copy()
    m[:3, :3] = rotation_matrix(angles)
    m[:3, 3] = scene.subject_to_scanner[:3, 3] + rng.normal(0.0, [4.0, 8.0, 15.0])
    return m, angles


def generate_pair(seed: int, pair_id: str = "pair_0000", options: CaseOptions | None = None,
                  fates: dict[str, str] | None = None) -> SynthPair:
    """Baseline and follow-up of one synthetic subject (deterministic for a seed)."""
    options = options or CaseOptions()
    base_seed, follow_seed = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(base_seed)
    scene = draw_scene(rng, options)
    acq = draw_acquisition(rng, "realistic")
    baseline = case_from_scene(scene, acq, rng, f"{pair_id}_baseline", seed, options)

    rng_f = np.random.default_rng(follow_seed)
    lesions, links = evolve_lesions(scene, rng_f, fates)
    matrix, angles = reposition(scene, rng_f)
    appearance = draw_appearance(rng_f, scene.spine)
    appearance.properties = scene.appearance.properties  # same subject, same tissue
    appearance.sequences = scene.appearance.sequences  # same protocol
    follow_scene = Scene(scene.spine, lesions, matrix, appearance, angles)
    follow_acq = replace(acq, obliquity_deg=tuple(rng_f.normal(0.0, 2.0, 3)),
                         centre_jitter=tuple(rng_f.normal(0.0, [3.0, 8.0, 8.0])))
    followup = case_from_scene(follow_scene, follow_acq, rng_f, f"{pair_id}_followup", seed, options)
    interval = int(rng_f.integers(330, 400))
    truth = pair_truth(pair_id, seed, baseline, followup, links, interval)
    return SynthPair(baseline, followup, truth)


def pair_truth(pair_id: str, seed: int, baseline: SynthCase, followup: SynthCase,
               links: list[dict[str, Any]], interval_days: int) -> dict[str, Any]:
    """The linking truth: transform between the two scanner spaces and one record per lesion."""
    b_scene, f_scene = baseline.scene, followup.scene
    transform = f_scene.subject_to_scanner @ np.linalg.inv(b_scene.subject_to_scanner)
    base = {les["id"]: les for les in baseline.truth["lesions"]}
    follow = {les["id"]: les for les in followup.truth["lesions"]}
    records = []
    for link in links:
        b = base.get(link["baseline_id"]) if link["baseline_id"] else None
        f = follow.get(link["followup_id"]) if link["followup_id"] else None
        ref = b or f
        assert ref is not None
        b_vol = b["volume_mm3"] if b else 0.0
        f_vol = f["volume_mm3"] if f else 0.0
        records.append({
            **link,
            "level": ref["level"], "endplate": ref["endplate"],
            "baseline_type": b["type"] if b else None, "followup_type": f["type"] if f else None,
            "type_changed": bool(b and f and b["type"] != f["type"]),
            "baseline_volume_mm3": b_vol, "followup_volume_mm3": f_vol,
            "volume_change_mm3": round(f_vol - b_vol, 2),
            "baseline_height_fraction": b["height_fraction"] if b else None,
            "followup_height_fraction": f["height_fraction"] if f else None,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "pair_id": pair_id,
        "seed": seed,
        "same_patient_id": True,
        "interval_days": interval_days,
        "baseline": "baseline/truth.json",
        "followup": "followup/truth.json",
        "baseline_to_followup_ras": np.round(transform, 8).tolist(),
        "transform_note": "4x4 matrix mapping a baseline scanner RAS point (mm) to the follow-up "
                          "scanner RAS point of the same anatomy (rigid)",
        "links": records,
        "lesions": [{"fate": r["fate"],
                     "baseline": _brief(base.get(r["baseline_id"])) if r["baseline_id"] else None,
                     "followup": _brief(follow.get(r["followup_id"])) if r["followup_id"] else None}
                    for r in records],
    }


def _brief(lesion: dict[str, Any] | None) -> dict[str, Any] | None:
    if lesion is None:
        return None
    keys = ("id", "level", "endplate", "type", "volume_mm3", "height_fraction")
    return {k: lesion[k] for k in keys}


def write_pair(pair: SynthPair, out_dir: str | Path, fmt: str = "both", variants: tuple[str, ...] = (),
               subject_index: int = 0) -> Path:
    """Write ``out_dir``/{baseline,followup}/... and ``pair_truth.json``."""
    root = Path(out_dir)
    write_case(pair.baseline, root / "baseline", fmt, variants, subject_index, BASE_DATE)
    follow_date = BASE_DATE + dt.timedelta(days=int(pair.truth["interval_days"]))
    write_case(pair.followup, root / "followup", fmt, variants, subject_index, follow_date)
    write_json(pair.truth, root / "pair_truth.json")
    return root
