"""One reader working through a package: worklist, open a case, lesion rows, decisions, save.

No GUI here: the napari widget shows what a :class:`ReviewSession` holds and forwards the
reader's actions.  Lesion arrays handed in and out are in display order (see
``volumes.DisplayGrid``); saved masks are on the case's own grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modicseg.analysis.config import AnalysisConfig
from modicseg.analysis.eligibility import Eligibility
from modicseg.analysis.vertebrae import VertebraSet
from modicseg.core.image import LabelImage
from modicseg.review.activity import ActivityClock
from modicseg.review.codes import code_of_type
from modicseg.review.db import LESION_COLUMNS, ReadRecord, ReadStore
from modicseg.review.lesion_table import LesionRow, compare_with_model, eligibility, lesion_rows
from modicseg.review.package import Case, Package, reader_key
from modicseg.review.volumes import DisplayGrid


@dataclass
class LevelMark:
    """Where to write a vertebra's level name (display indices, rows and columns)."""

    level: str
    row: float
    column: float
    slice: float


@dataclass
class CaseState:
    """A case as one reader sees it: display arrays, the model's lesions, the reader's decisions."""

    case: Case
    grid: DisplayGrid
    affine: np.ndarray
    images: dict[str, np.ndarray]  # "t1", "t2" in display order
    anatomy: np.ndarray  # display order
    lesions: np.ndarray  # display order, uint8 codes: edited in place by the viewer
    vset: VertebraSet
    config: AnalysisConfig
    model_rows: list[LesionRow]
    decisions: dict[int, str] = field(default_factory=dict)
    comment: str = ""
    status: str = "new"  # "new", "in_progress", "done"
    revision: int = 0
    activity: ActivityClock = field(default_factory=ActivityClock)

    @property
    def code(self) -> str:
        return self.case.code

    @property
    def scale(self) -> tuple[float, float, float]:
        return self.grid.scale

    def grid_codes(self, lesions: np.ndarray | None = None) -> np.ndarray:
        """The lesion codes on the case's grid."""
        return self.grid.from_display(self.lesions if lesions is None else lesions)

    def rows(self, lesions: np.ndarray | None = None) -> list[LesionRow]:
        """Lesion rows of the current (or given) display array, with status against the model."""
        if lesions is not None:
            self.lesions = lesions
        current = lesion_rows(self.grid_codes(), self.affine, self.vset, self.config)
        return compare_with_model(current, self.model_rows, self.grid.shape, self.decisions)

    def eligibility(self, rows: list[LesionRow] | None = None) -> Eligibility:
        return eligibility(self.rows() if rows is None else rows, self.config)

    def display_index(self, flat_index: np.ndarray) -> tuple[np.ndarray, ...]:
        """Display-order index arrays of voxels given as flat indices on the case's grid."""
        ijk = np.stack(np.unravel_index(np.asarray(flat_index), self.grid.shape), axis=1)
        shown = self.grid.index_to_display(ijk).astype(np.int64)
        return tuple(shown[:, axis] for axis in range(3))

    def display_centre(self, row: LesionRow) -> np.ndarray:
        return self.grid.index_to_display(np.asarray([row.centre_ijk]))[0]

    def confidence(self, row: LesionRow) -> float | None:
        """The model's confidence (0..1) that the lesion ``row`` is (or, edited, started from) is real;
        None for a lesion the reader added, or when the package has none (``confidence.json``)."""
        return self.case.lesion_confidence(row.model_id)

    def model_row(self, model_id: int | None) -> LesionRow | None:
        return next((r for r in self.model_rows if r.id == model_id), None)

    def restore_values(self, row: LesionRow) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """(display indices, codes) that put a rejected model lesion back (only where now empty)."""
        model = self.model_row(row.model_id)
        if model is None:
            return tuple(np.zeros(0, np.int64) for _ in range(3)), np.zeros(0, np.uint8)
        original = self.case.labels("lesions").array.ravel()[model.flat_index].astype(np.uint8)
        index = self.display_index(model.flat_index)
        empty = self.lesions[index] == 0
        return tuple(a[empty] for a in index), original[empty]

    def type_values(self, row: LesionRow, type_name: str) -> tuple[tuple[np.ndarray, ...], int]:
        """(display indices, code) that give every voxel of ``row`` the type ``type_name``."""
        return self.display_index(row.flat_index), code_of_type(type_name)

    def level_marks(self, gap_mm: float = 6.0) -> list[LevelMark]:
        """Level names placed in front of each vertebral body (anterior to it)."""
        marks = []
        for v in self.vset.vertebrae:
            if not v.level:
                continue
            point = v.centre_ras + v.ap_axis_ras * (v.anterior_mm + gap_mm)
            index = self.grid.world_to_display(point[None])[0]
            marks.append(LevelMark(v.level, float(index[1]), float(index[2]), float(index[0])))
        return marks

    def elapsed(self, reset: bool = True) -> float:
        """Reading seconds of this case since it was opened or last saved (see ``ActivityClock``)."""
        return self.activity.elapsed(reset)


