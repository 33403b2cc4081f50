"""Are two DICOM studies of the same patient?  Compared in memory, never stored or printed.

Each PatientID is turned into an HMAC-SHA256 with a random key drawn once per process and never
written anywhere, so the digests cannot be linked back to an identifier outside this process and
are worthless once it ends.  Only the verdict (same / different / unknown) leaves this module.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from modicseg.io.dicom_scan import iter_files

_KEY = secrets.token_bytes(32)  # per process, in memory only

#: at most this many DICOM files are opened per study to read the patient ID
MAX_FILES = 64


def _digest(value: str) -> str:
    return hmac.new(_KEY, value.strip().encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def patient_digests(study: str | Path | None, max_files: int = MAX_FILES) -> set[str]:
    """Keyed digests of the PatientIDs found in a DICOM study (empty: not DICOM or no ID)."""
    if study is None:
        return set()
    root = Path(study)
    if not root.exists():
        return set()
    digests: set[str] = set()
    opened = 0
    for path in iter_files(root):
        if opened >= max_files:
            break
        if not _looks_like_dicom(path):
            continue
        opened += 1
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        except (InvalidDicomError, OSError, ValueError):
            continue
        value = str(ds.get("PatientID", "") or "")
        if value.strip():
            digests.add(_digest(value))
    return digests


def same_patient(baseline: str | Path | None, followup: str | Path | None) -> bool | None:
    """True / False when both studies carry a PatientID, None when that cannot be decided."""
    first, second = patient_digests(baseline), patient_digests(followup)
    if not first or not second:
        return None
    return bool(first & second)
