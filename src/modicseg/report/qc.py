"""QC figure: mid-sagittal T1 and T2 (or STIR) with outlines, level names and a tag per lesion.

Displayed the radiological way: superior up, anterior on the left, square millimetres.  Bodies
and discs are outlined on the displayed slice; each lesion is outlined from its projection over
all slices (dashed when it does not cross the displayed slice), coloured by primary type.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modicseg.core.labels import DISC, INFERIOR, MODIC_TYPES, SUPERIOR, UNCLASSIFIED

if TYPE_CHECKING:
    from modicseg.analysis.result import Report

TYPE_COLOURS = {"1": "#ff3b30", "2": "#ffcc00", "3": "#3fa9ff", None: "#c0c0c0"}
BODY_COLOUR = "#7CFC00"
DISC_COLOUR = "#00e5ff"


class SagittalView:
    """Maps a 3-D grid to a 2-D sagittal display (rows superior->inferior, columns anterior->posterior)."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int]) -> None:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        direction = affine[:3, :3] / spacing
        self.lr = int(np.argmax(np.abs(direction[0])))
        rest = [a for a in range(3) if a != self.lr]
        self.si = max(rest, key=lambda a: abs(direction[2, a]))
        self.ap = next(a for a in rest if a != self.si)
        self.flip_rows = direction[2, self.si] > 0  # index growing superior: flip so row 0 is superior
        self.flip_cols = direction[1, self.ap] > 0  # index growing anterior: flip so column 0 is anterior
        self.row_mm = float(spacing[self.si])
        self.col_mm = float(spacing[self.ap])
        self.shape = shape
        self.affine = affine

    def slice(self, volume: np.ndarray, index: int) -> np.ndarray:
        """The 2-D display of one sagittal slice."""
        plane = np.take(volume, index, axis=self.lr)
        rest = [a for a in range(3) if a != self.lr]
        if rest.index(self.si) == 1:
            plane = plane.T
        if self.flip_rows:
            plane = plane[::-1]
        if self.flip_cols:
            plane = plane[:, ::-1]
        return plane

    def project(self, mask: np.ndarray) -> np.ndarray:
        """Maximum projection of a mask over all sagittal slices, displayed."""
        return self.slice(np.asarray(mask.any(axis=self.lr, keepdims=True)), 0)

    def to_display_mm(self, ijk: np.ndarray) -> tuple[float, float]:
        """(x, y) display position in mm of continuous voxel indices."""
        row = ijk[self.si] if not self.flip_rows else self.shape[self.si] - 1 - ijk[self.si]
        col = ijk[self.ap] if not self.flip_cols else self.shape[self.ap] - 1 - ijk[self.ap]
        return (col + 0.5) * self.col_mm, (row + 0.5) * self.row_mm

    def extent(self) -> tuple[float, float, float, float]:
        return (0.0, self.shape[self.ap] * self.col_mm, self.shape[self.si] * self.row_mm, 0.0)


