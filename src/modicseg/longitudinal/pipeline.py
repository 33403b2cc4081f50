"""``compare``: baseline and follow-up in, a :class:`ChangeReport` out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.image import LabelImage, ScalarImage
from modicseg.core.labels import ALL_LEVELS, SUPERIOR
from modicseg.io.errors import InputError, ModicsegError
from modicseg.longitudinal.change import ChangeReport
from modicseg.longitudinal.classify import change_row, summarise
from modicseg.longitudinal.identity import same_patient
from modicseg.longitudinal.matching import match_lesions
from modicseg.longitudinal.registration import register_followup
from modicseg.longitudinal.timepoint import Timepoint, from_report, is_analysis_folder, load_timepoint
from modicseg.longitudinal.writers import write_change
from modicseg.report.models import Lesion

log = logging.getLogger(__name__)


class SubjectMismatchError(ModicsegError):
    """Baseline and follow-up are DICOM studies of different patients."""


@dataclass
class Side:
    """One time point as given: a study folder, an analysis folder, a Report or a Timepoint."""

    source: Any
    study: Path | None = None  # study folder (identity check, T2) when ``source`` is an analysis
    labels: LabelImage | str | Path | None = None  # label map to analyse instead of the network

    def study_path(self) -> Path | None:
        if self.study is not None:
            return Path(self.study)
        if isinstance(self.source, (str, Path)) and not is_analysis_folder(self.source):
            return Path(self.source)
        return None


def check_identity(baseline: Side, followup: Side, allow_different: bool = False) -> bool | None:
    """same_patient of both studies; SubjectMismatchError when they differ (unless allowed)."""
    verdict = same_patient(baseline.study_path(), followup.study_path())
    if verdict is False and not allow_different:
        raise SubjectMismatchError("subject mismatch: baseline and follow-up are studies of different patients "
                                   "(DICOM PatientIDs differ); pass --allow-different-patients to compare anyway")
    return verdict


def reference_image(study: Path, grid: LabelImage) -> ScalarImage | None:
    """The study's T2 (or T1) on ``grid``, for registration and the QC figure; None if unreadable."""
    from modicseg.core.resample import resample_to
    from modicseg.io.study import StudyRequest, open_study

    try:
        opened = open_study(StudyRequest(path=Path(study)), require=())
    except (ModicsegError, OSError, ValueError) as exc:
        log.warning("cannot re-open %s for its T2: %s", study, exc)
        return None
    image = opened.t2 if opened.t2 is not None else opened.t1
    if image is None:
        return None
    return image if image.same_grid(grid) else resample_to(image, grid)


def resolve(side: Side, config: Any = None, model: Any = None) -> tuple[Timepoint, Any]:
    """(Timepoint, the Report when analysed now else None)."""
    source = side.source
    if isinstance(source, Timepoint):
        return source, None
    if hasattr(source, "lesion_map") and hasattr(source, "to_dict"):
        return from_report(source, side.study_path()), source
    path = Path(source)
    if is_analysis_folder(path):
        tp = load_timepoint(path, study_path=side.study_path())
        if tp.t2 is None and side.study is not None:
            tp.t2 = reference_image(Path(side.study), tp.labels)
        return tp, None
    if not path.exists():
        raise InputError(f"{path}: no such study or analysis folder")
    from modicseg.pipeline import analyze

    report = analyze(path, labels=side.labels, config=config, model=model)
    return from_report(report, path), report


def _level_of_followup(lesion: Lesion, baseline: Timepoint, pairs: dict[int, int]) -> str | None:
    inverse = {f: b for b, f in pairs.items()}
    vertebra = baseline.vertebra(inverse[lesion.vertebra]) if lesion.vertebra in inverse else None
    return (vertebra.level if vertebra is not None else None) or lesion.level


def _order(row: dict[str, Any]) -> tuple:
    level = row.get("level")
    index = ALL_LEVELS.index(level) if level in ALL_LEVELS else len(ALL_LEVELS)
    return index, row.get("endplate") != SUPERIOR, row.get("baseline_id") is None, row.get("followup_id") or 0


def compare_timepoints(baseline: Timepoint, followup: Timepoint, same: bool | None = None,
                       subject: str | None = None, refine: bool = True) -> ChangeReport:
    """Register, match and classify two analysed time points."""
    registration = register_followup(baseline, followup, refine_intensity=refine)
    pairs = match_lesions(baseline, followup, registration)
    rows = []
    for pair in pairs:
        b = baseline.lesion(pair.baseline_id) if pair.baseline_id is not None else None
        f = followup.lesion(pair.followup_id) if pair.followup_id is not None else None
        level = b.level if b else _level_of_followup(f, baseline, registration.vertebra_pairs)  # type: ignore[arg-type]
        rows.append(change_row(pair, b, f, level))
    rows.sort(key=_order)
    warnings = list(registration.warnings)
    if same is None:
        warnings.append("patient identity not checked (no DICOM PatientID at one or both time points)")
    if not np.isclose(baseline.labels.voxel_volume_mm3, followup.labels.voxel_volume_mm3, rtol=0.05):
        warnings.append("voxel sizes differ between time points: small volume changes may reflect resolution")
    summary = summarise(rows, baseline.lesions, followup.lesions)
    return ChangeReport(rows=rows, summary=summary, registration=registration, baseline=baseline,
                        followup=followup, same_patient=same, subject=subject, warnings=warnings)


def compare(baseline: Side | Any, followup: Side | Any, config: Any = None, model: Any = None,
            subject: str | None = None, allow_different_patients: bool = False,
            refine: bool = True) -> tuple[ChangeReport, dict[str, Any]]:
    """Compare two time points; returns the report and the analyses run now ({"baseline": Report, ...})."""
    sides = {"baseline": baseline if isinstance(baseline, Side) else Side(baseline),
             "followup": followup if isinstance(followup, Side) else Side(followup)}
    same = check_identity(sides["baseline"], sides["followup"], allow_different_patients)
    timepoints, analysed = {}, {}
    for name, side in sides.items():
        timepoints[name], report = resolve(side, config, model)
        if report is not None:
            analysed[name] = report
    change = compare_timepoints(timepoints["baseline"], timepoints["followup"], same, subject, refine)
    if same is False:
        change.warnings.insert(0, "baseline and follow-up are studies of DIFFERENT patients (compared on request)")
    return change, analysed


def write_comparison(change: ChangeReport, analysed: dict[str, Any], folder: Path, figure: bool = True) -> None:
    """change.json, change.csv, qc.png and the analyses run now (baseline/, followup/) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    from modicseg.report.writers import write_report

    for name, report in analysed.items():
        write_report(report, folder / name, qc=figure)
    write_change(change, folder, figure=figure)