def load_case(case: Case, lesions_grid: np.ndarray | None = None) -> CaseState:
    """Display arrays and model rows of a case; ``lesions_grid`` replaces the predicted lesions."""
    predicted = case.labels("lesions")
    grid = DisplayGrid.of(predicted)
    config = case.config
    instances = np.asarray(case.labels("vertebrae").array)
    vset = case.vertebra_set(instances)
    predicted_codes = np.asarray(predicted.array, dtype=np.uint8)
    model_rows = lesion_rows(predicted_codes, predicted.affine, vset, config)
    images = {}
    for role in ("t1", "t2"):
        image = case.image(role)
        if image is not None:
            images[role] = grid.to_display(image.array)
    codes = predicted_codes if lesions_grid is None else np.asarray(lesions_grid, dtype=np.uint8)
    return CaseState(case=case, grid=grid, affine=predicted.affine, images=images,
                     anatomy=grid.to_display(np.asarray(case.labels("anatomy").array, dtype=np.uint8)),
                     lesions=grid.to_display(codes), vset=vset, config=config, model_rows=model_rows)


class ReviewSession:
    """A reader's pass through a package's worklist, saving to a ReadStore."""

    def __init__(self, package: Package, store: ReadStore, reader: str):
        reader_key(reader)  # refuses an empty name
        self.package = package
        self.store = store
        self.reader = " ".join(reader.split())
        self.worklist = package.worklist(reader)
        self.index = -1
        self.current: CaseState | None = None

    @classmethod
    def open(cls, package: str | Path | Package, reader: str, db_url: str | None = None,
             masks_dir: str | Path | None = None) -> ReviewSession:
        pkg = package if isinstance(package, Package) else Package.open(package)
        store = ReadStore(db_url or pkg.default_db_url, masks_dir or pkg.default_masks_dir)
        return cls(pkg, store, reader)

    # --- navigation -----------------------------------------------------------------------------
    def resume(self) -> CaseState:
        """Open the first case of the worklist this reader has not finished."""
        return self.open_index(self.store.resume_index(self.package.package_id, self.reader, self.worklist))

    def open_index(self, index: int) -> CaseState:
        index = int(np.clip(index, 0, len(self.worklist) - 1))
        code = self.worklist[index]
        case = self.package.case(code)
        record = self.store.get_read(self.package.package_id, code, self.reader)
        saved = self.store.load_mask(record) if record is not None else None
        state = load_case(case, saved)
        if record is not None:
            state.comment = record.comment
            state.status = record.status
            state.revision = record.revision
            state.decisions = {les["model_id"]: "accepted" for les in record.lesions
                               if les["status"] == "accepted" and les["model_id"] is not None}
        self.index, self.current = index, state
        return state

    def move(self, step: int, status: str | None = None) -> CaseState:
        """Save the current case (keeping its status unless given) and open the one ``step`` away."""
        if self.current is not None:
            self.save(status=status)
        return self.open_index(self.index + step)

    @property
    def position(self) -> tuple[int, int]:
        """(1-based position, number of cases)."""
        return self.index + 1, len(self.worklist)

    def progress(self) -> tuple[int, int]:
        """(cases done, cases in the worklist)."""
        statuses = self.store.statuses(self.package.package_id, self.reader)
        return sum(1 for s in statuses.values() if s == "done"), len(self.worklist)

    # --- saving ---------------------------------------------------------------------------------
    def save(self, lesions: np.ndarray | None = None, status: str | None = None,
             comment: str | None = None) -> ReadRecord:
        """Save the current case (one transaction); ``status="done"`` accepts pending lesions."""
        state = self.current
        if state is None:
            raise RuntimeError("no case open")
        if comment is not None:
            state.comment = comment
        status = status or ("done" if state.status == "done" else "in_progress")
        rows = state.rows(lesions)
        if status == "done":
            for row in rows:
                if row.status == "pending" and row.model_id is not None:
                    state.decisions[row.model_id] = "accepted"
                    row.status = "accepted"
        decision = state.eligibility(rows)
        records = [{k: v for k, v in row.record().items() if k in LESION_COLUMNS} for row in rows]
        mask = LabelImage(state.grid_codes(), state.affine.copy())
        record = self.store.save_read(self.package.package_id, state.code, self.reader, mask=mask, lesions=records,
                                      status=status, comment=state.comment, eligible=decision.eligible,
                                      seconds=state.elapsed())
        state.status, state.revision = record.status, record.revision
        return record

    def close(self) -> None:
        self.store.close()
