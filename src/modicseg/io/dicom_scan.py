"""Walk a study folder and read the header of every DICOM file in it.

Files may have any name and lie in any order; DICOMDIR files, non-DICOM files and non-image
objects are skipped and counted.  A file that starts like DICOM but cannot be parsed is an error
naming the file.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from modicseg.io.dicom_headers import MR_IMAGE_SOP_CLASSES, FrameHeader, frames_of
from modicseg.io.errors import InputError
from modicseg.io.fast_header import fast_classic_frame
from modicseg.io.integrity import check_dicom_sizes

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class FolderScan:
    """Every MR image frame found under a folder, and what was skipped."""

    root: Path
    frames: list[FrameHeader] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    n_files: int = 0

    def skipped_summary(self) -> str:
        if not self.skipped:
            return "nothing skipped"
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) >= 132 and head[128:132] == b"DICM"


def _is_regular(path: Path) -> bool:
    """A regular file (after following links): never a FIFO, socket or device, which can block reads."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # a dangling link, or no permission to look
        return False


def walk_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(regular files, everything else: FIFOs, sockets, devices, dangling links) under ``root``.

    Sorted, hidden files included; ``root`` itself when it is a file.  Nothing is opened here,
    and nothing but a regular file is ever opened later: opening a named pipe blocks forever.
    """
    if not root.is_dir():
        return ([root], []) if _is_regular(root) else ([], [root])
    files: list[Path] = []
    special: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            (files if _is_regular(path) else special).append(path)
    return files, special


def iter_files(root: Path) -> list[Path]:
    """All regular files under ``root`` (sorted, hidden files included), or root itself."""
    return walk_files(root)[0]


def read_header(path: Path) -> pydicom.Dataset | None:
    """The parsed DICOM file (large values deferred); None when the file is not DICOM.

    A file that has the DICOM preamble but cannot be parsed completely is an InputError that
    names it: pydicom's tolerant reader would otherwise hand back a silently truncated header.
    """
    has_magic = _looks_like_dicom(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # one read per file: values over 4 KB (pixel data, private blobs) are deferred and
            # fetched from the file only when used
            ds = pydicom.dcmread(path, defer_size="4 KB", force=not has_magic)
    except InvalidDicomError:
        if has_magic:
            raise InputError(f"{path}: corrupt DICOM file (header cannot be parsed)") from None
        return None
    except (EOFError, OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        if has_magic:
            raise InputError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
        return None
    if not has_magic:
        # without a preamble only accept something that clearly is an image object
        return ds if not caught and "SOPClassUID" in ds and "Rows" in ds else None
    problems = [str(w.message) for w in caught if "End of file" in str(w.message)
                or "delimiter" in str(w.message) or "Expected explicit VR" in str(w.message)]
    meta = getattr(ds, "file_meta", None)
    meta_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    if not problems and (meta is None or "TransferSyntaxUID" not in meta
                         or not (meta_class or "SOPClassUID" in ds)):
        # the DICM magic followed by something that is not a DICOM data set
        raise InputError(f"{path}: corrupt DICOM file (DICM preamble, but no valid file meta information "
                         "or SOP class follows)")
    if problems or (meta_class in MR_IMAGE_SOP_CLASSES and ("Rows" not in ds or "SOPClassUID" not in ds)):
        detail = problems[0] if problems else "image attributes missing"
        raise InputError(f"{path}: corrupt or truncated DICOM header ({detail.split(' in file ')[0]})")
    return ds


def scan_folder(root: str | os.PathLike[str]) -> FolderScan:
    """Read the headers of every file under ``root`` and collect the MR image frames."""
    root = Path(root)
    if not os.path.lexists(root):
        raise InputError(f"{root}: no such file or folder")
    files, special = walk_files(root)
    if not root.is_dir() and not files:
        raise InputError(f"{root}: not a regular file or folder (a pipe, socket or device is never read)")
    scan = FolderScan(root=root, n_files=len(files))
    if special:
        scan.skipped["special files (pipes, sockets, devices, dangling links; never opened)"] += len(special)
    if not files:
        raise InputError(f"{root}: empty folder (no regular files; {scan.skipped_summary()})" if special
                         else f"{root}: empty folder (no files)")
    seen_sops: set[tuple[str, str]] = set()
    for path in files:
        fast = fast_classic_frame(path)  # a plain classic MR file: no pydicom (same record)
        if fast is not None:
            key = (fast.sop_instance_uid, fast.series_instance_uid)
            if key in seen_sops:
                scan.skipped["duplicate copies of one SOP instance"] += 1
            else:
                seen_sops.add(key)
                scan.frames.append(fast)
            continue
        ds = read_header(path)
        if ds is None:
            scan.skipped["non-DICOM files"] += 1
            continue
        sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            scan.skipped["DICOMDIR files"] += 1
            continue
        if "Rows" not in ds or "Columns" not in ds:
            scan.skipped["non-image DICOM objects"] += 1
            continue
        if str(ds.get("Modality", "")) != "MR" or sop_class not in MR_IMAGE_SOP_CLASSES:
            scan.skipped["non-MR images"] += 1
            continue
        key = (str(ds.get("SOPInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
        if key in seen_sops:
            scan.skipped["duplicate copies of one SOP instance"] += 1
            continue
        seen_sops.add(key)
        check_dicom_sizes(ds, path)  # declared sizes against the bytes present, before any record
        try:
            scan.frames.extend(frames_of(ds, path))
        except Exception as exc:  # malformed functional groups and the like
            raise InputError(f"{path}: unreadable MR header ({type(exc).__name__}: {exc})") from None
    if not scan.frames:
        raise InputError(
            f"{root}: no MR images found among {scan.n_files} files ({scan.skipped_summary()})"
        )
    return scan
