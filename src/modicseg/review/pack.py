"""``review pack``: anonymised, randomised reading packages from ``analyze`` outputs.

Every study (each time point an independent case) gets a random case code.  Images, predicted
lesions and anatomy are written as blinded NIfTI (``volumes.write_blinded_nifti``); ``case.json``
holds only whitelisted model outputs (vertebra levels and geometry, lesion measures, eligibility)
-- never the report's provenance, paths, series descriptions or dates.  Cases are listed sorted
by code, so nothing in the package pairs the time points of one subject.  The key goes to a file
outside the package.  ``order="doubt"`` makes every reader's worklist start with the cases whose
verdict the model is least sure of (doubt = 1 - the report's ``eligibility.verdict_confidence``;
a report without one counts as maximal doubt), random within equal doubt; ``confidence.json``
holds the model's confidence of each lesion and of its verdict.  Before the package is moved into
place every file name, JSON string and NIfTI header text is checked against the subjects, time
points, arms and folder names of the input; a hit aborts the run and nothing is written.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import random
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.levels import name_levels, parse_level
from modicseg.analysis.vertebrae import find_vertebrae
from modicseg.core.image import Image, LabelImage
from modicseg.core.labels import BODY, LESION, UNCLASSIFIED_CODE
from modicseg.core.resample import resample_to
from modicseg.core.version import __version__
from modicseg.io.atomic import atomic_output_dir
from modicseg.io.errors import InputError
from modicseg.report.models import ReportDocument
from modicseg.report.schema import validate_case, validating
from modicseg.review.codes import code_of_type
from modicseg.review.key import KeyEntry, check_outside, default_key_path, write_key
from modicseg.review.lesion_table import LesionRow, lesion_rows, vertebra_record
from modicseg.review.package import (
    CASE_FILE,
    CASE_FORMAT,
    CASE_IMAGES,
    CASE_LABELS,
    CASE_SCHEMA_VERSION,
    CONFIDENCE_FILE,
    ORDERS,
    PACKAGE_FILE,
    PACKAGE_FORMAT,
    PACKAGE_SCHEMA_VERSION,
    RANDOM_ORDER_SCHEMA_VERSION,
)
from modicseg.review.sources import StudySource, find_sources
from modicseg.review.volumes import TEXT_FIELDS, read_nifti, write_blinded_nifti

log = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 6
#: Identifiers shorter than this are not searched for by the blinding check.
MIN_TOKEN = 4
#: Fields of a report lesion copied into a package (everything else is left out).
LESION_FIELDS = ("id", "level", "vertebra", "endplate", "type", "primary_type", "secondary_type",
                 "type_fractions", "unclassified_fraction", "volume_mm3", "fraction_of_vertebral_volume",
                 "craniocaudal_extent_mm", "height_fraction", "ap_depth_mm", "ap_depth_fraction",
                 "extent_grade", "voxels", "extent_of_change_mm", "extent_from_endplate_mm",
                 "height_fraction_uncertainty", "borderline")


class BlindingError(InputError):
    """An identifier of the input would have ended up in the package."""


@dataclass
class PackResult:
    """What ``pack`` wrote."""

    package: Path
    key: Path
    codes: dict[str, StudySource]
    warnings: list[str] = field(default_factory=list)


def case_codes(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct random codes of CODE_LENGTH characters."""
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


def _load_report(source: StudySource) -> ReportDocument:
    """The analysis's report.json, typed (ReportFileError, an InputError, names the file and field)."""
    return ReportDocument.load(source.report)


def _config(report: ReportDocument, source: StudySource, notes: list[str]) -> AnalysisConfig:
    try:
        return AnalysisConfig.from_dict(report.config, source=str(source.report))
    except InputError as exc:
        notes.append(f"{source.folder.name}: report configuration not usable ({exc}); defaults used")
        return AnalysisConfig()


