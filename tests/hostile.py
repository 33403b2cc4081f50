"""Helpers for the bad-input corpus and the fuzz test: a small valid study, in-process CLI runs
with their output, exit status and peak memory, and snapshots of what a run wrote."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import traceback
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import psutil
import pydicom

from modicseg.cli import main
from modicseg.core.convert import save_nifti
from tests.test_analysis_phantoms import DEFAULT_LESIONS, make_phantom, write_phantom_dicom

#: Memory a refused input may cost (the issue's target: < 1 GB).
MEMORY_LIMIT = 1 << 30


@dataclass
class Run:
    rc: int | None  # None: an exception escaped main() (a traceback for a user)
    out: str
    err: str
    peak_bytes: int

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


class _RssSampler(threading.Thread):
    """Largest growth of this process's resident memory while it runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.start_rss = self.process.memory_info().rss
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss - self.start_rss)


def run_cli(argv: list, measure: str = "tracemalloc") -> Run:
    """``modicseg argv`` in this process: exit status, stdout, stderr and peak memory.

    ``measure``: "tracemalloc" (every Python and numpy allocation, exact, but it slows a full
    analysis down a lot: for runs that stop early) or "rss" (growth of the resident memory,
    sampled: for runs that may analyse a whole study).
    """
    out, err = io.StringIO(), io.StringIO()
    sampler = None
    if measure == "tracemalloc":
        tracemalloc.start()
        tracemalloc.reset_peak()
    else:
        sampler = _RssSampler()
        sampler.start()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc: int | None = main([str(a) for a in argv])
            except BaseException:
                err.write(traceback.format_exc())
                rc = None
    finally:
        if sampler is None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            sampler.done.set()
            sampler.join()
            peak = max(sampler.peak, 0)
    return Run(rc, out.getvalue(), err.getvalue(), peak)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root``, with size and modification time for files (to prove nothing was
    written).  Folders count by name only: the output check creates and removes an empty probe
    folder, which leaves nothing behind but changes its parent's modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[str((Path(dirpath) / name).relative_to(root))] = (0, 0)
        for name in filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def make_base(root: Path, in_plane: float = 1.6, seed: int = 0) -> dict[str, Path]:
    """A small valid study: DICOM T1 + T2 (canary identifiers), the exact label map, T1/T2 NIfTI."""
    phantom = make_phantom(DEFAULT_LESIONS, in_plane=in_plane, seed=seed)
    study = write_phantom_dicom(phantom, root / "study")
    save_nifti(phantom.labels, str(root / "labels.nii.gz"))
    save_nifti(phantom.t1, str(root / "t1.nii.gz"))
    save_nifti(phantom.t2, str(root / "t2.nii.gz"))
    return {"root": root, "study": study, "labels": root / "labels.nii.gz", "t1": root / "t1.nii.gz",
            "t2": root / "t2.nii.gz", "phantom": phantom}


def clone(base: Path, target: Path) -> Path:
    shutil.copytree(base, target)
    return target


def series_files(folder: Path) -> list[Path]:
    """The DICOM files of one series folder in slice order (InstanceNumber)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    return sorted(files, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))


def edit(path: Path, **changes) -> None:
    """Set (or, with None, delete) attributes of a DICOM file and write it back as it was written."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
