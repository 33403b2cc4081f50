"""Vertebral level names: anchored at the lowest vertebra (S1 by default) and counted upward.

About 10 % of people have 4 or 6 lumbar vertebrae (a sacralised L5 or a lumbarised S1), and some
have 13 thoracic vertebrae (T13 between T12 and L1); with ``lumbar_count`` and ``thoracic_count``
the count upward from S1 follows the spine as the reader counted it.  The level
names themselves (``level_sequence``, ``ALL_LEVELS``, ``parse_level`` ...) are defined in
:mod:`modicseg.core.labels` and re-exported here.
"""

from __future__ import annotations

from modicseg.core.labels import (
    ALL_LEVELS,
    LEVEL_SEQUENCE,
    LUMBAR_COUNTS,
    THORACIC_COUNTS,
    level_index,
    level_sequence,
    parse_level,
)

__all__ = ["ALL_LEVELS", "LEVEL_SEQUENCE", "LUMBAR_COUNTS", "THORACIC_COUNTS", "in_levels", "level_index",
           "level_sequence", "name_levels", "parse_level"]


def name_levels(count: int, lowest_level: str = "S1", lumbar_count: int = 5,
                thoracic_count: int = 12) -> list[str | None]:
    """Names of ``count`` vertebrae ordered superior -> inferior, the last being ``lowest_level``,
    in a spine of ``lumbar_count`` lumbar vertebrae (4: S1, L4, L3, ...; 6: S1, L6, L5, ...) and
    ``thoracic_count`` thoracic vertebrae (13: ..., L1, T13, T12, ...).

    Vertebrae above C1 (impossible in practice) get None.
    """
    sequence = level_sequence(lumbar_count, thoracic_count)
    lowest = level_index(lowest_level, lumbar_count, thoracic_count)
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
