"""Generalisation benchmark: held-out real subjects only, lesions from the independent painter.

Nothing scored here comes from the training generator: the scans are real (``../shared/real-spine``
and ``../shared/real-spine-dixon``), restricted to the subjects that ``configs/splits.yaml`` holds
out, and the lesions are painted into their real marrow by
:mod:`modicseg.evaluation.independent_painter`. Per model:

- **healthy scans** (the split's ``healthy`` lists: the real-spine subject without pathology, as
  single volumes and as its T1+T2 pair, and every held-out Dixon volunteer): every lesion the
  analysis (``analyze_images`` on the network's labels) reports is false. Counted: lesions of at
  least 100 mm³, those of them reaching 10 % of the body height, and the network's lesion parts
  (26-connected) of at least 20 mm³.
- **level names**: masked bodies whose name by the analysis (counted up from S1) equals the mask's
  (``analysis.level_agreement`` through ``evaluate_cases``). Dixon masks are L1-L5 with T12 and the
  sacrum in view but unlabelled.
- **body Dice** and surface Dice (2 mm) per set; also Dice without predicted bodies beyond the
  annotated levels (the Dixon masks leave T12 and the sacrum out).
- **painted lesions**: 2-3 lesions per held-out volume (3 on the T1+T2 pair, one of them type 2).
  Lesion Dice (the network's lesion class against the truth, per scan), found (see
  :func:`score_painted`), median absolute volume error of the found lesions (the analysis's volumes
  of the lesions matched to them), false lesions (analysis lesions >= 100 mm³ touching no painted
  lesion), and on T1+T2 whether type-2 lesions are found and typed right.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from modicseg.core.convert import load_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import BODY, LESION, MODIC_TYPES
from modicseg.core.resample import resample_to
from modicseg.evaluation.independent_painter import PaintedVolume, paint_lesions
from modicseg.model.cases import LabelledCase, load_labelled_cases, same_grid_pair
from modicseg.model.metrics import dice

#: real-spine volumes of one subject on one grid: (T1 case, T2 or TIRM case)
SAME_GRID_PAIRS = (("vb1_10", "vb1_11"), ("vb1_02", "vb1_03"), ("vb1_06", "vb1_07"))
SURFACE_TOLERANCE_MM = 2.0
FALSE_LESION_MM3 = 100.0  # a false lesion of this size counts (healthy scans, painted scans)
TALL_FRACTION = 0.10  # ... and how many of them reach the trial's height threshold
PART_MM3 = 20.0  # the analysis's smallest reported lesion part
FOUND_COVERAGE = 0.10  # a painted lesion is found when the analysis's lesions cover this share of it
#: levels the painter uses on real-spine (the trial's levels, where Modic changes are read)
PAINT_LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
TARGETS = {
    "healthy_false_lesions_per_scan": ("<=", 0.2),
    "level_names_right": (">=", 0.98),
    "dixon_body_dice": (">=", 0.90),
    "painted_lesion_dice": (">=", 0.80),
    "painted_found": (">=", 0.95),
    "painted_median_volume_error": ("<=", 0.15),
}
SET_TITLES = {"dixon": "Dixon held-out", "real_spine": "real-spine held-out, single contrast",
              "real_spine_pairs": "real-spine held-out, T1+T2 pair"}


def heldout_lists(splits: Mapping[str, Mapping[str, Any]], set_name: str,
                  split: str = "heldout") -> tuple[list[str], list[str]]:
    """(cases, healthy cases) of one split ("heldout", or "train" to develop an analysis rule without
    touching the held-out subjects) of one data set of ``model.sources.read_splits``."""
    entry = splits[set_name]
    cases = [str(c) for c in entry.get(split, [])]
    healthy = {str(c) for c in entry.get("healthy", [])}
    return cases, [c for c in cases if c in healthy]


def load_dixon_cases(root: str | Path, include: Sequence[str] | None = None) -> list[LabelledCase]:
    """real-spine-dixon cases: the real-spine layout with ``sequence: unknown``, read as a
    fluid-sensitive fat-suppressed image (T2 channel, ``info["sequence"]`` "DIXON_WATER")."""
    cases = load_labelled_cases(root, overrides={"sequence": "DIXON_WATER"}, include=include)
    for case in cases:
        case.info["contrast"] = "fat-suppressed (Dixon water), read as the T2 channel"
    return cases


def instance_map(case: LabelledCase) -> np.ndarray:
    """The case's body instance mask (one value per body, named by ``info["level_names"]``) on its grid."""
    reference = load_nifti(Path(case.info["level_map"]), LabelImage)
    if not reference.same_grid(case.labels):
        reference = resample_to(reference, case.labels)
    return np.asarray(reference.array)


