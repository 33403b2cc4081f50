"""One analysed time point: the report's content plus the maps the comparison needs.

Built either from an in-memory :class:`~modicseg.analysis.result.Report` or from a finished
``modicseg analyze`` output folder (report.json + labels.nii.gz [+ types.nii.gz]); in the latter
case the vertebra instances and lesion ids are recomputed from the label map with the analysis
stage's own functions and the report's configuration, and checked against the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.convert import load_nifti
from modicseg.core.image import LabelImage, ScalarImage
from modicseg.io.errors import InputError
from modicseg.report.models import Lesion, ReportDocument, Vertebra
from modicseg.report.writers import report_document

REPORT_FILE = "report.json"
LABELS_FILE = "labels.nii.gz"
TYPES_FILE = "types.nii.gz"
#: optional maps written by ``modicseg batch`` next to an analysis (recomputed when absent)
LESION_MAP_FILE = "lesion_map.nii.gz"
INSTANCES_FILE = "instances.nii.gz"
#: file names an analysis folder may hold the reference image under (first found is used)
T2_FILES = ("t2.nii.gz", "T2w.nii.gz", "study_T2w.nii.gz", "reference.nii.gz")


@dataclass
class Timepoint:
    """What ``compare`` needs of one analysed study."""

    report: ReportDocument  # report.json, typed
    labels: LabelImage  # 0 background, 1 body, 2 disc, 3 lesion
    lesion_map: np.ndarray  # 0 none, i = lesion id i (ids of report.lesions)
    instances: np.ndarray  # 0 none, i = vertebra label i
    types: LabelImage | None = None
    t2: ScalarImage | None = None  # reference image on the label grid (T2, or T1 without T2)
    source: str = "analysed"  # "analysed" (now) or "reused" (read from a folder)
    study_path: Path | None = None  # the study it came from, when known (identity check)

    @property
    def lesions(self) -> list[Lesion]:
        return list(self.report.lesions)

    @property
    def vertebrae(self) -> list[Vertebra]:
        return list(self.report.vertebrae)

    def lesion(self, lesion_id: int) -> Lesion:
        return self.report.lesion(lesion_id)

    def vertebra(self, label: int) -> Vertebra | None:
        return self.report.vertebra(label)


def from_report(report: Any, study_path: Path | None = None) -> Timepoint:
    """A time point from an in-memory analysis Report."""
    reference = report.t2 if report.t2 is not None else report.t1
    return Timepoint(report=report_document(report), labels=report.labels, lesion_map=np.asarray(report.lesion_map),
                     instances=np.asarray(report.instances), types=report.types, t2=reference,
                     source="analysed", study_path=study_path)


def is_analysis_folder(path: str | Path) -> bool:
    """Whether ``path`` is a finished ``modicseg analyze`` output folder."""
    p = Path(path)
    return (p / REPORT_FILE).is_file() and (p / LABELS_FILE).is_file()


def load_timepoint(folder: str | Path, t2: ScalarImage | None = None,
                   study_path: Path | None = None) -> Timepoint:
    """A time point from an analysis output folder (report.json + labels.nii.gz).

    The lesion and vertebra maps are read from lesion_map.nii.gz / instances.nii.gz when a batch
    saved them, else recomputed from the label map with the report's configuration.
    """
    from modicseg.analysis.config import AnalysisConfig
    from modicseg.analysis.lesions import find_lesions
    from modicseg.analysis.vertebrae import find_vertebrae

    folder = Path(folder)
    if not is_analysis_folder(folder):
        raise InputError(f"{folder}: not an analysis folder (needs {REPORT_FILE} and {LABELS_FILE})")
    report = ReportDocument.load(folder / REPORT_FILE)  # ReportFileError (an InputError) names the file and field
    labels = load_nifti(folder / LABELS_FILE, LabelImage)
    types = load_nifti(folder / TYPES_FILE, LabelImage) if (folder / TYPES_FILE).is_file() else None
    maps = _saved_maps(folder, labels, report)
    if maps is None:
        config = AnalysisConfig.from_dict(report.config, source=str(folder / REPORT_FILE))
        array = np.asarray(labels.array)
        vset = find_vertebrae(array, labels.affine, config.vertebrae)
        lset = find_lesions(array, labels.affine, vset, config.lesions)
        _check_consistent(report, vset, lset, folder)
        maps = (lset.lesion_map, vset.instances)
    if t2 is None:
        for name in T2_FILES:
            if (folder / name).is_file():
                t2 = load_nifti(folder / name, ScalarImage)
                break
    if t2 is not None and not t2.same_grid(labels):
        from modicseg.core.resample import resample_to

        t2 = resample_to(t2, labels)
    return Timepoint(report=report, labels=labels, lesion_map=maps[0], instances=maps[1],
                     types=types, t2=t2, source="reused", study_path=study_path)


def _saved_maps(folder: Path, labels: LabelImage, report: ReportDocument) -> tuple[np.ndarray, np.ndarray] | None:
    """(lesion map, instances) saved next to the analysis, when present and consistent with it."""
    if not ((folder / LESION_MAP_FILE).is_file() and (folder / INSTANCES_FILE).is_file()):
        return None
    lesion_map = load_nifti(folder / LESION_MAP_FILE, LabelImage)
    instances = load_nifti(folder / INSTANCES_FILE, LabelImage)
    if not (lesion_map.same_grid(labels) and instances.same_grid(labels)):
        return None
    ids = set(np.unique(lesion_map.array).tolist()) - {0}
    labels_found = set(np.unique(instances.array).tolist()) - {0}
    if ids != {les.id for les in report.lesions} or labels_found != {v.label for v in report.vertebrae}:
        return None
    return np.asarray(lesion_map.array), np.asarray(instances.array)


def _check_consistent(report: ReportDocument, vset: Any, lset: Any, folder: Path) -> None:
    lesions = report.lesions
    if len(lesions) != len(lset.lesions) or len(report.vertebrae) != len(vset.vertebrae):
        raise InputError(f"{folder}: {LABELS_FILE} does not reproduce the lesions of {REPORT_FILE} "
                         "(was it edited? re-run the analysis)")
    for record, lesion in zip(lesions, lset.lesions, strict=True):
        centre = np.asarray(record.centre_ras, dtype=float)
        if record.id != lesion.id or np.linalg.norm(centre - lesion.centre_ras) > 1.0:
            raise InputError(f"{folder}: lesion {record.id} of {REPORT_FILE} does not match {LABELS_FILE}")