def _crop(view: SagittalView, mask: np.ndarray, margin_mm: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) display mm of the labelled region (all slices) plus a margin, within the image."""
    full = (0.0, view.shape[view.ap] * view.col_mm, 0.0, view.shape[view.si] * view.row_mm)
    shown = view.project(mask)
    if not shown.any():
        return full
    rows = np.flatnonzero(shown.any(axis=1))
    cols = np.flatnonzero(shown.any(axis=0))
    x0 = max(cols[0] * view.col_mm - margin_mm, full[0])
    x1 = min((cols[-1] + 1) * view.col_mm + margin_mm, full[1])
    y0 = max(rows[0] * view.row_mm - margin_mm, full[2])
    y1 = min((rows[-1] + 1) * view.row_mm + margin_mm, full[3])
    return x0, x1, y0, y1


def _window(image: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    values = image[region] if region.any() else image.ravel()
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(min(lo, np.percentile(image, 1))), float(hi * 1.15 if hi > lo else lo + 1)


def _outline(ax, mask: np.ndarray, view: SagittalView, colour: str, width: float,
             style: str | tuple[int, tuple[int, int]] = "solid") -> None:
    if not mask.any():
        return
    from skimage import measure

    for contour in measure.find_contours(np.pad(mask.astype(np.float32), 1), 0.5):
        rows, cols = contour[:, 0] - 1, contour[:, 1] - 1
        ax.plot((cols + 0.5) * view.col_mm, (rows + 0.5) * view.row_mm, color=colour, linewidth=width,
                linestyle=style)


def _tag(lesion, min_confidence: float | None = None) -> str:
    endplate = {SUPERIOR: "sup", INFERIOR: "inf"}.get(lesion.endplate, "?")
    height = "?" if lesion.height_fraction is None or np.isnan(lesion.height_fraction) \
        else f"{100 * lesion.height_fraction:.0f}%"
    kind = "type ?" if lesion.type == UNCLASSIFIED else f"type {lesion.type}"
    near = " borderline" if getattr(lesion, "borderline", False) else ""
    tag = f"#{lesion.id} {lesion.level or '?'} {endplate} · {kind} · {height}{near} ({lesion.extent_grade})"
    confidence = getattr(lesion, "confidence", None)
    if confidence is not None:
        low = min_confidence is not None and confidence < min_confidence
        tag += f"\n   conf {confidence:.2f}" + ("  LOW: is it real?" if low else "")
    return tag


def low_confidence(lesion, min_confidence: float) -> bool:
    """Whether the QC figure marks a lesion as doubtful (its confidence is below ``min_confidence``)."""
    confidence = getattr(lesion, "confidence", None)
    return confidence is not None and confidence < min_confidence


def _spread(positions: list[float], gap: float) -> list[float]:
    """Positions moved apart (keeping their order) so that neighbours are at least ``gap`` apart."""
    order = np.argsort(positions)
    out = np.array(positions, dtype=float)
    for previous, current in itertools.pairwise(order):
        out[current] = max(out[current], out[previous] + gap)
    return out.tolist()


def _headline(report: Report) -> tuple[str, str]:
    """The verdict line at the top of the figure, and its colour."""
    eligibility = report.eligibility
    by_id = {les.id: les for les in report.lesions}
    if eligibility.eligible:
        tags = ", ".join(_tag(by_id[i]).replace("\n  ", ",") for i in eligibility.qualifying_lesions)
        return f"ELIGIBLE (type 1, >= 10 % of height, T12-S1): {tags}", "#ff6b5e"
    if eligibility.eligible is None and eligibility.borderline_lesions:
        return "ELIGIBILITY BORDERLINE: " + eligibility.reasons[0].removeprefix("borderline: "), "#ffcc00"
    if eligibility.eligible is None:
        return "ELIGIBILITY UNDECIDED: " + eligibility.reasons[0].removeprefix("undecided: "), "#ffcc00"
    if not report.lesions:
        return "not eligible: no Modic change found", "#dddddd"
    return "not eligible: no type-1 change of >= 10 % of vertebral height at T12-S1", "#dddddd"


def render_qc(report: Report, path: Path) -> None:
    """Write the QC PNG of a report."""
    import textwrap

    # a Figure on the Agg canvas, without pyplot: no GUI backend search, ~0.2 s less to import
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import ConnectionPatch

    labels = np.asarray(report.labels.array)
    view = SagittalView(report.labels.affine, report.labels.shape)
    inv = np.linalg.inv(report.labels.affine)
    if report.vertebrae:
        centres = np.array([v.centre_ras for v in report.vertebrae])
        index = int(np.clip(np.round(np.median((centres @ inv[:3, :3].T + inv[:3, 3])[:, view.lr])),
                            0, labels.shape[view.lr] - 1))
    elif (labels > 0).any():
        index = int(np.round(np.argwhere(labels > 0)[:, view.lr].mean()))
    else:
        index = labels.shape[view.lr] // 2
    fluid = report.typing.get("fluid_contrast") or "T2"  # "STIR" / "T2FS" when no T2 was used
    panels = [(name, img) for name, img in (("T1", report.t1), (fluid, report.t2)) if img is not None]
    x0, x1, y0, y1 = _crop(view, labels > 0, margin_mm=25.0)
    height_mm, width_mm = y1 - y0, x1 - x0
    panel_h = 8.0
    panel_w = float(np.clip(panel_h * width_mm / height_mm, 2.2, 9.0))
    tag_w = 3.6
    fig = Figure(figsize=(panel_w * len(panels) + tag_w + 0.3, panel_h + 1.4), facecolor="black")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, len(panels) + 1, width_ratios=[panel_w] * len(panels) + [tag_w],
                            left=0.01, right=0.99, top=0.88, bottom=0.09, wspace=0.03)
    inst2d = view.slice(report.instances, index)
    disc2d = view.slice(labels == DISC, index)
    anchors = [view.to_display_mm(np.asarray(les.centre_ras) @ inv[:3, :3].T + inv[:3, 3])
               for les in report.lesions]
    image_axes = []
    for column, (name, image) in enumerate(panels):
        ax = fig.add_subplot(grid[0, column])
        image_axes.append(ax)
        ax.set_facecolor("black")
        plane = view.slice(np.asarray(image.array, dtype=np.float32), index)
        lo, hi = _window(plane, inst2d > 0)
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, extent=view.extent(), interpolation="bilinear")
        for label in np.unique(inst2d[inst2d > 0]):
            _outline(ax, inst2d == label, view, BODY_COLOUR, 0.7)
        _outline(ax, disc2d, view, DISC_COLOUR, 0.7)
        for vertebra in report.vertebrae:
            x, y = view.to_display_mm(np.asarray(vertebra.centre_ras) @ inv[:3, :3].T + inv[:3, 3])
            ax.text(max(x - 0.5 * vertebra.ap_depth_mm - 2, x0 + 8), y, vertebra.level or "?", color="white",
                    fontsize=10, fontweight="bold", ha="right", va="center",
                    bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1})
        for lesion in report.lesions:
            colour = TYPE_COLOURS.get(lesion.primary_type, TYPE_COLOURS[None])
            mask = report.lesion_map == lesion.id
            on_slice = view.slice(mask, index).any()
            _outline(ax, view.project(mask), view, colour, 1.5, "solid" if on_slice else (0, (3, 2)))
        ax.set_title(f"{name}   sagittal slice {index + 1} of {labels.shape[view.lr]}", color="white",
                     fontsize=11)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_xticks([])
        ax.set_yticks([])
    tags = fig.add_subplot(grid[0, len(panels)])
    tags.set_facecolor("black")
    tags.set_xlim(0, 1)
    tags.set_ylim(height_mm, 0)
    tags.axis("off")
    lines = 3 if any(getattr(les, "confidence", None) is not None for les in report.lesions) else 2
    tag_y = _spread([a[1] for a in anchors], gap=height_mm * 1.25 * lines * 10 / 72 / panel_h)
    lowest = height_mm * 0.84  # above the key at the foot of the column
    if tag_y and max(tag_y) > lowest:  # keep the stack on the figure
        tag_y = (np.asarray(tag_y) - (max(tag_y) - lowest)).tolist()
    threshold = report.config.eligibility.min_confidence
    for lesion, (x, y), ty in zip(report.lesions, anchors, tag_y, strict=True):
        colour = TYPE_COLOURS.get(lesion.primary_type, TYPE_COLOURS[None])
        qualifies = lesion.id in report.eligibility.qualifying_lesions
        doubtful = low_confidence(lesion, threshold)
        tags.text(0.04, ty, _tag(lesion, threshold) + ("  ★" if qualifies else ""), color=colour, fontsize=10,
                  fontweight="bold", ha="left", va="center", fontstyle="italic" if doubtful else "normal",
                  bbox={"facecolor": "black", "edgecolor": "white" if doubtful else colour, "pad": 2.5,
                        "linestyle": "--" if doubtful else "-", "linewidth": 1.6 if doubtful else 1.0})
        fig.add_artist(ConnectionPatch(xyA=(x, y), coordsA=image_axes[-1].transData, xyB=(0.04, ty),
                                       coordsB=tags.transData, color=colour, linewidth=0.9, alpha=0.9))
    if not report.lesions:
        tags.text(0.04, y0 + height_mm / 2, "no Modic change found", color="white", fontsize=11, va="center")
    handles = [Line2D([], [], color=BODY_COLOUR, label="vertebral body"),
               Line2D([], [], color=DISC_COLOUR, label="disc")]
    handles += [Line2D([], [], color=TYPE_COLOURS[t], linewidth=2, label=f"Modic type {t}") for t in MODIC_TYPES]
    handles += [Line2D([], [], color=TYPE_COLOURS[None], linewidth=2, label="untyped"),
                Line2D([], [], color="white", linestyle=(0, (3, 2)), label="lesion off this slice")]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, labelcolor="white", fontsize=9)
    headline, colour = _headline(report)
    note = report.typing.get("reason") or ""
    if not report.typing.get("possible", True) and note not in headline:
        headline = f"{headline} ({note})"
    width_chars = int((panel_w * len(panels) + tag_w) * 72 / 7.5)
    fig.text(0.5, 0.985, textwrap.fill(headline, width_chars), color=colour, fontsize=12, fontweight="bold",
             ha="center", va="top")
    tags.text(0.04, y0 + height_mm * 0.995, "tag: #id level endplate · type ·\nheight % of vertebra (Udby grade)"
              "\n★ qualifies for the trial rule\nconf: probability the lesion is real;"
              f"\ndashed white box: conf < {threshold:.2f}", color="#aaaaaa", fontsize=8, ha="left", va="bottom")
    fig.savefig(path, dpi=110, facecolor="black")
