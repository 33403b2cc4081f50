"""Lesion rows (level, endplate, type, height, volume) recomputed from an edited lesion layer.

Uses the analysis stage's own functions -- ``find_lesions`` (components split per vertebra,
endplate), ``measure_lesion`` (extent along the vertebra's axis, height fraction, Udby grade),
``lesion_type`` and ``assess`` (trial eligibility) -- on the vertebrae found when the package was
made, so a reader's numbers and the model's are measured the same way.  Every painted voxel
counts (no minimum volume): what a reader leaves in the mask is their read.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modicseg.analysis import geometry as geo
from modicseg.analysis.config import AnalysisConfig, LesionConfig, TypingConfig
from modicseg.analysis.eligibility import Eligibility, assess
from modicseg.analysis.lesions import find_lesions
from modicseg.analysis.measures import measure_lesion
from modicseg.analysis.modic_typing import LesionType, lesion_type
from modicseg.analysis.vertebrae import Vertebra, VertebraSet
from modicseg.core.labels import LESION, SUPERIOR
from modicseg.review.codes import CODE_TYPES, MIXED_CODES, code_of_type, split_type

STATUSES = ("pending", "accepted", "edited", "rejected", "added")


@dataclass
class LesionRow:
    """One lesion of a read (or of the model) with its measures and review status."""

    id: int
    level: str | None
    vertebra: int
    endplate: str
    type: str
    primary_type: str | None
    secondary_type: str | None
    type_fractions: dict[str, float]
    volume_mm3: float
    fraction_of_vertebral_volume: float
    craniocaudal_extent_mm: float
    height_fraction: float
    extent_grade: str
    voxels: int
    centre_ijk: tuple[float, float, float]
    signature: str
    flat_index: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    status: str = "pending"
    model_id: int | None = None
    model_type: str | None = None

    def record(self) -> dict[str, Any]:
        """JSON/database-ready fields (no voxel indices)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "flat_index"}
        data["centre_ijk"] = [float(v) for v in self.centre_ijk]
        return data


# --- vertebrae stored with a package ----------------------------------------------------------

def vertebra_record(vertebra: Vertebra) -> dict[str, Any]:
    """A vertebra as JSON-ready values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(vertebra):
        value = getattr(vertebra, f.name)
        if isinstance(value, np.ndarray):
            value = [round(float(v), 6) for v in value]
        elif isinstance(value, (np.floating, float)):
            value = round(float(value), 6)
        elif isinstance(value, (np.integer, int)) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, np.bool_):
            value = bool(value)
        out[f.name] = value
    return out


def vertebra_set(instances: np.ndarray, records: list[dict[str, Any]]) -> VertebraSet:
    """The VertebraSet a package case was made with (instance map + stored geometry)."""
    names = {f.name for f in dataclasses.fields(Vertebra)}
    vertebrae = []
    for rec in sorted(records, key=lambda r: r["label"]):
        values = {k: v for k, v in rec.items() if k in names}
        for key in ("centre_ras", "axis_ras", "ap_axis_ras"):
            values[key] = np.asarray(values[key], dtype=np.float64)
        vertebrae.append(Vertebra(**values))
    if [v.label for v in vertebrae] != list(range(1, len(vertebrae) + 1)):
        raise ValueError("vertebra labels must be 1..N")
    return VertebraSet(instances=np.asarray(instances), vertebrae=vertebrae, discs=[])


# --- typing -----------------------------------------------------------------------------------

def type_of_codes(codes: np.ndarray, typing: TypingConfig, ijk: np.ndarray | None = None,
                  affine: np.ndarray | None = None, axis: np.ndarray | None = None) -> LesionType:
    """Type of a lesion from its lesion-layer codes.

    Voxels 1-4 are typed per voxel (the analysis rule, ``modic_typing.lesion_type``: most frequent
    type plus a secondary type that forms a coherent component; given the voxels' ``ijk``, the
    grid's ``affine`` and the vertebra's ``axis``, else by its share of the voxels).  When most
    voxels carry a reader-declared mixed code (5-8) the lesion has that mixed type.
    """
    codes = np.asarray(codes)
    declared = np.isin(codes, MIXED_CODES)
    if declared.sum() * 2 > len(codes):
        code = Counter(codes[declared].tolist()).most_common(1)[0][0]
        name = CODE_TYPES[int(code)]
        primary, secondary = split_type(name)
        return LesionType(name, primary, secondary, {}, 0.0)
    plain = codes.copy()
    for code in MIXED_CODES:
        primary, _ = split_type(CODE_TYPES[code])
        plain[codes == code] = code_of_type(primary)  # type: ignore[arg-type]
    return lesion_type(plain, typing, ijk, affine, axis)


def signature(flat_index: np.ndarray, codes: np.ndarray) -> str:
    """Short hash of a lesion's voxels and codes (equal before and after = unchanged)."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(np.asarray(flat_index, dtype=np.int64).tobytes())
    digest.update(np.asarray(codes, dtype=np.uint8).tobytes())
    return digest.hexdigest()


