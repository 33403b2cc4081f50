"""Values of the editable lesion layer: one code per Modic type, and their colours.

Codes 1-4 match the per-voxel type map of ``modicseg analyze`` (``types.nii.gz``: 1, 2, 3, 4 =
unclassified).  Codes 5-8 mark every voxel of a lesion that a reader declared mixed ("1/2" ...).
"""

from __future__ import annotations

from modicseg.core.labels import BODY, DISC, LESION_TYPES, UNCLASSIFIED, UNCLASSIFIED_CODE

#: Lesion-layer code -> type as written in reports.
CODE_TYPES: dict[int, str] = {1: "1", 2: "2", 3: "3", UNCLASSIFIED_CODE: UNCLASSIFIED,
                              5: "1/2", 6: "2/1", 7: "2/3", 8: "3/2"}
TYPE_CODES: dict[str, int] = {name: code for code, name in CODE_TYPES.items()}
#: Types offered to a reader, in menu order.
READER_TYPES: tuple[str, ...] = LESION_TYPES
MIXED_CODES = (5, 6, 7, 8)

#: RGBA colours (0-1): type 1 red (oedema), type 2 yellow (fat), type 3 blue (sclerosis).
CODE_COLOURS: dict[int, tuple[float, float, float, float]] = {
    1: (0.95, 0.20, 0.15, 1.0),
    2: (1.00, 0.85, 0.10, 1.0),
    3: (0.20, 0.45, 1.00, 1.0),
    UNCLASSIFIED_CODE: (0.75, 0.75, 0.75, 1.0),
    5: (1.00, 0.50, 0.10, 1.0),
    6: (0.95, 0.70, 0.15, 1.0),
    7: (0.45, 0.85, 0.45, 1.0),
    8: (0.20, 0.75, 0.85, 1.0),
}

#: Anatomy layer values (the analysis label map without the lesion value).
ANATOMY_COLOURS: dict[int, tuple[float, float, float, float]] = {
    BODY: (0.55, 0.80, 1.00, 1.0),  # vertebral body
    DISC: (0.60, 1.00, 0.60, 1.0),  # disc
}


def type_of_code(code: int) -> str:
    """The type a lesion-layer value stands for."""
    try:
        return CODE_TYPES[int(code)]
    except KeyError:
        raise ValueError(f"{code} is not a lesion type code") from None


def code_of_type(name: str) -> int:
    """The lesion-layer value for a type ("1", "2/1", "unclassified", ...)."""
    try:
        return TYPE_CODES[str(name)]
    except KeyError:
        raise ValueError(f"unknown Modic type {name!r} (expected one of {', '.join(READER_TYPES)})") from None


def split_type(name: str) -> tuple[str | None, str | None]:
    """(primary, secondary) of a type name; (None, None) when unclassified."""
    if name == UNCLASSIFIED or not name:
        return None, None
    parts = name.split("/")
    return parts[0], parts[1] if len(parts) > 1 else None
