"""Calibrating and scoring the lesion confidence on held-out real scans (``scripts/bench_confidence.py``).

Samples are the lesions the analysis reports on held-out subjects (``configs/splits.yaml``) that the
training generator never produced:

- **healthy scans** (the Dixon volunteers, the healthy real-spine subject): every lesion is false;
- **lesions painted by the independent painter** (``evaluation.independent_painter``, not the training
  painter) into those subjects: a reported lesion touching a painted voxel is real, one touching none
  is false on a healthy subject and left out on the others (their own marrow is not known to be normal).

Each distinct lesion counts once: a false lesion of a painted scan that overlaps a lesion of the same
scan unpainted is that lesion again (already counted from the unpainted scan), not a new sample.

Scores come from leave-one-subject-out cross-fitting: every lesion's confidence is predicted by a
calibrator fitted on the other subjects only, so no figure is scored on what it was fitted on.  The
shipped calibrator is then fitted on all of them.

Verdicts: on the held-out T1+T2 pair, lesions of chosen types are painted (0-2 per variant) and the
trial verdict is compared with the truth (eligible iff a type-1 lesion was painted: the painter's
lesions are all >= 10 % of the body height and at T12-S1); the doubt of a case is 1 - its verdict
confidence, computed with the cross-fitted calibrator of the folds without that subject.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.analysis.confidence import FEATURES, Calibrator, fit_calibrator
from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.eligibility import assess
from modicseg.core.labels import MODIC_TYPES
from modicseg.evaluation.generalisation import case_seed, instance_map, painter_images
from modicseg.evaluation.independent_painter import paint_lesions
from modicseg.model.cases import LabelledCase


@dataclass
class LesionSample:
    """One reported lesion with its inputs and whether it is real."""

    subject: str
    case: str
    variant: str
    lesion: int
    inputs: dict[str, float]
    real: bool
    volume_mm3: float


@dataclass
class VerdictCase:
    """One T1+T2 variant: the truth, the analysis's lesions (inputs), and the network's unreported evidence."""

    subject: str
    case: str
    variant: str
    painted_types: list[str]
    truly_eligible: bool
    lesions: list[Any] = field(default_factory=list)  # analysis LesionRecords
    unreported_evidence: float = 0.0
    typing_possible: bool = True


def subject_of(case: LabelledCase, root: str | Path | None = None) -> str:
    """The subject a case belongs to: its name joined with ``same_subject_cases_here`` of its case.json."""
    names = {case.name}
    names |= set(case.info.get("same_subject_cases_here") or [])
    for part in case.name.split("+"):
        names.add(part)
        if root is not None:
            path = Path(root) / part / "case.json"
            if path.is_file():
                names |= set(json.loads(path.read_text()).get("same_subject_cases_here") or [])
    names = {n for n in names if "+" not in n}
    return "+".join(sorted(names))


def analyse(segmenter: Any, t1: Any, t2: Any, config: AnalysisConfig) -> Any:
    """The report (with lesion inputs) of the network on one pair of images (no calibrator)."""
    from modicseg.analysis.pipeline import analyze_images

    result = segmenter.segment_detailed(t1=t1, t2=t2, uncertainty=True)
    return analyze_images(result.labels, t1, t2, config=config, evidence=result.evidence)


def paint(case: LabelledCase, seed: int, types: Sequence[str]) -> tuple[Any, Any, Any]:
    """(t1, t2, painting) of the case with ``types`` painted by the independent painter."""
    images = painter_images(case)
    painting = paint_lesions(images, instance_map(case), case.info.get("level_names"), count=len(types),
                             seed=seed, types=list(types))
    t1 = painting.images.get("T1")
    t2 = next((painting.images[k] for k in ("T2", "FS") if k in painting.images), None)
    return t1, t2, painting


def samples_of(report: Any, subject: str, case: str, variant: str, truth_map: np.ndarray | None,
               healthy: bool, unpainted_lesions: np.ndarray | None = None) -> list[LesionSample]:
    """Labelled samples from one analysed scan (``truth_map``: painted lesion ids, None when unpainted;
    ``unpainted_lesions``: the lesion map of the same scan unpainted, whose lesions are already counted)."""
    out = []
    lesion_map = np.asarray(report.lesion_map)
    for lesion in report.lesions:
        if lesion.confidence_inputs is None:
            continue
        voxels = lesion_map == lesion.id
        touches = truth_map is not None and bool(np.any(truth_map[voxels] > 0))
        if not touches and not healthy:
            continue  # unknown truth: the subject's own marrow is not known to be normal
        if not touches and unpainted_lesions is not None and bool(np.any(unpainted_lesions[voxels] > 0)):
            continue  # the unpainted scan's false lesion again: counted once
        out.append(LesionSample(subject, case, variant, lesion.id, dict(lesion.confidence_inputs), touches,
                                float(lesion.volume_mm3)))
    return out


def collect(segmenter: Any, cases: Sequence[tuple[LabelledCase, bool]], variants: int, seed: int,
            config: AnalysisConfig, shared_root: Callable[[LabelledCase], Path | None],
            progress: Callable[[str], None] | None = None) -> list[LesionSample]:
    """Lesion samples of every case: unpainted when healthy, then ``variants`` paintings (2-3 lesions,
    types in rotation, seeds from the case name and ``seed``)."""
    samples: list[LesionSample] = []
    for case, healthy in cases:
        subject = subject_of(case, shared_root(case))
        unpainted = None
        if healthy:
            report = analyse(segmenter, case.t1, case.t2, config)
            samples += samples_of(report, subject, case.name, "unpainted", None, True)
            unpainted = np.asarray(report.lesion_map)
        for v in range(variants):
            s = case_seed(case.name, seed + 101 * (v + 1))
            count = 2 + s % 2
            types = [MODIC_TYPES[(s // 2 + i) % 3] for i in range(count)]
            t1, t2, painting = paint(case, s, types)
            report = analyse(segmenter, t1, t2, config)
            samples += samples_of(report, subject, case.name, f"painted {v + 1}", np.asarray(painting.lesion_map),
                                  healthy, unpainted)
        if progress is not None:
            mine = [x for x in samples if x.case == case.name]
            progress(f"{case.name} ({subject}): {len(mine)} lesions, {sum(x.real for x in mine)} real")
    return samples


#: Painted type lists of the verdict variants (cycled): eligible iff a "1" is among them.
VERDICT_PLANS: tuple[tuple[str, ...], ...] = ((), ("1",), ("2",), ("1", "2"), ("3",), ("2", "3"), ("1", "3"),
                                              ("2",))


def collect_verdicts(segmenter: Any, pair: LabelledCase, count: int, seed: int, config: AnalysisConfig,
                     subject: str, progress: Callable[[str], None] | None = None
                     ) -> tuple[list[VerdictCase], list[LesionSample]]:
    """``count`` painted variants of a T1+T2 pair (types from VERDICT_PLANS) with their truth, and their
    lesion samples (the pair's subject is healthy: untouched lesions are false)."""
    cases, samples = [], []
    unpainted: np.ndarray | None = None
    for v in range(count):
        types = VERDICT_PLANS[v % len(VERDICT_PLANS)]
        s = case_seed(pair.name, seed + 7 * (v + 1))
        if types:
            t1, t2, painting = paint(pair, s, types)
            painted = [les.type for les in painting.lesions]
            truth_map: np.ndarray | None = np.asarray(painting.lesion_map)
        else:
            t1, t2, painted, truth_map = pair.t1, pair.t2, [], None
        report = analyse(segmenter, t1, t2, config)
        name = f"variant {v + 1}"
        cases.append(VerdictCase(subject, pair.name, name, painted, "1" in painted, list(report.lesions),
                                 float(report.unreported_lesion_evidence or 0.0),
                                 bool(report.typing.get("possible"))))
        if truth_map is None and unpainted is not None:
            pass  # the unpainted pair again: its lesions are counted
        else:
            samples += samples_of(report, subject, pair.name, name, truth_map, True, unpainted)
        if truth_map is None and unpainted is None:
            unpainted = np.asarray(report.lesion_map)
        if progress is not None:
            progress(f"{pair.name} {name}: painted {painted or 'nothing'}, {len(report.lesions)} lesions, "
                     f"verdict {report.eligibility.status}")
    return cases, samples


# --- scores --------------------------------------------------------------------------------------------

def matrix(samples: Sequence[LesionSample], features: Sequence[str] = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[s.inputs[f] for f in features] for s in samples], dtype=np.float64).reshape(-1, len(features))
    y = np.array([s.real for s in samples], dtype=np.float64)
    return x, y


