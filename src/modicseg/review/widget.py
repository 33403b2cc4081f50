"""The "Modic review" dock widget: a reader's worklist, the case, its lesion table, decisions.

Built with qtpy (any Qt binding).  The reader enters a name, the widget opens the first case of
their worklist they have not finished and shows T1/T2, anatomy outlines, level names and the
predicted lesions (editable).  The lesion table is recomputed whenever the lesion layer's voxels
change (painting, erasing, fill, undo) or a type is changed in the table.  Saving happens on
Save, Previous/Next, Done and when the lesion layer leaves the viewer (the window closes).  The
window title and everything shown carry the case code only.  The table's *Confidence* column shows
the model's probability that each of its lesions is real; the reader can hide it (*Show
confidence*), and ``show_confidence=False`` (``review open --hide-confidence``) hides it for the
whole session, without the choice to show it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from modicseg.io.errors import ModicsegError
from modicseg.review.activity import IDLE_AFTER_S
from modicseg.review.codes import CODE_COLOURS, READER_TYPES, code_of_type
from modicseg.review.lesion_table import LesionRow
from modicseg.review.napari_reader import case_layers
from modicseg.review.package import Package
from modicseg.review.session import CaseState, ReviewSession

TITLE = "Modic review"
COLUMNS = ("Level", "Endplate", "Type", "Height %", "Volume mm³", "Status", "Confidence")
CONFIDENCE_COLUMN = COLUMNS.index("Confidence")
STATUS_COLOURS = {"pending": "#d0d0d0", "accepted": "#7bd88f", "edited": "#ffd866", "rejected": "#ff6188",
                  "added": "#78dce8"}
ELIGIBLE_TEXT = {True: "eligible", False: "not eligible", None: "undecided"}
#: Environment variable with a database URL (e.g. postgresql+psycopg://host/reads) for multi-site reading.
DB_ENV = "MODICSEG_REVIEW_DB"


def _button(text: str, tip: str, slot: Any) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


#: environment variable: idle limit of the reading clock in seconds (0: count wall time)
IDLE_ENV = "MODICSEG_REVIEW_IDLE_S"


class _ActivityFilter(QObject):
    """Marks reader activity on the open case for every mouse or key event in the application."""

    KINDS = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove, QEvent.Type.Wheel, QEvent.Type.KeyPress)

    def __init__(self, widget: ReviewWidget) -> None:
        super().__init__(widget)
        self.widget = widget

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:  # noqa: N802 (Qt's name)
        if event is not None and event.type() in self.KINDS:
            state = self.widget.state
            if state is not None:
                state.activity.touch()
        return False


class ReviewWidget(QWidget):
    """Dock widget for blinded reading of a package in napari."""

    def __init__(self, napari_viewer: Any, package: str | Path | None = None, reader: str | None = None,
                 db_url: str | None = None, masks_dir: str | Path | None = None, parent: QWidget | None = None,
                 show_confidence: bool = True):
        super().__init__(parent)
        self.viewer = napari_viewer
        #: False: the model's lesion confidence is hidden for the whole session (an unbiased read)
        self.confidence_allowed = show_confidence
        self.package: Package | None = None
        self.session: ReviewSession | None = None
        self.rows: list[LesionRow] = []
        self.db_url = db_url or os.environ.get(DB_ENV) or None
        self.masks_dir = masks_dir
        self._layers: dict[str, Any] = {}
        self._digest: bytes | None = None
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(120)
        self._refresh_timer.timeout.connect(self.refresh)  # type: ignore[arg-type]  # stub: slots return None; Qt drops it
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._show_time)
        idle = float(os.environ.get(IDLE_ENV, IDLE_AFTER_S))
        #: reading time counts activity gaps up to this many seconds (None: wall time)
        self.idle_after_s: float | None = idle if idle > 0 else None
        self._activity = _ActivityFilter(self)
        self._removing = False
        self._build()
        # the viewer closing (or anyone deleting the lesion layer) removes it: save first
        self.viewer.layers.events.removed.connect(self._layer_removed)
        if package is not None:
            self.open_package(package)
        if reader:
            self.reader_edit.setText(reader)
            if self.package is not None:
                self.start()

    # --- layout -----------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setMinimumWidth(500)
        layout = QVBoxLayout(self)
        setup = QGroupBox("Reader")
        grid = QGridLayout(setup)
        self.package_label = QLabel("no package open")
        grid.addWidget(QLabel("Package"), 0, 0)
        grid.addWidget(self.package_label, 0, 1)
        grid.addWidget(_button("Open…", "open a reading package folder", self._choose_package), 0, 2)
        self.reader_edit = QLineEdit()
        self.reader_edit.setPlaceholderText("your name")
        self.reader_edit.returnPressed.connect(self.start)  # type: ignore[arg-type]  # stub: slots return None
        grid.addWidget(QLabel("Reader"), 1, 0)
        grid.addWidget(self.reader_edit, 1, 1)
        self.start_button = _button("Start", "open your worklist where you stopped", self.start)
        grid.addWidget(self.start_button, 1, 2)
        layout.addWidget(setup)

        self.case_label = QLabel("—")
        font = QFont(self.case_label.font())
        font.setPointSize(font.pointSize() + 5)
        font.setBold(True)
        self.case_label.setFont(font)
        self.position_label = QLabel("")
        header = QHBoxLayout()
        header.addWidget(self.case_label)
        header.addStretch(1)
        header.addWidget(self.position_label)
        layout.addLayout(header)

        nav = QHBoxLayout()
        self.prev_button = _button("◀ Previous", "save and go to the previous case", lambda: self.go(-1))
        self.save_button = _button("Save", "save this case now", lambda: self.save())
        self.next_button = _button("Next ▶", "save and go to the next case", lambda: self.go(1))
        for b in (self.prev_button, self.save_button, self.next_button):
            nav.addWidget(b)
        layout.addLayout(nav)

        view = QHBoxLayout()
        view.addWidget(QLabel("Show"))
        self.t1_button = _button("T1", "show the T1 image", lambda: self.show_image("t1"))
        self.t2_button = _button("T2", "show the T2 image", lambda: self.show_image("t2"))
        for b in (self.t1_button, self.t2_button):
            b.setCheckable(True)
            view.addWidget(b)
        view.addStretch(1)
        self.confidence_box = QCheckBox("Show confidence")
        self.confidence_box.setToolTip("the model's probability that each of its lesions is real; hide it for an "
                                       "unbiased read" if self.confidence_allowed else
                                       "hidden for this read (review open --hide-confidence)")
        self.confidence_box.setChecked(self.confidence_allowed)
        self.confidence_box.toggled.connect(self.show_confidence)
        view.addWidget(self.confidence_box)
        layout.addLayout(view)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        vertical_header = self.table.verticalHeader()
        assert vertical_header is not None  # a QTableWidget always has its headers
        vertical_header.setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header_view = self.table.horizontalHeader()
        assert header_view is not None
        header_view.setSectionResizeMode(QHeaderView.ResizeToContents)
        header_view.setSectionResizeMode(2, QHeaderView.Fixed)
        header_view.setStretchLastSection(True)
        self.table.setColumnWidth(2, 96)
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.setMinimumHeight(170)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setColumnHidden(CONFIDENCE_COLUMN, not self.confidence_allowed)
        layout.addWidget(self.table)

        actions = QHBoxLayout()
        self.accept_button = _button("Accept", "the selected lesion is right as predicted (or restore a "
                                     "rejected one)", self.accept_selected)
        self.edit_button = _button("Edit", "paint / erase the selected lesion", self.edit_selected)
        self.reject_button = _button("Reject", "remove the selected lesion (undo with Ctrl+Z)", self.reject_selected)
        for b in (self.accept_button, self.edit_button, self.reject_button):
            actions.addWidget(b)
        layout.addLayout(actions)

        add = QHBoxLayout()
        self.new_type = QComboBox()
        self.new_type.addItems([f"type {t}" for t in READER_TYPES])
        add.addWidget(self.new_type)
        add.addWidget(_button("Add missed lesion", "paint a lesion the model missed with this type",
                              self.add_lesion))
        layout.addLayout(add)

        self.eligibility_label = QLabel("")
        self.eligibility_label.setWordWrap(True)
        layout.addWidget(self.eligibility_label)
        layout.addWidget(QLabel("Comment"))
        self.comment = QPlainTextEdit()
        self.comment.setMaximumHeight(70)
        self.comment.setPlaceholderText("anything the next reader of the database should know")
        layout.addWidget(self.comment)
        self.done_button = _button("Case done ✓  Next", "mark this case as read (pending lesions count as "
                                   "accepted) and go on", self.done)
        layout.addWidget(self.done_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for w in (self.prev_button, self.save_button, self.next_button, self.t1_button, self.t2_button,
                  self.table, self.accept_button, self.edit_button, self.reject_button, self.new_type,
                  self.comment, self.done_button):
            w.setEnabled(on)
        self.confidence_box.setEnabled(on and self.confidence_allowed)

    @property
    def confidence_shown(self) -> bool:
        """Whether the table shows the model's lesion confidence now."""
        return not self.table.isColumnHidden(CONFIDENCE_COLUMN)

    def show_confidence(self, on: bool) -> None:
        """Show or hide the model's lesion confidence (never shown when the session hides it)."""
        on = bool(on) and self.confidence_allowed
        self.table.setColumnHidden(CONFIDENCE_COLUMN, not on)
        if self.confidence_box.isChecked() != on:
            self.confidence_box.setChecked(on)

    def _message(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #ff6188;" if error else "")
        self.status_label.setText(text)

    # --- package and reader -----------------------------------------------------------------------
    def _choose_package(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open reading package")
        if folder:
            self.open_package(folder)

    def open_package(self, path: str | Path) -> bool:
        try:
            self.package = Package.open(path)
        except ModicsegError as exc:
            self._message(str(exc), error=True)
            return False
        self.package_label.setText(f"{len(self.package.codes)} cases")
        self._message("enter your name and press Start")
        return True

    def start(self) -> bool:
        """Open the reader's worklist at the first case they have not finished."""
        if self.package is None:
            self._message("open a reading package first", error=True)
            return False
        try:
            if self.session is not None:
                self.close_session()
            self.session = ReviewSession.open(self.package, self.reader_edit.text(), self.db_url, self.masks_dir)
            self.show_case(self.session.resume())
        except ModicsegError as exc:
            self._message(str(exc), error=True)
            return False
        self.reader_edit.setEnabled(False)
        self.start_button.setEnabled(False)
        self._clock.start()
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._activity)
        return True

    # --- the case ------------------------------------------------------------------------------
    @property
    def state(self) -> CaseState | None:
        return None if self.session is None else self.session.current

    @property
    def lesion_layer(self) -> Any:
        return self._layers.get("lesions")

    def _remove_layers(self) -> None:
        layer = self.lesion_layer
        if layer is not None:
            layer.events.paint.disconnect(self._schedule_refresh)
            layer.events.set_data.disconnect(self._schedule_refresh)
        self._removing = True
        try:
            for layer in self._layers.values():
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
        finally:
            self._removing = False
        self._layers = {}

    def _layer_removed(self, event: Any) -> None:
        if (not self._removing and self.state is not None and self.session is not None
                and getattr(event.value, "name", None) == "lesions"):
            try:
                self._clock.stop()
                self.save()
            except RuntimeError:  # the Qt side of this widget is already gone: save without it
                self.session.save(np.asarray(event.value.data))

    def show_case(self, state: CaseState) -> None:
        """Replace the viewer's layers by this case's and refresh the table."""
        self._remove_layers()
        state.activity.idle_after_s = self.idle_after_s
        for data, kwargs, kind in case_layers(state):
            self._layers[kwargs["name"]] = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self._layers["anatomy"].contour = 1  # outlines only: the marrow stays visible
        lesions = self.lesion_layer
        lesions.n_edit_dimensions = 2
        lesions.brush_size = 6
        lesions.events.paint.connect(self._schedule_refresh)
        lesions.events.set_data.connect(self._schedule_refresh)
        self.viewer.dims.ndisplay = 2
        self.viewer.dims.order = (0, 1, 2)
        self.viewer.dims.axis_labels = ("slice L→R", "S-I", "A-P")
        self.viewer.reset_view()
        self.viewer.layers.selection.active = lesions
        self.viewer.title = f"{TITLE} — {state.code}"
        self.case_label.setText(f"Case {state.code}")
        self.comment.setPlainText(state.comment)
        self._enable(True)
        self.show_image("t2" if "t2" in state.images else "t1")
        self._digest = None
        self.refresh()
        self._update_position()
        self._message(f"case {state.code} opened" + (" (read before: changes are saved as a new revision)"
                                                       if state.status == "done" else ""))

    def _update_position(self) -> None:
        if self.session is None:
            return
        position, total = self.session.position
        done, _ = self.session.progress()
        self.position_label.setText(f"{position} / {total} · {done} done")
        self.prev_button.setEnabled(position > 1)
        self.next_button.setEnabled(position < total)

    def _show_time(self) -> None:
        state = self.state
        if state is not None:
            seconds = int(state.elapsed(reset=False))
            base = self.position_label.text().split("  · time")[0]
            self.position_label.setText(f"{base}  · time {seconds // 60:d}:{seconds % 60:02d}")

    def show_image(self, role: str) -> None:
        for name, button in (("t1", self.t1_button), ("t2", self.t2_button)):
            layer = self._layers.get(name.upper())
            if layer is not None:
                layer.visible = name == role
            button.setChecked(name == role)
            button.setEnabled(layer is not None)

    # --- the lesion table ------------------------------------------------------------------------
    def _schedule_refresh(self, *_: Any) -> None:
        self._refresh_timer.start()

    def refresh(self, force: bool = False) -> bool:
        """Recompute the lesion rows when the lesion layer's voxels changed; True when it did."""
        state, layer = self.state, self.lesion_layer
        if state is None or layer is None:
            return False
        data = np.asarray(layer.data)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
        if digest == self._digest and not force:
            return False
        self._digest = digest
        self.rows = state.rows(data)
        self._fill_table()
        decision = state.eligibility(self.rows)
        reasons = [r for r in decision.reasons if "qualifies" in r][:2]
        self.eligibility_label.setText(f"Trial eligibility from your lesions: <b>{ELIGIBLE_TEXT[decision.eligible]}"
                                       f"</b>" + (f" — {reasons[0]}" if reasons else ""))
        return True

    def _fill_table(self) -> None:
        selected = self.selected_row()
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        state = self.state
        for n, row in enumerate(self.rows):
            rejected = row.status == "rejected"
            confidence = state.confidence(row) if state is not None and self.confidence_allowed else None
            cells = [row.level or "?", row.endplate, None,
                     "—" if rejected else f"{100 * row.height_fraction:.0f}",
                     "—" if rejected else f"{row.volume_mm3:.0f}", row.status,
                     "—" if confidence is None else f"{confidence:.2f}"]
            for column, text in enumerate(cells):
                if text is None:
                    continue
                item = QTableWidgetItem(text)
                if column in (3, 4, CONFIDENCE_COLUMN):
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                if column == CONFIDENCE_COLUMN:
                    item.setToolTip("the model's probability that its lesion is real" if confidence is not None
                                    else "no model confidence (a lesion you added, or none in the package)")
                if column == 5:
                    item.setForeground(QColor(STATUS_COLOURS.get(row.status, "#ffffff")))
                self.table.setItem(n, column, item)
            combo = QComboBox()
            combo.addItems(list(READER_TYPES))
            combo.setCurrentText(row.model_type if rejected else row.type)
            combo.setEnabled(not rejected)
            code = code_of_type(combo.currentText())
            r, g, b, _ = (int(255 * c) for c in CODE_COLOURS[code])
            combo.setStyleSheet(f"QComboBox {{ border-left: 6px solid rgb({r},{g},{b}); }}")
            combo.currentTextChanged.connect(lambda text, n=n: self.set_type(n, text))
            self.table.setCellWidget(n, 2, combo)
        self.table.blockSignals(False)
        if selected is not None and selected < len(self.rows):
            self.table.selectRow(selected)

    def selected_row(self) -> int | None:
        model = self.table.selectionModel()
        rows = model.selectedRows() if model else []
        return rows[0].row() if rows else None

    def _current(self) -> LesionRow | None:
        index = self.selected_row()
        return self.rows[index] if index is not None and index < len(self.rows) else None

    def _selected(self) -> None:
        row = self._current()
        if row is not None:
            self.go_to(row)

    def go_to(self, row: LesionRow) -> None:
        """Move the slider to the lesion's slice and centre the view on it."""
        state = self.state
        if state is None:
            return
        centre = state.display_centre(row)
        self.viewer.dims.set_current_step(0, int(round(centre[0])))
        scale = state.scale
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; older: viewer.camera
        camera = scene.camera if scene is not None else self.viewer.camera
        camera.center = (centre[1] * scale[1], centre[2] * scale[2])

    # --- actions --------------------------------------------------------------------------------
    def set_type(self, index: int, type_name: str) -> None:
        """Give every voxel of lesion ``index`` the type ``type_name`` (undoable)."""
        state, layer = self.state, self.lesion_layer
        if state is None or index >= len(self.rows) or self.rows[index].status == "rejected":
            return
        voxels, code = state.type_values(self.rows[index], type_name)
        layer.data_setitem(voxels, code)  # emits "paint": the table refreshes shortly after
        self._schedule_refresh()

    def accept_selected(self) -> None:
        state, row = self.state, self._current()
        if state is None or row is None:
            return
        if row.status == "rejected":
            voxels, codes = state.restore_values(row)
            self.lesion_layer.data_setitem(voxels, codes)
        elif row.model_id is not None and row.status == "pending":
            state.decisions[row.model_id] = "accepted"
        elif row.status in ("edited", "added"):
            self._message(f"{row.status} lesions are kept as you drew them; Ctrl+Z undoes changes")
        self.refresh(force=True)

    def edit_selected(self) -> None:
        row, layer = self._current(), self.lesion_layer
        if row is None or layer is None or row.status == "rejected":
            return
        self.go_to(row)
        self.viewer.layers.selection.active = layer
        layer.selected_label = code_of_type(row.type)
        layer.mode = "paint"
        self._message(f"painting type {row.type}: P paints, E erases, Ctrl+Z undoes")

    def reject_selected(self) -> None:
        state, row = self.state, self._current()
        if state is None or row is None or row.status == "rejected":
            return
        self.lesion_layer.data_setitem(state.display_index(row.flat_index), 0)
        self.refresh()

    def add_lesion(self) -> None:
        layer = self.lesion_layer
        if layer is None:
            return
        type_name = READER_TYPES[self.new_type.currentIndex()]
        self.viewer.layers.selection.active = layer
        layer.selected_label = code_of_type(type_name)
        layer.mode = "paint"
        self._message(f"paint the missed lesion (type {type_name}) on the image")

    # --- saving and navigation --------------------------------------------------------------------
    def save(self, status: str | None = None) -> bool:
        if self.session is None or self.state is None:
            return False
        self.refresh()
        try:
            record = self.session.save(np.asarray(self.lesion_layer.data), status=status,
                                       comment=self.comment.toPlainText())
        except (ModicsegError, OSError) as exc:
            self._message(f"NOT SAVED: {exc}", error=True)
            return False
        self._message(f"saved case {record.case_code} (revision {record.revision}, {record.status.replace('_', ' ')})")
        self._update_position()
        return True

    def go(self, step: int, status: str | None = None) -> None:
        if self.session is None or not self.save(status):
            return
        target = self.session.index + step
        if 0 <= target < len(self.session.worklist):
            self.show_case(self.session.open_index(target))

    def done(self) -> None:
        """Mark the case done and open the next unfinished case (or say that the worklist is finished)."""
        session = self.session
        if session is None or not self.save("done"):
            return
        statuses = session.store.statuses(session.package.package_id, session.reader)
        count = len(session.worklist)
        for step in range(1, count):
            index = (session.index + step) % count
            if statuses.get(session.worklist[index]) != "done":
                self.show_case(session.open_index(index))
                return
        done, total = session.progress()
        self._message(f"case saved as done; {done} of {total} cases done — worklist finished, thank you")

    def close_session(self) -> None:
        """Save the open case and release the database."""
        if self.session is not None:
            if self.state is not None:
                self.save()
            self.session.close()
        self.session = None
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self._activity)
