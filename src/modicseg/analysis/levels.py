"""Vertebral level names: anchored at the lowest vertebra (S1 by default) and counted upward.

About 10 % of people have 4 or 6 lumbar vertebrae (a sacralised L5 or a lumbarised S1); with
``lumbar_count`` the count upward from S1 follows the spine as the reader counted it.
"""

from __future__ import annotations

import re

from modicseg.io.errors import InputError

LUMBAR_COUNTS = (4, 5, 6)


def level_sequence(lumbar_count: int = 5) -> tuple[str, ...]:
    """Craniocaudal order of vertebral levels: 7 cervical, 12 thoracic, ``lumbar_count`` lumbar, 5 sacral."""
    if lumbar_count not in LUMBAR_COUNTS:
        raise InputError(f"lumbar vertebra count must be one of {LUMBAR_COUNTS}, not {lumbar_count}")
    return (*(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)),
            *(f"L{i}" for i in range(1, lumbar_count + 1)), *(f"S{i}" for i in range(1, 6)))


#: The standard count (5 lumbar vertebrae).
LEVEL_SEQUENCE: tuple[str, ...] = level_sequence(5)
#: Every level name that exists in some spine, craniocaudal (L6 between L5 and S1).
ALL_LEVELS: tuple[str, ...] = level_sequence(max(LUMBAR_COUNTS))

_LEVEL = re.compile(r"^\s*(C|TH|T|L|S)\s*(\d{1,2})\s*$", re.I)


def parse_level(text: str) -> str:
    """Canonical level name ("Th12" -> "T12", "l5" -> "L5", "L6" of a six-lumbar spine); InputError when unknown."""
    match = _LEVEL.match(str(text))
    if match:
        letter = match.group(1).upper()
        name = f"{'T' if letter == 'TH' else letter}{int(match.group(2))}"
        if name in ALL_LEVELS:
            return name
    raise InputError(f"unknown vertebral level '{text}' (expected e.g. T12, L1..L5, S1)")


def level_index(level: str, lumbar_count: int = 5) -> int:
    """Position in the level sequence (0 = C1), larger is lower."""
    sequence = level_sequence(lumbar_count)
    name = parse_level(level)
    if name not in sequence:
        raise InputError(f"level {name} does not exist in a spine with {lumbar_count} lumbar vertebrae")
    return sequence.index(name)


def name_levels(count: int, lowest_level: str = "S1", lumbar_count: int = 5) -> list[str | None]:
    """Names of ``count`` vertebrae ordered superior -> inferior, the last being ``lowest_level``,
    in a spine of ``lumbar_count`` lumbar vertebrae (4: S1, L4, L3, ...; 6: S1, L6, L5, ...).

    Vertebrae above C1 (impossible in practice) get None.
    """
    sequence = level_sequence(lumbar_count)
    lowest = level_index(lowest_level, lumbar_count)
    names: list[str | None] = []
    for position in range(count):
        index = lowest - (count - 1 - position)
        names.append(sequence[index] if index >= 0 else None)
    return names


def in_levels(level: str | None, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether ``level`` is one of ``allowed`` (names compared canonically)."""
    if level is None:
        return False
    return parse_level(level) in {parse_level(a) for a in allowed}