def cross_fitted(samples: Sequence[LesionSample], l2: float = 1.0,
                 features: Sequence[str] = FEATURES) -> tuple[np.ndarray, dict[str, Calibrator]]:
    """Out-of-fold confidences (leave one subject out) and the calibrator of each fold (on ``features``),
    by left-out subject."""
    x, y = matrix(samples, features)
    subjects = np.array([s.subject for s in samples])
    out = np.full(len(samples), np.nan)
    folds: dict[str, Calibrator] = {}
    for subject in sorted(set(subjects)):
        held = subjects == subject
        calibrator = fit_calibrator(x[~held], y[~held], features=features, l2=l2)
        folds[subject] = calibrator
        out[held] = [calibrator.probability(dict(zip(features, row, strict=True))) for row in x[held]]
    return out, folds


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n1 n0), ties counted half)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, Any]]]:
    """(expected calibration error, the reliability table: per equal-width bin its count, mean confidence
    and share of real lesions)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        row: dict[str, Any] = {"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": n}
        if n:
            conf, acc = float(scores[inside].mean()), float(labels[inside].mean())
            row |= {"mean_confidence": round(conf, 4), "share_real": round(acc, 4)}
            ece += n / len(scores) * abs(conf - acc)
        rows.append(row)
    return float(ece), rows


def verdict_doubts(cases: Sequence[VerdictCase], folds: Mapping[str, Calibrator],
                   config: AnalysisConfig) -> list[dict[str, Any]]:
    """Each verdict case re-assessed with the confidences of the fold that left its subject out."""
    rows = []
    for case in cases:
        calibrator = folds.get(case.subject)
        lesions = []
        for lesion in case.lesions:
            if lesion.confidence_inputs is not None and calibrator is not None:
                lesion.confidence = calibrator.probability(lesion.confidence_inputs)
            lesions.append(lesion)
        decision = assess(lesions, config.eligibility, case.typing_possible,
                          unreported_evidence=case.unreported_evidence)
        right = (decision.eligible is not None and decision.eligible == case.truly_eligible)
        rows.append({"case": case.case, "variant": case.variant, "painted": case.painted_types,
                     "truly_eligible": case.truly_eligible, "status": decision.status,
                     "verdict_confidence": decision.verdict_confidence,
                     "doubt": 1.0 - (decision.verdict_confidence if decision.verdict_confidence is not None else 0.0),
                     "error": not right})
    return rows


def caught_by_doubt(rows: Sequence[Mapping[str, Any]], share: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Share of verdict errors among the ``share`` most doubtful cases (ties in random order, seeded)."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    order = sorted(range(n), key=lambda i: (-rows[i]["doubt"], rng.random()))
    top = order[:max(1, int(round(share * n)))]
    errors = sum(bool(r["error"]) for r in rows)
    caught = sum(bool(rows[i]["error"]) for i in top)
    return {"cases": n, "read_first": len(top), "errors": errors, "caught": caught,
            "share_caught": None if errors == 0 else caught / errors}
