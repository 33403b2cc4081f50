"""Trial eligibility (BackToBasic, NCT03704363) with the reasons for the decision.

Eligible when some lesion is at one of the configured levels (T12..S1), at a superior or inferior
endplate, of primary or secondary type 1, with a cranio-caudal size of at least 10 % of its
vertebral height (threshold configurable).  A lesion that qualifies by level and type but whose
height fraction lies within its measurement uncertainty (``borderline_voxels`` voxels along the
vertebra's axis, as a fraction of its height) of the threshold is *borderline*: when no lesion
qualifies clearly, the decision is "borderline: review" (``eligible`` null) instead of a bare yes
or no.

With the network's confidence per lesion (``analysis.confidence``), the reasons name it, and when every
qualifying lesion's confidence is below ``min_confidence`` the decision is "undecided: review lesion N
(confidence 0.42)" instead of a bare yes.  ``verdict_confidence`` is the probability that the verdict is
right: for "eligible", that at least one qualifying lesion is real (1 - prod(1 - c)); for "not eligible",
1 - the network's evidence of a lesion it did not report; 0 when the model leaves the verdict to a
reader (borderline, undecided): it made none, so a doubt-ordered worklist shows it first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modicseg.analysis.config import EligibilityConfig
from modicseg.analysis.levels import in_levels
from modicseg.core.labels import ENDPLATES


class LesionLike(Protocol):
    """What eligibility reads of a lesion (read-only, so a record with narrower types fits too)."""

    @property
    def id(self) -> int: ...
    @property
    def level(self) -> str | None: ...
    @property
    def endplate(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def primary_type(self) -> str | None: ...
    @property
    def secondary_type(self) -> str | None: ...
    @property
    def height_fraction(self) -> float: ...
    # optional: height_fraction_uncertainty (float | None), one voxel along the axis / height;
    #           confidence (float | None), the probability that the lesion is real


@dataclass
class Eligibility:
    """The decision (None when it cannot be made), its reasons, the lesions that qualify, and those
    whose size is within measurement uncertainty of the threshold (borderline)."""

    eligible: bool | None
    reasons: list[str]
    qualifying_lesions: list[int] = field(default_factory=list)
    borderline_lesions: list[int] = field(default_factory=list)
    verdict_confidence: float | None = None  # probability the verdict is right (None: no network confidence)
    low_confidence_lesions: list[int] = field(default_factory=list)  # qualify, but below min_confidence

    @property
    def status(self) -> str:
        """"eligible", "not eligible", "borderline" (review the listed lesions) or "undecided"."""
        if self.eligible is not None:
            return "eligible" if self.eligible else "not eligible"
        return "borderline" if self.borderline_lesions and not self.low_confidence_lesions else "undecided"


def margin(lesion: LesionLike, config: EligibilityConfig) -> float:
    """The height-fraction margin around the threshold within which a lesion is borderline (0: none)."""
    uncertainty = getattr(lesion, "height_fraction_uncertainty", None)
    return float(uncertainty) * config.borderline_voxels if uncertainty else 0.0


def is_borderline(lesion: LesionLike, config: EligibilityConfig) -> bool:
    """Whether a lesion's height fraction is within its measurement uncertainty of the threshold."""
    width = margin(lesion, config)
    return width > 0 and abs(lesion.height_fraction - config.min_height_fraction) <= width


def _where(lesion: LesionLike) -> str:
    return f"lesion {lesion.id} ({lesion.level or 'unknown level'} {lesion.endplate or ''} endplate)".replace(
        "  ", " ")


def confidence_of(lesion: LesionLike) -> float | None:
    """The lesion's confidence (probability that it is real), or None when none was computed."""
    value = getattr(lesion, "confidence", None)
    return None if value is None else float(value)


def _doubtful(lesion: LesionLike, min_confidence: float) -> bool:
    value = confidence_of(lesion)
    return value is not None and value < min_confidence


def _confidence_text(lesion: LesionLike) -> str:
    value = confidence_of(lesion)
    return "" if value is None else f", confidence {value:.2f}"


def assess(lesions: Sequence[LesionLike], config: EligibilityConfig, typing_possible: bool = True,
           typing_note: str | None = None, unreported_evidence: float | None = None) -> Eligibility:
    """Apply the trial rule to the lesions of one study.

    ``unreported_evidence``: the network's evidence (0..1) of a lesion it did not report
    (``confidence.unreported_lesion_evidence``); with lesion confidences it sets the verdict confidence
    of a "not eligible" verdict."""
    decision = _assess(lesions, config, typing_possible, typing_note)
    return _weigh_confidence(decision, lesions, config, unreported_evidence)