def _on_grid(image: Image, grid: Image) -> Image:
    return image if image.same_grid(grid) else resample_to(image, grid)


def _level_names(report: ReportDocument, count: int, config: AnalysisConfig) -> list[str | None]:
    reported = [v.level for v in sorted(report.vertebrae, key=lambda v: v.label)]
    if len(reported) == count and all(reported):
        return [parse_level(name) for name in reported if name]  # every name given (all(reported))
    lowest = reported[-1] if reported and reported[-1] else config.vertebrae.lowest_level
    return name_levels(count, lowest)


def lesion_codes(labels: np.ndarray, types: np.ndarray | None) -> np.ndarray:
    """Lesion-layer codes from an analysis label map and its per-voxel type map."""
    codes = np.zeros(labels.shape, dtype=np.uint8)
    lesion = labels == LESION
    if types is None:
        codes[lesion] = UNCLASSIFIED_CODE
        return codes
    values = np.asarray(types)[lesion]
    values = np.where((values >= 1) & (values <= UNCLASSIFIED_CODE), values, UNCLASSIFIED_CODE)
    codes[lesion] = values.astype(np.uint8)
    return codes


def _model_lesions(report: ReportDocument) -> list[dict[str, Any]]:
    """The report's lesions as a case lists them (LESION_FIELDS, in that order, those the report has)."""
    lesions = []
    for lesion in report.lesions:
        fields = lesion.model_dump(mode="json", by_alias=True, exclude_unset=True)
        lesions.append({k: fields[k] for k in LESION_FIELDS if k in fields})
    return lesions


def doubt_of(report: ReportDocument) -> float:
    """How unsure the model is of its verdict: 1 - ``eligibility.verdict_confidence``; 1 (maximal
    doubt) when the report has none (labels given to ``analyze``, a report older than schema 1.3)."""
    confidence = report.eligibility.verdict_confidence
    return 1.0 if confidence is None else round(1.0 - float(confidence), 4)


def _lesion_confidences(rows: list[LesionRow], report: ReportDocument, affine: np.ndarray) -> dict[str, float | None]:
    """Model lesion id (of ``lesion_rows`` on the package's lesion map) -> the report's confidence of
    the lesion it is: the report lesion at the same level and endplate whose centre lies nearest."""
    out: dict[str, float | None] = {}
    for row in rows:
        centre = np.asarray(affine, dtype=np.float64) @ np.array([*row.centre_ijk, 1.0])
        here = [les for les in report.lesions if les.level == row.level and les.endplate == row.endplate]
        if not here:
            out[str(row.id)] = None
            continue
        nearest = min(here, key=lambda les: float(np.linalg.norm(np.asarray(les.centre_ras) - centre[:3])))
        out[str(row.id)] = nearest.confidence
    return out


def _images(source: StudySource) -> dict[str, Image]:
    """T1 and T2 of a study: NIfTI files when known, else loaded from the study (T1 on the T2 grid)."""
    if source.t1 is not None and source.t2 is not None:
        return {"t1": read_nifti(source.t1), "t2": read_nifti(source.t2)}
    if source.study is not None:
        from modicseg.io.study import StudyRequest, open_study, t1_on_t2_grid

        study = open_study(StudyRequest(path=source.study))
        t1, t2 = t1_on_t2_grid(study)
        return {"t1": t1, "t2": t2}
    missing = "T1" if source.t1 is None else "T2"
    raise InputError(f"{source.folder}: no {missing} image found; put t1.nii.gz and t2.nii.gz in the analysis "
                     "folder or give a manifest with 't1'/'t2' or 'study' columns")


