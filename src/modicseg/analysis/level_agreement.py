"""Do the level names the analysis gives a label map agree with a reference mask's named bodies?

For a user, a wrong name is worse than a loose outline: every measurement lands on the wrong level.
The reference is an instance map (one value per body) with the level of every value, as in
``../shared/real-spine`` (``vertebrae.nii.gz`` + ``case.json`` → ``levels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modicseg.analysis.config import VertebraConfig
from modicseg.analysis.levels import name_levels
from modicseg.analysis.vertebrae import find_vertebrae


def level_agreement(labels: np.ndarray, affine: np.ndarray, reference: np.ndarray,
                    reference_levels: Mapping[int, str], config: VertebraConfig | None = None,
                    lowest_level: str = "S1") -> dict[str, Any]:
    """Named-right count of the reference bodies, by the analysis's own instances and names.

    A reference body is named right when the predicted vertebra holding most of its voxels carries
    its name and holds more of it than of any other reference body; ``per_level`` also gives that
    vertebra's height. ``labels`` (model classes) and
    ``reference`` (instances) share one grid with ``affine``.
    """
    if labels.shape != reference.shape:
        raise ValueError(f"label map {labels.shape} and reference {reference.shape} differ in shape")
    cfg = config or VertebraConfig()
    vset = find_vertebrae(labels, affine, cfg)
    names = name_levels(len(vset.vertebrae), lowest_level, cfg.lumbar_count, cfg.thoracic_count)
    n_pred = len(vset.vertebrae)
    values = sorted(int(v) for v in reference_levels)
    index = {v: i for i, v in enumerate(values)}
    lookup = np.full(int(reference.max()) + 1, -1, dtype=np.int64)
    for v in values:
        if v < lookup.size:
            lookup[v] = index[v]
    ref_index = lookup[reference]
    both = (ref_index >= 0) & (vset.instances > 0)
    overlap = np.zeros((len(values), n_pred + 1), dtype=np.int64)
    np.add.at(overlap, (ref_index[both], vset.instances[both]), 1)
    per_level: list[dict[str, Any]] = []
    for v in values:
        row = overlap[index[v]]
        name = reference_levels[v]
        if row.sum() == 0:
            per_level.append({"level": name, "named": None})
            continue
        label = int(np.argmax(row))
        own = int(np.argmax(overlap[:, label])) == index[v]
        given = names[label - 1]
        per_level.append({"level": name, "named": given, "right": bool(own and given == name),
                          "height_mm": vset.vertebrae[label - 1].height_mm})
    return {"levels_reference": len(values), "levels_named_right": sum(bool(p.get("right")) for p in per_level),
            "levels_missed": sum(p["named"] is None for p in per_level), "vertebrae_found": n_pred,
            "per_level": per_level}
