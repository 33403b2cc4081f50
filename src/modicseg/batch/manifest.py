"""Which studies a batch runs: a manifest CSV or a folder laid out SUBJECT/TIMEPOINT/.

CSV columns: ``subject``, ``timepoint``, ``path`` (DICOM folder or BIDS-like NIfTI folder), and
optionally ``labels`` (a label map to analyse instead of running the network), ``t1``, ``t2``
(NIfTI files).  Relative paths are relative to the manifest's folder.  Other columns are ignored;
columns that look like a treatment allocation (arm, group, ...) are refused: allocation enters
only ``modicseg outcomes``.

Folder convention: ``ROOT/SUBJECT/TIMEPOINT/`` is one study (its ``dicom/`` subfolder when there
is one); a ``labels.nii.gz`` inside the time point folder is used as its label map.

Time points are ordered baseline first: names like baseline, bl, base, screening, pre, v0, m0, t0,
y0 or 0 come first, the rest in natural order (m12 after m6).  Each later time point is compared
with the first one.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modicseg.io.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BASELINE_NAMES = ("baseline", "bl", "base", "screening", "pre", "v0", "visit0", "m0", "month0", "t0", "y0", "0",
                  "00", "week0", "w0")
ALLOCATION_COLUMNS = ("arm", "arms", "group", "treatment", "allocation", "randomisation", "randomization",
                      "intervention", "placebo")
REQUIRED = ("subject", "timepoint")


@dataclass(frozen=True)
class StudyEntry:
    """One study of one subject at one time point."""

    subject: str
    timepoint: str
    path: Path | None
    labels: Path | None = None
    t1: Path | None = None
    t2: Path | None = None

    def input_paths(self) -> list[Path]:
        """Every path whose content defines this study's analysis."""
        return [p for p in (self.path, self.labels, self.t1, self.t2) if p is not None]


@dataclass
class Manifest:
    """The studies, grouped by subject, time points ordered baseline first."""

    entries: list[StudyEntry]
    source: Path | None = None
    notes: list[str] = field(default_factory=list)

    def subjects(self) -> dict[str, list[StudyEntry]]:
        grouped: dict[str, list[StudyEntry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.subject, []).append(entry)
        return {s: sorted(e, key=lambda x: timepoint_key(x.timepoint)) for s, e in sorted(grouped.items())}

    def comparisons(self) -> list[tuple[StudyEntry, StudyEntry]]:
        """(baseline, follow-up) for every later time point of every subject."""
        return [(entries[0], later) for entries in self.subjects().values() for later in entries[1:]]

    def single_timepoint(self) -> list[StudyEntry]:
        """Entries of subjects with only one time point (no comparison possible)."""
        return [entries[0] for entries in self.subjects().values() if len(entries) == 1]


def timepoint_key(name: str) -> tuple:
    """Sort key: baseline-like names first, then natural order."""
    lowered = name.lower()
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", lowered) if p]
    return (0 if lowered in BASELINE_NAMES else 1, [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in parts])


def is_baseline_name(name: str) -> bool:
    return name.lower() in BASELINE_NAMES


def _check_name(value: str, what: str, where: str) -> str:
    value = value.strip()
    if not NAME.match(value):
        raise InputError(f"{where}: {what} '{value}' must be letters, digits, '.', '_' or '-' "
                         "(it names output folders)")
    return value


def _path(value: str | None, base: Path) -> Path | None:
    if value is None or not value.strip():
        return None
    p = Path(value.strip()).expanduser()
    return p if p.is_absolute() else base / p


def read_csv_manifest(path: Path) -> Manifest:
    """Entries of a manifest CSV (see the module docstring)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest ({exc.strerror})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a CSV manifest ({exc})") from None
    if not rows:
        raise InputError(f"{path}: empty manifest (columns: subject,timepoint,path[,labels,t1,t2])")
    refused = [c for c in header if c in ALLOCATION_COLUMNS]
    if refused:
        raise InputError(f"{path}: column '{refused[0]}' looks like a treatment allocation; keep allocation out of "
                         "the manifest (blinding) and give it only to `modicseg outcomes --arms`")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (need subject,timepoint,path)")
    base = path.parent.absolute()
    entries: list[StudyEntry] = []
    seen: set[tuple[str, str]] = set()
    for number, raw in enumerate(rows, start=2):
        row = {str(k).strip().lower(): (v or "") for k, v in raw.items() if k is not None}
        where = f"{path}:{number}"
        if not any(v.strip() for v in row.values()):
            continue
        subject = _check_name(row["subject"], "subject", where)
        timepoint = _check_name(row["timepoint"], "timepoint", where)
        if (subject, timepoint) in seen:
            raise InputError(f"{where}: subject {subject} time point {timepoint} listed twice")
        seen.add((subject, timepoint))
        entry = StudyEntry(subject, timepoint, _path(row.get("path"), base), _path(row.get("labels"), base),
                           _path(row.get("t1"), base), _path(row.get("t2"), base))
        if entry.path is None and entry.t1 is None and entry.t2 is None:
            raise InputError(f"{where}: no path (or t1/t2) given")
        entries.append(entry)
    return Manifest(entries, source=path)


def read_folder_manifest(root: Path) -> Manifest:
    """Entries of a ROOT/SUBJECT/TIMEPOINT/ tree (see the module docstring)."""
    root = root.absolute()
    entries = []
    notes = []
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not NAME.match(subject_dir.name):
            notes.append(f"{subject_dir}: skipped (not a valid subject name)")
            continue
        for tp_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not NAME.match(tp_dir.name):
                notes.append(f"{tp_dir}: skipped (not a valid time point name)")
                continue
            study = tp_dir / "dicom" if (tp_dir / "dicom").is_dir() else tp_dir
            labels = tp_dir / "labels.nii.gz"
            entries.append(StudyEntry(subject_dir.name, tp_dir.name, study, labels if labels.is_file() else None))
    if not entries:
        raise InputError(f"{root}: no ROOT/SUBJECT/TIMEPOINT/ study folders found")
    return Manifest(entries, source=root, notes=notes)


def read_manifest(path: str | Path) -> Manifest:
    """A manifest CSV or a folder following the convention."""
    p = Path(path)
    if p.is_dir():
        return read_folder_manifest(p)
    if p.is_file():
        return read_csv_manifest(p)
    raise InputError(f"{p}: no such manifest file or folder")


def write_manifest(entries: Iterable[StudyEntry], path: Path) -> None:
    """Write entries as a manifest CSV (absolute paths)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject", "timepoint", "path", "labels", "t1", "t2"])
        for e in entries:
            writer.writerow([e.subject, e.timepoint, *("" if p is None else str(p) for p in
                                                         (e.path, e.labels, e.t1, e.t2))])
