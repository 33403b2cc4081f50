"""Trial eligibility (BackToBasic, NCT03704363) with the reasons for the decision.

Eligible when some lesion is at one of the configured levels (T12..S1), at a superior or inferior
endplate, of primary or secondary type 1, with a cranio-caudal size of at least 10 % of its
vertebral height (threshold configurable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modicseg.analysis.config import EligibilityConfig
from modicseg.analysis.levels import in_levels


class LesionLike(Protocol):
    id: int
    level: str | None
    endplate: str | None
    type: str
    primary_type: str | None
    secondary_type: str | None
    height_fraction: float


@dataclass
class Eligibility:
    """The decision (None when it cannot be made), its reasons, and the lesions that qualify."""

    eligible: bool | None
    reasons: list[str]
    qualifying_lesions: list[int] = field(default_factory=list)


def _where(lesion: LesionLike) -> str:
    return f"lesion {lesion.id} ({lesion.level or 'unknown level'} {lesion.endplate or ''} endplate)".replace(
        "  ", " ")


def assess(lesions: Sequence[LesionLike], config: EligibilityConfig, typing_possible: bool = True,
           typing_note: str | None = None) -> Eligibility:
    """Apply the trial rule to the lesions of one study."""
    levels = "–".join((config.levels[0], config.levels[-1])) if config.levels else "none"
    wanted = config.required_type
    threshold = config.min_height_fraction
    if not lesions:
        return Eligibility(False, ["no Modic change found"])
    qualifying, reasons, undecided = [], [], []
    for lesion in lesions:
        problems = []
        if not in_levels(lesion.level, config.levels):
            problems.append(f"level {lesion.level or 'unknown'} is outside {levels}")
        if lesion.endplate not in ("superior", "inferior"):
            problems.append("not at a superior or inferior endplate")
        if not lesion.height_fraction >= threshold:
            problems.append(f"height {100 * lesion.height_fraction:.0f} % < {100 * threshold:.0f} %")
        has_type = wanted in (lesion.primary_type, lesion.secondary_type)
        if typing_possible and lesion.primary_type is not None and not has_type:
            problems.append(f"type {lesion.type} has no type-{wanted} component")
        if problems:
            reasons.append(f"{_where(lesion)} does not qualify: " + "; ".join(problems))
        elif not has_type:
            undecided.append(lesion)
            reasons.append(f"{_where(lesion)}: size and place qualify "
                           f"(height {100 * lesion.height_fraction:.0f} %) but its type could not be determined")
        else:
            role = "primary" if lesion.primary_type == wanted else "secondary"
            qualifying.append(lesion.id)
            reasons.insert(len(qualifying) - 1,
                           f"{_where(lesion)} qualifies: type {lesion.type} ({role} type {wanted}), height "
                           f"{100 * lesion.height_fraction:.0f} % >= {100 * threshold:.0f} %, level within {levels}")
    if qualifying:
        return Eligibility(True, reasons, qualifying)
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