def _weigh_confidence(decision: Eligibility, lesions: Sequence[LesionLike], config: EligibilityConfig,
                      unreported_evidence: float | None) -> Eligibility:
    """The decision with its verdict confidence; "undecided" when every qualifying lesion is doubtful."""
    scored = [confidence_of(lesion) for lesion in lesions]
    network = unreported_evidence is not None or any(c is not None for c in scored)
    if not network:
        return decision
    by_id = {lesion.id: lesion for lesion in lesions}
    if decision.eligible:
        qualifying = [by_id[i] for i in decision.qualifying_lesions]
        doubts = [1.0 - c for c in (confidence_of(q) for q in qualifying) if c is not None]
        decision.verdict_confidence = 1.0 - math.prod(doubts) if doubts else None
        sure = [q for q in qualifying if not _doubtful(q, config.min_confidence)]
        if not sure:
            doubtful = sorted(qualifying, key=lambda q: -(confidence_of(q) or 0.0))
            named = ", ".join(f"lesion {q.id} (confidence {confidence_of(q):.2f})" for q in doubtful)
            first = (f"undecided: review {named}: it qualifies, but the model is not sure it is real "
                     f"(confidence below {config.min_confidence:.2f})" if len(doubtful) == 1 else
                     f"undecided: review {named}: they qualify, but the model is not sure they are real "
                     f"(confidence below {config.min_confidence:.2f})")
            return Eligibility(None, [first, *decision.reasons], [], decision.borderline_lesions,
                               verdict_confidence=0.0, low_confidence_lesions=[q.id for q in doubtful])
        return decision
    if decision.eligible is None:
        decision.verdict_confidence = 0.0  # no verdict: left to a reader
        return decision
    decision.verdict_confidence = 1.0 - float(unreported_evidence or 0.0)
    return decision


def _assess(lesions: Sequence[LesionLike], config: EligibilityConfig, typing_possible: bool,
            typing_note: str | None) -> Eligibility:
    """The trial rule without confidence."""
    levels = "–".join((config.levels[0], config.levels[-1])) if config.levels else "none"
    wanted = config.required_type
    threshold = config.min_height_fraction
    if not lesions:
        return Eligibility(False, ["no Modic change found"])
    qualifying, reasons, undecided, borderline = [], [], [], []
    for lesion in lesions:
        problems = []
        near = is_borderline(lesion, config)
        if not in_levels(lesion.level, config.levels):
            problems.append(f"level {lesion.level or 'unknown'} is outside {levels}")
        if lesion.endplate not in ENDPLATES:
            problems.append("not at a superior or inferior endplate")
        has_type = wanted in (lesion.primary_type, lesion.secondary_type)
        if typing_possible and lesion.primary_type is not None and not has_type:
            problems.append(f"type {lesion.type} has no type-{wanted} component")
        if not lesion.height_fraction >= threshold and not (near and has_type and not problems):
            problems.append(f"height {100 * lesion.height_fraction:.0f} % < {100 * threshold:.0f} %")
        if problems:
            reasons.append(f"{_where(lesion)} does not qualify: " + "; ".join(problems))
        elif near and has_type:
            borderline.append(lesion)
            reasons.append(f"{_where(lesion)} is borderline: type {lesion.type}, height "
                           f"{100 * lesion.height_fraction:.1f} % is within the measurement uncertainty "
                           f"(±{100 * margin(lesion, config):.1f} %, one voxel along the vertebra's axis) of "
                           f"{100 * threshold:.0f} %: review")
        elif not has_type:
            undecided.append(lesion)
            reasons.append(f"{_where(lesion)}: size and place qualify "
                           f"(height {100 * lesion.height_fraction:.0f} %) but its type could not be determined")
        else:
            role = "primary" if lesion.primary_type == wanted else "secondary"
            qualifying.append(lesion.id)
            reasons.insert(len(qualifying) - 1,
                           f"{_where(lesion)} qualifies: type {lesion.type} ({role} type {wanted}), height "
                           f"{100 * lesion.height_fraction:.0f} % >= {100 * threshold:.0f} %, level within {levels}"
                           f"{_confidence_text(lesion)}")
    borderline_ids = [lesion.id for lesion in borderline]
    if qualifying:
        return Eligibility(True, reasons, qualifying, borderline_ids)
    if borderline:
        where = ", ".join(_where(lesion) for lesion in borderline)
        first = (f"borderline: review {where}: its height is within the measurement uncertainty of "
                 f"{100 * threshold:.0f} %" if len(borderline) == 1 else
                 f"borderline: review {where}: their heights are within the measurement uncertainty of "
                 f"{100 * threshold:.0f} %")
        return Eligibility(None, [first, *reasons], [], borderline_ids)
    if undecided:
        if typing_note is None and typing_possible:
            where = ", ".join(_where(lesion) for lesion in undecided)
            typing_note = (f"{where} qualifies by level and size, but its T1/T2 signal matches no Modic type "
                           "(unclassified): review it" if len(undecided) == 1 else
                           f"{where} qualify by level and size, but their T1/T2 signal matches no Modic type "
                           "(unclassified): review them")
        note = typing_note or "typing was not possible"
        return Eligibility(None, [f"undecided: {note}", *reasons])
    return Eligibility(False, reasons)
