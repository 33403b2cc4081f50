"""Vertebral level names: anchored at the lowest vertebra (S1 by default) and counted upward."""

from __future__ import annotations

import re

from modicseg.io.errors import InputError

#: Craniocaudal order of vertebral levels (a standard count: 7 cervical, 12 thoracic, 5 lumbar).
LEVEL_SEQUENCE: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    *(f"S{i}" for i in range(1, 6)),
)

_LEVEL = re.compile(r"^\s*(C|TH|T|L|S)\s*(\d{1,2})\s*$", re.I)


def parse_level(text: str) -> str:
    """Canonical level name ("Th12" -> "T12", "l5" -> "L5"); InputError when unknown."""
    match = _LEVEL.match(str(text))
    if match:
        letter = match.group(1).upper()
        name = f"{'T' if letter == 'TH' else letter}{int(match.group(2))}"
        if name in LEVEL_SEQUENCE:
            return name
    raise InputError(f"unknown vertebral level '{text}' (expected e.g. T12, L1..L5, S1)")


def level_index(level: str) -> int:
    """Position in LEVEL_SEQUENCE (0 = C1), larger is lower."""
    return LEVEL_SEQUENCE.index(parse_level(level))


def name_levels(count: int, lowest_level: str = "S1") -> list[str | None]:
    """Names of ``count`` vertebrae ordered superior -> inferior, the last being ``lowest_level``.

    Vertebrae above C1 (impossible in practice) get None.
    """
    lowest = level_index(lowest_level)
    names: list[str | None] = []
    for position in range(count):
        index = lowest - (count - 1 - position)
        names.append(LEVEL_SEQUENCE[index] if index >= 0 else None)
    return names


def in_levels(level: str | None, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether ``level`` is one of ``allowed`` (names compared canonically)."""
    if level is None:
        return False
    return parse_level(level) in {parse_level(a) for a in allowed}