def painter_images(case: LabelledCase) -> dict[str, ScalarImage]:
    """The case's images keyed by contrast for the painter ("T1", "T2" or "FS" for STIR/TIRM/Dixon)."""
    out: dict[str, ScalarImage] = {}
    if case.t1 is not None:
        out["T1"] = case.t1
    if case.t2 is not None:
        sequence = str(case.info.get("sequence", "T2")).upper()
        out["FS" if sequence in ("STIR", "TIRM", "DIXON_WATER") else "T2"] = case.t2
    return out


def case_seed(name: str, base: int) -> int:
    """A seed per case, the same for every model and run."""
    return (zlib.crc32(name.encode()) + 7919 * int(base)) % (2**32)


def lesion_plan(name: str, base: int, pair: bool) -> tuple[int, list[str]]:
    """(count, types) for a case: 2-3 lesions with the types in rotation; 3 with a type 2 first on a pair."""
    seed = case_seed(name, base)
    if pair:
        return 3, ["2", "1", "3"]
    count = 2 + seed % 2
    start = (seed // 2) % 3
    return count, [MODIC_TYPES[(start + i) % 3] for i in range(count)]


def paint_case(case: LabelledCase, base_seed: int, levels: Sequence[str] | None = PAINT_LEVELS,
               pair: bool = False) -> tuple[LabelledCase, PaintedVolume]:
    """The case with lesions painted into its images (labels: bodies 1, lesions 3) and the painting."""
    count, types = lesion_plan(case.name, base_seed, pair)
    images = painter_images(case)
    painted = paint_lesions(images, instance_map(case), case.info.get("level_names"), count=count,
                            seed=case_seed(case.name, base_seed), types=types, levels=levels)
    labels = np.asarray(case.labels.array).copy()
    labels[painted.truth] = LESION
    t1 = painted.images.get("T1")
    t2 = next((painted.images[k] for k in ("T2", "FS") if k in painted.images), None)
    out = LabelledCase(case.name, t1, t2, LabelImage(labels, case.labels.affine.copy(), case.labels.provenance),
                       (BODY, LESION), dict(case.info))
    return out, painted


def lesion_parts(predicted: np.ndarray, voxel_mm3: float, min_mm3: float = PART_MM3) -> int:
    """26-connected parts of the network's lesion class of at least ``min_mm3``."""
    components, n = ndimage.label(predicted == LESION, structure=np.ones((3, 3, 3), dtype=bool))
    if not n:
        return 0
    sizes = np.bincount(components.ravel())[1:] * voxel_mm3
    return int(np.count_nonzero(sizes >= min_mm3))


def _lesion_line(lesion: Any) -> str:
    return (f"{lesion.level} {lesion.endplate} type {lesion.type}, {lesion.volume_mm3:.0f} mm3, "
            f"height {lesion.height_fraction:.0%}")


def score_healthy(predicted: np.ndarray, report: Any, voxel_mm3: float) -> dict[str, Any]:
    """False lesions on a scan without Modic changes (every reported lesion is false)."""
    big = [les for les in report.lesions if les.volume_mm3 >= FALSE_LESION_MM3]
    return {"lesions_reported": len(report.lesions),
            "false_lesions_100mm3": len(big),
            "false_lesions_100mm3_tall": sum(les.height_fraction >= TALL_FRACTION for les in big),
            "lesion_parts_20mm3": lesion_parts(predicted, voxel_mm3),
            "lesion_mm3": round(float(sum(les.volume_mm3 for les in report.lesions)), 1),
            "false_lesion_list": [_lesion_line(les) for les in big]}


def _overlaps(truth_map: np.ndarray, lesion_map: np.ndarray) -> dict[tuple[int, int], int]:
    both = (truth_map > 0) & (lesion_map > 0)
    pairs, counts = np.unique(np.stack([truth_map[both], lesion_map[both]]), axis=1, return_counts=True)
    return {(int(t), int(p)): int(c) for (t, p), c in zip(pairs.T, counts, strict=True)}


def score_painted(predicted: np.ndarray, report: Any, painted: PaintedVolume, voxel_mm3: float,
                  unpainted_report: Any | None = None) -> dict[str, Any]:
    """Painted lesions against the network's labels and the analysis's lesions.

    **Found**: at least ``FOUND_COVERAGE`` (10 %) of the painted lesion's voxels lie in lesions the
    analysis reports. Each reported lesion is matched to the painted lesion it overlaps most; the
    painted lesion's measured volume is the sum of the volumes of its matched lesions, its Dice is
    against their union, its type / level / endplate are those of the largest of them. The same
    rule on the unpainted scan's analysis gives ``chance_covered``: how much of the painted lesion
    the model would have "found" without the paint. **False lesions**: reported lesions of at least
    100 mm³ touching no painted voxel.
    """
    truth_map = np.asarray(painted.lesion_map)
    predicted_lesions = np.asarray(report.lesion_map)
    records = {les.id: les for les in report.lesions}
    overlaps = _overlaps(truth_map, predicted_lesions)
    matched: dict[int, list[int]] = {les.id: [] for les in painted.lesions}
    best: dict[int, tuple[int, int]] = {}
    for (t, p), n in overlaps.items():
        if p not in best or n > best[p][1]:
            best[p] = (t, n)
    for p, (t, _) in best.items():
        if t in matched and p in records:
            matched[t].append(p)
    chance = (_overlaps(truth_map, np.asarray(unpainted_report.lesion_map))
              if unpainted_report is not None else None)
    rows = []
    for lesion in painted.lesions:
        truth = truth_map == lesion.id
        covered = sum(n for (t, p), n in overlaps.items() if t == lesion.id and p in records) / lesion.voxels
        mine = matched[lesion.id]
        row = lesion.to_dict() | {"covered": round(covered, 4), "found": bool(covered >= FOUND_COVERAGE)}
        if mine:
            union = np.isin(predicted_lesions, mine)
            measured = float(sum(records[p].volume_mm3 for p in mine))
            largest = max(mine, key=lambda p: records[p].volume_mm3)
            row.update({"dice": round(dice(union, truth), 4), "measured_mm3": round(measured, 1),
                        "volume_error": round((measured - lesion.volume_mm3) / lesion.volume_mm3, 4),
                        "analysis": {"level": records[largest].level, "endplate": records[largest].endplate,
                                     "type": records[largest].type,
                                     "primary_type": records[largest].primary_type,
                                     "secondary_type": records[largest].secondary_type},
                        "matched_lesions": len(mine)})
        else:
            row.update({"dice": 0.0, "measured_mm3": 0.0, "volume_error": -1.0, "analysis": None,
                        "matched_lesions": 0})
        if chance is not None:
            row["chance_covered"] = round(sum(n for (t, _), n in chance.items() if t == lesion.id) / lesion.voxels, 4)
        rows.append(row)
    touching = {p for (_, p) in overlaps}
    false = [les for les in report.lesions if les.volume_mm3 >= FALSE_LESION_MM3 and les.id not in touching]
    return {"painted": len(painted.lesions), "found": sum(r["found"] for r in rows),
            "dice_lesion_network": _nan_none(dice(predicted == LESION, painted.truth)),
            "dice_lesion_analysis": _nan_none(dice(predicted_lesions > 0, painted.truth)),
            "false_lesions_100mm3": len(false), "false_lesion_list": [_lesion_line(les) for les in false],
            "lesion_parts_20mm3": lesion_parts(predicted, voxel_mm3), "lesions": rows}


def _nan_none(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


class _Recorder:
    """A segmenter that keeps what it returns (``evaluate_cases`` segments; the analysis reuses it)."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter
        self.config = segmenter.config
        self.outputs: list[LabelImage] = []

    def segment(self, *args: Any, **kwargs: Any) -> LabelImage:
        out = self.segmenter.segment(*args, **kwargs)
        self.outputs.append(out)
        return out


def load_sets(shared: str | Path, splits: Mapping[str, Mapping[str, Any]], quick: bool = False,
              split: str = "heldout") -> tuple[dict[str, list[LabelledCase]], set[str]]:
    """The held-out cases by set (``dixon``, ``real_spine``, ``real_spine_pairs``) and the names of the
    healthy ones. ``quick``: 2 Dixon volumes, the healthy real-spine subject (2 volumes and its pair).
    ``split="train"``: the training subjects instead (where analysis rules are developed; the network
    has seen them, so their figures are optimistic and never reported as generalisation)."""
    shared = Path(shared)
    sets: dict[str, list[LabelledCase]] = {}
    healthy: set[str] = set()
    if "real-spine-dixon" in splits and (shared / "real-spine-dixon").is_dir():
        heldout, well = heldout_lists(splits, "real-spine-dixon", split)
        if quick:
            heldout = heldout[:2]
        sets["dixon"] = load_dixon_cases(shared / "real-spine-dixon", include=heldout)
        healthy |= set(well)
    if "real-spine" in splits and (shared / "real-spine").is_dir():
        heldout, well = heldout_lists(splits, "real-spine", split)
        if quick:
            heldout = [c for c in heldout if c in well][:2] or heldout[:2]
        cases = load_labelled_cases(shared / "real-spine", include=heldout)
        sets["real_spine"] = cases
        by_name = {c.name: c for c in cases}
        pairs = [same_grid_pair(by_name[a], by_name[b]) for a, b in SAME_GRID_PAIRS
                 if a in by_name and b in by_name]
        if pairs:
            sets["real_spine_pairs"] = pairs
        healthy |= set(well) | {f"{a}+{b}" for a, b in SAME_GRID_PAIRS if a in well and b in well}
    return sets, healthy


def evaluate_model(segmenter: Any, sets: Mapping[str, Sequence[LabelledCase]], healthy: Iterable[str],
                   seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every measure of the benchmark for one loaded segmenter (see the module docstring)."""
    from modicseg.analysis.pipeline import analyze_images
    from modicseg.evaluation.segmentation import evaluate_cases

    healthy = set(healthy)
    started = time.perf_counter()
    out: dict[str, Any] = {"model": segmenter.describe() if hasattr(segmenter, "describe") else {}, "sets": {}}
    for set_name, cases in sets.items():
        recorder = _Recorder(segmenter)
        summary, rows = evaluate_cases(recorder, cases, surface_tolerance_mm=SURFACE_TOLERANCE_MM,
                                       annotated_levels=True, level_names=True, overlap=True)
        if len(recorder.outputs) != len(rows):
            raise RuntimeError("cases were skipped by evaluate_cases")
        painted_rows = []
        for case, prediction, row in zip(cases, recorder.outputs, rows, strict=True):
            t0 = time.perf_counter()
            voxel_mm3 = prediction.voxel_volume_mm3
            report = analyze_images(prediction, case.t1, case.t2)
            row["sequence"] = case.info.get("sequence")
            row["healthy"] = case.name in healthy
            scored = score_healthy(np.asarray(prediction.array), report, voxel_mm3)
            row.update(scored if row["healthy"] else {"lesions_reported": scored["lesions_reported"],
                                                      "lesion_parts_20mm3": scored["lesion_parts_20mm3"]})
            painted_case, painting = paint_case(case, seed, pair=set_name == "real_spine_pairs")
            painted_pred = segmenter.segment(t1=painted_case.t1, t2=painted_case.t2)
            painted_report = analyze_images(painted_pred, painted_case.t1, painted_case.t2)
            result = score_painted(np.asarray(painted_pred.array), painted_report, painting, voxel_mm3, report)
            painted_rows.append({"case": case.name, "contrasts": "+".join(painter_images(case)),
                                 "seed": painting.seed, **result})
            if progress is not None:
                progress(f"{set_name} {case.name}: body Dice {row.get('dice_vertebral_body')}, levels "
                         f"{row.get('levels_named_right')}/{row.get('levels_reference')}, painted found "
                         f"{result['found']}/{result['painted']}, lesion Dice {result['dice_lesion_network']} "
                         f"({time.perf_counter() - t0:.1f} s)")
        out["sets"][set_name] = {"summary": summary, "cases": rows,
                                 "painted": {"summary": summarise_painted(painted_rows), "cases": painted_rows}}
    out["headline"] = headline(out["sets"])
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    return out


def summarise_painted(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Painted-lesion figures over scans (Dice: mean of the scans; volume error: median of found lesions)."""
    lesions = [les for r in rows for les in r["lesions"]]
    found = [les for les in lesions if les["found"]]
    dices = [r["dice_lesion_network"] for r in rows if r["dice_lesion_network"] is not None]
    dices_an = [r["dice_lesion_analysis"] for r in rows if r["dice_lesion_analysis"] is not None]
    out: dict[str, Any] = {
        "scans": len(rows), "lesions": len(lesions), "found": len(found),
        "found_fraction": len(found) / len(lesions) if lesions else None,
        "dice_lesion_network": float(np.mean(dices)) if dices else None,
        "dice_lesion_analysis": float(np.mean(dices_an)) if dices_an else None,
        "dice_per_lesion_median": float(np.median([les["dice"] for les in lesions])) if lesions else None,
        "median_abs_volume_error": float(np.median([abs(les["volume_error"]) for les in found])) if found else None,
        "median_volume_error": float(np.median([les["volume_error"] for les in found])) if found else None,
        "false_lesions_100mm3": sum(r["false_lesions_100mm3"] for r in rows),
        "false_lesions_per_scan": sum(r["false_lesions_100mm3"] for r in rows) / len(rows) if rows else None,
        "found_by_chance": sum(les.get("chance_covered", 0.0) >= FOUND_COVERAGE for les in lesions),
    }
    for t in MODIC_TYPES:
        of_type = [les for les in lesions if les["type"] == t]
        out[f"found_type{t}"] = f"{sum(les['found'] for les in of_type)}/{len(of_type)}"
    two = [les for r in rows if "T1" in r["contrasts"].split("+") and len(r["contrasts"].split("+")) > 1
           for les in r["lesions"] if les["found"]]
    if any("T1" in r["contrasts"].split("+") and len(r["contrasts"].split("+")) > 1 for r in rows):
        # typing needs T1 and a fluid-sensitive image: scored on those scans only
        right = sum(les["type"] in (les["analysis"]["primary_type"], les["analysis"]["secondary_type"]) for les in two)
        out["type_right"] = f"{right}/{len(two)}"
        out["type_primary_right"] = f"{sum(les['analysis']['primary_type'] == les['type'] for les in two)}/{len(two)}"
    same_endplate = sum(bool(les.get("analysis")) and les["analysis"]["endplate"] == les["endplate"] for les in found)
    out["endplate_right"] = f"{same_endplate}/{len(found)}"
    return out


def headline(sets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of the issue's targets, pooled over the sets, and whether each is met."""
    healthy_rows = [r for s in sets.values() for r in s["cases"] if r.get("healthy")]
    named = [r for s in sets.values() for r in s["cases"] if "levels_reference" in r]
    painted = [r for s in sets.values() for r in s["painted"]["cases"]]
    pooled = summarise_painted(painted) if painted else {}
    out: dict[str, Any] = {
        "healthy_scans": len(healthy_rows),
        "healthy_false_lesions": sum(r["false_lesions_100mm3"] for r in healthy_rows),
        "healthy_false_lesions_per_scan": (sum(r["false_lesions_100mm3"] for r in healthy_rows) / len(healthy_rows)
                                           if healthy_rows else None),
        "healthy_false_lesions_tall_per_scan": (sum(r["false_lesions_100mm3_tall"] for r in healthy_rows)
                                                / len(healthy_rows) if healthy_rows else None),
        "healthy_lesion_parts_per_scan": (sum(r["lesion_parts_20mm3"] for r in healthy_rows) / len(healthy_rows)
                                          if healthy_rows else None),
        "levels_named_right_count": f"{sum(r['levels_named_right'] for r in named)}/"
                                    f"{sum(r['levels_reference'] for r in named)}",
        "level_names_right": (sum(r["levels_named_right"] for r in named) / sum(r["levels_reference"] for r in named)
                              if named else None),
        "dixon_body_dice": sets.get("dixon", {}).get("summary", {}).get("dice_vertebral_body"),
        "dixon_body_dice_annotated_levels": sets.get("dixon", {}).get("summary", {}).get(
            "dice_vertebral_body_annotated_levels"),
        "painted_lesions": pooled.get("lesions"),
        "painted_lesion_dice": pooled.get("dice_lesion_network"),
        "painted_found": pooled.get("found_fraction"),
        "painted_median_volume_error": pooled.get("median_abs_volume_error"),
        "painted_false_lesions_per_scan": pooled.get("false_lesions_per_scan"),
    }
    pair_lesions = [les for r in sets.get("real_spine_pairs", {}).get("painted", {}).get("cases", [])
                    for les in r["lesions"] if les["type"] == "2"]
    out["pair_type2_found"] = f"{sum(les['found'] for les in pair_lesions)}/{len(pair_lesions)}"
    out["pair_type2_typed_right"] = (
        f"{sum(bool(les.get('analysis')) and les['analysis']['primary_type'] == '2' for les in pair_lesions)}"
        f"/{len(pair_lesions)}")
    out["met"] = {name: _met(out.get(name), *rule) for name, rule in TARGETS.items()}
    return out


def _met(value: float | None, op: str, target: float) -> bool | None:
    if value is None:
        return None
    return bool(value <= target) if op == "<=" else bool(value >= target)
