"""Public DICOM entry points: scan a study into stacks, load one series as one volume."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modicseg.core.image import ScalarImage
from modicseg.io.dicom_scan import FolderScan, scan_folder
from modicseg.io.dicom_volume import build_volume
from modicseg.io.errors import NotAVolumeError
from modicseg.io.stacks import Stack, group_series


@dataclass
class StudyScan:
    """Every stack of every series found in a folder, and what was skipped."""

    root: Path
    stacks: list[Stack]
    folder: FolderScan

    def usable(self) -> list[Stack]:
        return [s for s in self.stacks if s.usable]


def scan_study(path: str | os.PathLike[str]) -> StudyScan:
    """Read all headers under ``path`` and split them into classified stacks (no pixel data)."""
    folder = scan_folder(path)
    return StudyScan(root=Path(path), stacks=group_series(folder.frames), folder=folder)


def load_series(path: str | os.PathLike[str], resample_irregular: bool = False) -> ScalarImage:
    """Load a folder (or file) holding exactly one series that is one 3-D volume.

    Raises NotAVolumeError naming the problem when the series is 4-D, a mosaic, holds several
    stacks (echoes, orientations, image types) or is otherwise not a single 3-D stack.
    """
    scan = scan_study(path)
    series = {s.series_instance_uid for s in scan.stacks}
    if len(series) > 1:
        raise NotAVolumeError(f"{path}: {len(series)} series found; expected one")
    if len(scan.stacks) > 1:
        stack = scan.stacks[0]
        details = "; ".join(f"stack {s.name}: {s.n_slices} images" + (f" ({s.refusal})" if s.refusal else "")
                            for s in scan.stacks)
        raise NotAVolumeError(f"{path}: series {stack.series_number} is not one 3-D volume: "
                              f"{stack.split_reason} [{details}]")
    return build_volume(scan.stacks[0], resample_irregular=resample_irregular)
