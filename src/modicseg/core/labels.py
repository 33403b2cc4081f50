"""The label vocabulary, defined once: label-map values, composite regions, vertebral level names,
endplates, Modic type names and the DICOM SEG codes of the labels.

Every stage imports these names instead of writing the values again (``docs/architecture.md``).
"""

from __future__ import annotations

import re

from modicseg.core.errors import InputError

# --- label-map values ------------------------------------------------------------------------
#: Values of a label map (``labels.nii.gz``, the network's output, the generator's truth).
BACKGROUND = 0
BODY = 1  # vertebral body (normal-appearing marrow and cortex)
DISC = 2  # intervertebral disc
LESION = 3  # Modic change: lies inside a vertebral body
#: Every value a label map may hold.
LABEL_VALUES: tuple[int, ...] = (BACKGROUND, BODY, DISC, LESION)
#: The labelled structures (every value but background).
STRUCTURE_VALUES: tuple[int, ...] = (BODY, DISC, LESION)
#: Human-readable names (``truth.json``'s ``label_values``, messages).
LABEL_NAMES: dict[int, str] = {BACKGROUND: "background", BODY: "vertebral body", DISC: "disc", LESION: "Modic lesion"}
#: Identifier-style class names (the model config's ``labels``, metric names such as ``dice_vertebral_body``).
CLASS_NAMES: dict[int, str] = {BACKGROUND: "background", BODY: "vertebral_body", DISC: "disc",
                               LESION: "modic_lesion"}
#: What a label map holds, as written in messages.
LABEL_MEANING = "0 background, 1 vertebral body, 2 disc, 3 lesion"
#: Training labels only: a voxel the labels say nothing about (the loss and the validation Dice
#: leave it out): unlabelled levels of bodies-only masks, voxels where the readers of a review tie.
IGNORE = 255

# --- composite regions ---------------------------------------------------------------------------
#: "Bone": a vertebral body is its body voxels and the lesions inside it.
BODY_VALUES: tuple[int, ...] = (BODY, LESION)
#: A class lying inside another one's region (value -> parent value): the lesion inside the body.
NESTED: dict[int, int] = {LESION: BODY}

# --- DICOM SEG ------------------------------------------------------------------------------------
#: (label value, segment label, category (code, scheme, meaning), property type (code, scheme, meaning)).
#: SNOMED CT codes from pydicom's code dictionary; the disc uses a private "99MODICSEG" code.
SEG_SEGMENTS: tuple[tuple[int, str, tuple[str, str, str], tuple[str, str, str]], ...] = (
    (BODY, "Vertebral body", ("91723000", "SCT", "Anatomical Structure"), ("51282000", "SCT", "Vertebra")),
    (DISC, "Intervertebral disc", ("91723000", "SCT", "Anatomical Structure"),
     ("IVD", "99MODICSEG", "Intervertebral disc")),
    (LESION, "Modic change", ("49755003", "SCT", "Morphologically Abnormal Structure"), ("52988006", "SCT", "Lesion")),
)

# --- endplates and Modic types --------------------------------------------------------------------
#: The two endplates of a vertebral body.
SUPERIOR, INFERIOR = "superior", "inferior"
ENDPLATES: tuple[str, ...] = (SUPERIOR, INFERIOR)
#: The pure Modic types (1 oedema, 2 fat, 3 sclerosis).
MODIC_TYPES: tuple[str, ...] = ("1", "2", "3")
#: Mixed types that exist, primary first.
MIXED_TYPES: tuple[str, ...] = ("1/2", "2/1", "2/3", "3/2")
#: A lesion whose voxels no signal band claims.
UNCLASSIFIED = "unclassified"
#: Every type a lesion can be reported with.
LESION_TYPES: tuple[str, ...] = (*MODIC_TYPES, *MIXED_TYPES, UNCLASSIFIED)
#: Value of a lesion voxel that no band claims in the per-voxel type map (1, 2, 3: its Modic type).
UNCLASSIFIED_CODE = 4

# --- vertebral levels -----------------------------------------------------------------------------
#: Lumbar vertebra counts that exist (a sacralised L5: 4; a lumbarised S1: 6).
LUMBAR_COUNTS = (4, 5, 6)
#: Thoracic vertebra counts supported (13: a thirteenth rib-bearing vertebra, T13, between T12 and L1).
THORACIC_COUNTS = (12, 13)


def level_sequence(lumbar_count: int = 5, thoracic_count: int = 12) -> tuple[str, ...]:
    """Craniocaudal order of vertebral levels: 7 cervical, ``thoracic_count`` thoracic, ``lumbar_count``
    lumbar, 5 sacral."""
    if lumbar_count not in LUMBAR_COUNTS:
        raise InputError(f"lumbar vertebra count must be one of {LUMBAR_COUNTS}, not {lumbar_count}")
    if thoracic_count not in THORACIC_COUNTS:
        raise InputError(f"thoracic vertebra count must be one of {THORACIC_COUNTS}, not {thoracic_count}")
    return (*(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, thoracic_count + 1)),
            *(f"L{i}" for i in range(1, lumbar_count + 1)), *(f"S{i}" for i in range(1, 6)))


#: The standard count (12 thoracic, 5 lumbar vertebrae).
LEVEL_SEQUENCE: tuple[str, ...] = level_sequence(5)
#: Every level name that exists in some spine, craniocaudal (T13 between T12 and L1, L6 between L5 and S1).
ALL_LEVELS: tuple[str, ...] = level_sequence(max(LUMBAR_COUNTS), max(THORACIC_COUNTS))
#: Regular expression matching exactly the names of ``ALL_LEVELS`` (the report schemas' level pattern).
LEVEL_PATTERN = "^(" + "|".join(ALL_LEVELS) + ")$"

_LEVEL = re.compile(r"^\s*(C|TH|T|L|S)\s*(\d{1,2})\s*$", re.I)


def parse_level(text: str) -> str:
    """Canonical level name ("Th12" -> "T12", "l5" -> "L5", "L6" of a six-lumbar spine, "Th13" -> "T13" of a
    spine with 13 thoracic vertebrae); InputError when unknown."""
    match = _LEVEL.match(str(text))
    if match:
        letter = match.group(1).upper()
        name = f"{'T' if letter == 'TH' else letter}{int(match.group(2))}"
        if name in ALL_LEVELS:
            return name
    raise InputError(f"unknown vertebral level '{text}' (expected e.g. T12, L1..L5, S1)")


def level_index(level: str, lumbar_count: int = 5, thoracic_count: int = 12) -> int:
    """Position in the level sequence (0 = C1), larger is lower."""
    sequence = level_sequence(lumbar_count, thoracic_count)
    name = parse_level(level)
    if name not in sequence:
        raise InputError(f"level {name} does not exist in a spine with {thoracic_count} thoracic and {lumbar_count} "
                         "lumbar vertebrae")
    return sequence.index(name)