# --- rows -------------------------------------------------------------------------------------

def lesion_rows(codes: np.ndarray, affine: np.ndarray, vset: VertebraSet,
                config: AnalysisConfig | None = None) -> list[LesionRow]:
    """Lesions of a lesion-layer array (0 none, 1-8 type codes) on the case's grid."""
    config = config or AnalysisConfig()
    codes = np.asarray(codes)
    if not codes.any():
        return []
    affine = np.asarray(affine, dtype=np.float64)
    # work in the box holding every lesion voxel and every body: same result, far fewer voxels
    box = geo.bounding_box((codes > 0) | (vset.instances > 0), pad=3)
    offset = np.array([s.start for s in box])
    sub_vset = VertebraSet(instances=np.asarray(vset.instances)[box], vertebrae=vset.vertebrae, discs=vset.discs)
    labels = np.where(codes[box] > 0, LESION, 0).astype(np.uint8)
    # every painted voxel counts: no minimum volume, and no endplate-gap rule (a reader decides that)
    lset = find_lesions(labels, geo.box_affine(affine, box), sub_vset,
                        LesionConfig(min_volume_mm3=0.0, max_endplate_gap_mm=None))
    rows = []
    for lesion in lset.lesions:
        lesion.ijk = lesion.ijk + offset
        vertebra = vset.by_label(lesion.vertebra)
        index = tuple(lesion.ijk.T)
        lesion_codes = codes[index]
        ltype = type_of_codes(lesion_codes, config.typing, lesion.ijk, affine, vertebra.axis_ras)
        m = measure_lesion(lesion, vertebra, config.grading)
        flat = np.sort(np.ravel_multi_index(index, codes.shape))
        ordered = codes.ravel()[flat]
        rows.append(LesionRow(
            id=lesion.id, level=vertebra.level, vertebra=vertebra.label, endplate=lesion.endplate,
            type=ltype.type, primary_type=ltype.primary_type, secondary_type=ltype.secondary_type,
            type_fractions={k: round(float(v), 4) for k, v in ltype.type_fractions.items()},
            volume_mm3=float(m.volume_mm3), fraction_of_vertebral_volume=float(m.fraction_of_vertebral_volume),
            craniocaudal_extent_mm=float(m.craniocaudal_extent_mm), height_fraction=float(m.height_fraction),
            extent_grade=m.extent_grade, voxels=len(flat),
            centre_ijk=tuple(float(v) for v in lesion.ijk.mean(axis=0)),  # type: ignore[arg-type]
            signature=signature(flat, ordered), flat_index=flat))
    return rows


def compare_with_model(current: list[LesionRow], model: list[LesionRow], shape: tuple[int, ...],
                       decisions: dict[int, str] | None = None) -> list[LesionRow]:
    """Current rows with a status against the model's lesions, plus a row per rejected model lesion.

    * unchanged model lesion: the reader's decision ("accepted") or "pending";
    * a lesion overlapping a model lesion but with other voxels or codes: "edited";
    * a lesion overlapping none: "added" (a missed lesion);
    * a model lesion that no current lesion overlaps: "rejected".
    """
    decisions = decisions or {}
    by_id = {row.id: row for row in model}
    model_map = np.zeros(int(np.prod(shape)), dtype=np.int32)
    for row in model:
        model_map[row.flat_index] = row.id
    out: list[LesionRow] = []
    matched: set[int] = set()
    for row in current:
        hits = model_map[row.flat_index]
        hits = hits[hits > 0]
        new = dataclasses.replace(row)
        if hits.size == 0:
            new.status, new.model_id, new.model_type = "added", None, None
        else:
            ids, counts = np.unique(hits, return_counts=True)
            matched.update(int(i) for i in ids)
            model_row = by_id[int(ids[np.argmax(counts)])]
            new.model_id, new.model_type = model_row.id, model_row.type
            new.status = (decisions.get(model_row.id, "pending") if row.signature == model_row.signature
                          else "edited")
        out.append(new)
    for row in model:
        if row.id not in matched:
            rejected = dataclasses.replace(row, status="rejected", model_id=row.id, model_type=row.type)
            out.append(rejected)
    out.sort(key=lambda r: (r.vertebra, r.endplate != SUPERIOR, r.status == "rejected", -r.volume_mm3))
    for number, row in enumerate(out, start=1):
        row.id = number
    return out


def eligibility(rows: list[LesionRow], config: AnalysisConfig | None = None) -> Eligibility:
    """Trial eligibility from a read's lesions (rejected rows left out)."""
    config = config or AnalysisConfig()
    kept = [r for r in rows if r.status != "rejected"]
    return assess(kept, config.eligibility, typing_possible=True)
