"""The studies a reading package is built from: ``analyze`` output folders and who they belong to.

``review pack`` takes folders and/or a CSV manifest:

* a folder holding ``report.json`` and ``labels.nii.gz`` is one analysis; any other folder is
  searched recursively for such folders.  Subject and time point come from BIDS-like path parts
  (``sub-001/ses-baseline`` or ``sub-001_ses-baseline``); without them the subject is the folder's
  path relative to the argument and the time point is empty.
* a ``.csv`` manifest has a header with ``analysis`` and ``subject`` and optionally ``timepoint``,
  ``arm``, ``t1``, ``t2`` (NIfTI files) and ``study`` (the DICOM or NIfTI study that was analysed);
  paths are relative to the CSV's folder.

T1 and T2 come from the manifest's ``t1``/``t2``, else from the analysis folder (``t1.nii.gz`` /
``t2.nii.gz``, or BIDS-like ``*_T1w.nii.gz`` / ``*_T2w.nii.gz``), else from the manifest's
``study`` (loaded like ``analyze`` does, T1 put on the T2 grid); they are resampled onto the
label grid when needed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from modicseg.io.errors import InputError

REPORT = "report.json"
LABELS = "labels.nii.gz"
TYPES = "types.nii.gz"

_ENTITY = re.compile(r"(?:^|[_/\\])(sub|ses)-([A-Za-z0-9]+)")
_IMAGE_NAMES = {
    "t1": ("t1.nii.gz", "t1.nii", "t1w.nii.gz", "t1w.nii", "t1_on_t2.nii.gz"),
    "t2": ("t2.nii.gz", "t2.nii", "t2w.nii.gz", "t2w.nii"),
}


@dataclass
class StudySource:
    """One analysed study and its identity (which never enters a package)."""

    folder: Path
    subject: str
    timepoint: str = ""
    arm: str = ""
    t1: Path | None = None
    t2: Path | None = None
    study: Path | None = None

    @property
    def report(self) -> Path:
        return self.folder / REPORT

    @property
    def labels(self) -> Path:
        return self.folder / LABELS

    @property
    def types(self) -> Path:
        return self.folder / TYPES

    def identifiers(self) -> list[str]:
        """Strings that must not appear in a package: subject, time point, arm, folder names.

        Folder names are included when they hold a digit (generic names such as "analysis"
        identify nobody and would match ordinary words).
        """
        values = [self.subject, self.timepoint, self.arm, str(self.folder.resolve())]
        for path in (self.folder, self.study):
            if path is not None:
                values += [p for p in Path(path).resolve().parts[-3:] if any(c.isdigit() for c in p)]
        return [v for v in values if v]


def is_analysis_folder(folder: Path) -> bool:
    return (folder / REPORT).is_file() and (folder / LABELS).is_file()


def find_image(folder: Path, role: str) -> Path | None:
    """The T1 or T2 NIfTI file of an analysis folder, if it holds one."""
    if not folder.is_dir():
        return None
    files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    for name in _IMAGE_NAMES[role]:
        if name in files:
            return files[name]
    suffix = f"_{role}w.nii"
    matches = sorted(p for n, p in files.items() if n.endswith((suffix, suffix + ".gz")))
    return matches[0] if len(matches) == 1 else None


def identity_from_path(relative: Path) -> tuple[str, str]:
    """(subject, time point) from BIDS-like ``sub-``/``ses-`` parts, else (path, "")."""
    entities: dict[str, str] = {}
    for key, value in _ENTITY.findall(relative.as_posix()):
        entities.setdefault(key, value)
    if "sub" in entities:
        return entities["sub"], entities.get("ses", "")
    return relative.as_posix(), ""


def _from_folder(root: Path) -> list[StudySource]:
    if is_analysis_folder(root):
        resolved = root.resolve()
        tail = Path(*resolved.parts[-3:])
        subject, timepoint = identity_from_path(tail)
        if subject == tail.as_posix():  # no sub- entity: the folder's name is the subject
            subject = resolved.name
        return [StudySource(root, subject, timepoint, t1=find_image(root, "t1"), t2=find_image(root, "t2"))]
    found = sorted(p.parent for p in root.rglob(REPORT) if is_analysis_folder(p.parent))
    if not found:
        raise InputError(f"{root}: no analysis folder (report.json + labels.nii.gz) found")
    sources = []
    for folder in found:
        subject, timepoint = identity_from_path(folder.relative_to(root))
        sources.append(StudySource(folder, subject, timepoint, t1=find_image(folder, "t1"),
                                   t2=find_image(folder, "t2")))
    return sources


def read_manifest(path: Path) -> list[StudySource]:
    """Studies listed in a CSV manifest (see the module docstring)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest ({exc.strerror})") from None
    base = path.parent
    sources = []
    for number, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get("analysis") or not row.get("subject"):
            raise InputError(f"{path}, line {number}: 'analysis' and 'subject' are required")
        folder = (base / row["analysis"]).resolve()
        if not is_analysis_folder(folder):
            raise InputError(f"{path}, line {number}: {folder} is not an analysis folder "
                             "(report.json + labels.nii.gz)")
        images: dict[str, Path | None] = {}
        for role in ("t1", "t2"):
            given = row.get(role)
            if given:
                named = (base / given).resolve()
                if not named.is_file():
                    raise InputError(f"{path}, line {number}: {role.upper()} file {named} not found")
                images[role] = named
            else:
                images[role] = find_image(folder, role)
        study = (base / row["study"]).resolve() if row.get("study") else None
        if study is not None and not study.exists():
            raise InputError(f"{path}, line {number}: study {study} not found")
        sources.append(StudySource(folder, row["subject"], row.get("timepoint", ""), row.get("arm", ""),
                                   t1=images["t1"], t2=images["t2"], study=study))
    if not sources:
        raise InputError(f"{path}: the manifest lists no study")
    return sources


def find_sources(paths: list[Path]) -> list[StudySource]:
    """Every study named by folders and manifests; (subject, time point) must be unique."""
    sources: list[StudySource] = []
    for path in paths:
        path = Path(path)
        if path.is_file() and path.suffix.lower() == ".csv":
            sources.extend(read_manifest(path))
        elif path.is_dir():
            sources.extend(_from_folder(path))
        else:
            raise InputError(f"{path}: not an analysis folder, a folder of them, or a .csv manifest")
    seen: dict[tuple[str, str], Path] = {}
    for source in sources:
        key = (source.subject, source.timepoint)
        if key in seen:
            raise InputError(f"subject {source.subject!r} time point {source.timepoint!r} appears twice "
                             f"({seen[key]} and {source.folder}); give a manifest with distinct time points")
        seen[key] = source.folder
    return sources