def build_case(source: StudySource, code: str, out: Path) -> list[str]:
    """Write one case folder; returns notes for the user."""
    notes: list[str] = []
    report = _load_report(source)
    config = _config(report, source, notes)
    labels = read_nifti(source.labels, label=True)
    assert isinstance(labels, LabelImage)
    images = {role: _on_grid(image, labels) for role, image in _images(source).items()}
    types = None
    if source.types.is_file():
        types_img = read_nifti(source.types, label=True)
        types = np.asarray(_on_grid(types_img, labels).array)
    array = np.asarray(labels.array)
    affine = labels.affine

    vset = find_vertebrae(array, affine, config.vertebrae)
    for vertebra, name in zip(vset.vertebrae, _level_names(report, len(vset.vertebrae), config), strict=True):
        vertebra.level = name
    codes = lesion_codes(array, types)

    model = _model_lesions(report)
    rows = lesion_rows(codes, affine, vset, config)
    if len(rows) == len(report.lesions) and all((r.level, r.endplate) == (m.level, m.endplate)
                                                for r, m in zip(rows, report.lesions, strict=True)):
        for row, lesion in zip(rows, report.lesions, strict=True):
            if row.type != lesion.type:
                codes.ravel()[row.flat_index] = code_of_type(lesion.type)  # show the reported type
    else:
        notes.append(f"case {code}: the label map gives {len(rows)} lesion(s), the report lists {len(model)}")

    anatomy = np.where(array == LESION, BODY, array).astype(np.uint8)
    out.mkdir(parents=True)
    for role, image in images.items():
        write_blinded_nifti(image, out / CASE_IMAGES[role])
    for name, values in (("anatomy", anatomy), ("vertebrae", vset.instances), ("lesions", codes)):
        write_blinded_nifti(LabelImage(np.asarray(values, dtype=np.uint8), affine.copy()), out / CASE_LABELS[name])
    eligibility = report.eligibility
    info = {
        "format": CASE_FORMAT, "schema_version": CASE_SCHEMA_VERSION, "code": code,
        "shape": list(labels.shape), "voxel_size_mm": [round(float(v), 6) for v in labels.spacing],
        "vertebrae": [vertebra_record(v) for v in vset.vertebrae],
        "model": {"lesions": model,
                  "eligibility": {"eligible": eligibility.eligible,
                                  **({"status": eligibility.status} if eligibility.status is not None else {}),
                                  "reasons": list(eligibility.reasons)}},
        "config": config.to_dict(),
        "files": {**{r: CASE_IMAGES[r] for r in images}, **CASE_LABELS},
    }
    if validating():
        validate_case(json.loads(json.dumps(info)))
    (out / CASE_FILE).write_text(json.dumps(info, indent=1) + "\n")
    confidence = {"verdict_confidence": eligibility.verdict_confidence,
                  "lesions": _lesion_confidences(rows, report, affine)}
    (out / CONFIDENCE_FILE).write_text(json.dumps(confidence, indent=1) + "\n")
    return notes


# --- blinding check -------------------------------------------------------------------------------

