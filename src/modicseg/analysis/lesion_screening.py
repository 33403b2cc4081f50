"""Lesion parts the analysis does not count although the network marked them: those that look like the
vertebra's normal marrow on every image given (``analysis.signal_change``) and those at an end of a
body that the cranio-caudal edge of the field of view cuts (``analysis.lesions.cut_endplates``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modicseg.analysis.config import LesionConfig
from modicseg.analysis.lesions import LesionSet, at_craniocaudal_edge, cut_endplates, keep_lesions
from modicseg.analysis.signal_change import MIN_CHANGED_FRACTION, changed_fraction, normal_range
from modicseg.analysis.vertebrae import VertebraSet


def screen_lesions(lset: LesionSet, vset: VertebraSet, refs: dict[int, Any],
                   images: tuple[np.ndarray | None, np.ndarray | None], bands: dict[str, Any], affine: np.ndarray,
                   config: LesionConfig) -> tuple[LesionSet, list[str]]:
    """The lesions without those that show no signal change on the images given
    (``lesions.require_signal_change``, ``analysis.signal_change``) and those against the cranio-caudal
    edge of the field of view (``lesions.count_at_field_edge``), renumbered; and the notes that say so."""
    ranges = (normal_range(bands, "t1"), normal_range(bands, "t2"))
    keep, unchanged, at_edge = [], [], []
    cut = {} if config.count_at_field_edge else cut_endplates(vset, affine)
    for lesion in lset.lesions:
        where = f"{vset.by_label(lesion.vertebra).level} {lesion.endplate}"
        if not config.count_at_field_edge and (lesion.endplate in cut.get(lesion.vertebra, set())
                                               or at_craniocaudal_edge(lesion.ijk, lset.lesion_map.shape, affine)):
            keep.append(False)
            at_edge.append(where)
            continue
        ref = refs.get(lesion.vertebra)
        fraction = (None if ref is None or not config.require_signal_change
                    else changed_fraction(images, (ref.t1, ref.t2), ranges, lesion.ijk))
        if fraction is not None and fraction < MIN_CHANGED_FRACTION:
            keep.append(False)
            unchanged.append(f"{where} ({fraction:.0%} of its voxels changed)")
            continue
        keep.append(True)
    notes = []
    if unchanged:
        notes.append(f"{len(unchanged)} lesion part(s) that look like the vertebra's normal marrow on the images "
                     f"given were not counted: {', '.join(unchanged)}")
    if at_edge:
        notes.append(f"{len(at_edge)} lesion part(s) at an end of a body that the cranio-caudal edge of the field "
                     f"of view cuts (no endplate in view there) were not counted: {', '.join(at_edge)}")
    if not notes:
        return lset, []
    return keep_lesions(lset, keep), notes