def _json_strings(value: Any) -> Iterable[str]:
    """String values (not keys: those are the package's fixed schema) of a JSON document."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif isinstance(value, str):
        yield value


def _nifti_problems(path: Path) -> tuple[list[str], list[str]]:
    """(header texts, problems) of a NIfTI file: gzip name/time, text fields, extensions."""
    raw = path.read_bytes()
    texts: list[str] = []
    problems: list[str] = []
    if raw[:2] == b"\x1f\x8b":
        if raw[3] & 0x08:  # FNAME in the gzip header
            texts.append(raw[10:raw.index(b"\0", 10)].decode("latin-1"))
        if int.from_bytes(raw[4:8], "little"):
            problems.append("gzip header carries a time")
        raw = gzip.decompress(raw)
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for name in TEXT_FIELDS:
        texts.append(bytes(header[name]).decode("latin-1").rstrip("\0"))
    if len(raw) > 352 and raw[348:352] != b"\0\0\0\0":
        problems.append("NIfTI header extensions present")
    return texts, problems


def _hits(text: str, tokens: list[str]) -> list[str]:
    lowered = text.casefold()
    return [t for t in tokens if t.casefold() in lowered]


def check_blinded(folder: Path, tokens: Iterable[str], generated: Iterable[str] = ()) -> list[str]:
    """Problems where an identifier appears in a file name, a JSON value or a NIfTI header.

    Identifiers shorter than MIN_TOKEN characters are not searched (they would match ordinary
    values such as a type "1" or a grade "A"); ``generated`` strings (case codes, package id)
    are skipped.
    """
    tokens = sorted({t.strip() for t in tokens if len(t.strip()) >= MIN_TOKEN}, key=len, reverse=True)
    skip = set(generated)
    problems: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        for part in rel.parts:
            if part not in skip:
                problems.extend(f"{rel.as_posix()}: file name holds {t!r}" for t in _hits(part, tokens))
        if not path.is_file():
            continue
        if path.name.endswith(".json"):
            texts = list(_json_strings(json.loads(path.read_text())))
        elif path.name.endswith((".nii", ".nii.gz")):
            texts, found = _nifti_problems(path)
            problems.extend(f"{rel.as_posix()}: {p}" for p in found)
        else:
            texts = [path.read_text(errors="replace")]
        for text in texts:
            if text not in skip:
                problems.extend(f"{rel.as_posix()}: holds {t!r}" for t in _hits(text, tokens))
    return problems


# --- the command ---------------------------------------------------------------------------------

def pack(inputs: list[Path], package: Path, key: Path | None = None, seed: int | None = None,
         order: str = "random") -> PackResult:
    """Build a reading package from analysis folders / manifests; write its key outside it.

    ``order``: ``random`` (each reader's own shuffle) or ``doubt`` (the cases whose verdict the
    model is least sure of first; each reader's shuffle within equal doubt)."""
    if order not in ORDERS:
        raise InputError(f"reading order must be one of {', '.join(ORDERS)}, not {order!r}")
    package = Path(package)
    key = Path(key) if key is not None else default_key_path(package)
    check_outside(key, package)
    if package.exists() and (not package.is_dir() or any(package.iterdir())):
        raise InputError(f"{package}: exists and is not empty (a package is written once)")
    if key.exists():
        raise InputError(f"{key}: a key file already exists there (a key is never overwritten)")
    sources = find_sources(inputs)
    rng: random.Random = random.Random(seed) if seed is not None else secrets.SystemRandom()
    codes = case_codes(len(sources), rng)
    assignment = dict(zip(codes, sources, strict=True))
    package_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    notes: list[str] = []
    with atomic_output_dir(package) as tmp:
        for code in sorted(assignment):
            log.info("case %s", code)
            notes.extend(build_case(assignment[code], code, tmp / "cases" / code))
        order_seed = f"{rng.getrandbits(64):016x}"
        info: dict[str, Any] = {
            "format": PACKAGE_FORMAT,
            "schema_version": RANDOM_ORDER_SCHEMA_VERSION if order == "random" else PACKAGE_SCHEMA_VERSION,
            "package_id": package_id, "cases": sorted(assignment), "order_seed": order_seed, "order": order}
        if order == "doubt":  # sorted by code like "cases": the order of the keys tells nothing
            info["doubt"] = {code: doubt_of(_load_report(assignment[code])) for code in sorted(assignment)}
        info["written_by"] = f"modicseg {__version__}"
        (tmp / PACKAGE_FILE).write_text(json.dumps(info, indent=1) + "\n")
        tokens = [t for s in sources for t in s.identifiers()]
        problems = check_blinded(tmp, tokens, generated=[*codes, package_id, order_seed])
        if problems:
            shown = "\n  ".join(problems[:10])
            raise BlindingError(f"identifiers would leak into the package; nothing written:\n  {shown}")
        write_key(key, package_id, [KeyEntry(code, s.subject, s.timepoint, s.arm, str(s.folder.resolve()))
                                    for code, s in assignment.items()])
    return PackResult(package=package, key=key, codes=assignment, warnings=notes)
