"""napari reader: a reading-package case folder or an ``analyze`` output folder.

Layers (sagittal, slice axis as the slider, ``scale`` = voxel size in mm along the display axes):
``T1`` and ``T2`` (grey), ``anatomy`` (vertebral body and disc outlines), ``lesions`` (editable,
one colour per Modic type, see ``review.codes``) and ``levels`` (vertebra names in front of each
body).  Layer names never carry file or folder names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.core.labels import BODY, LESION
from modicseg.report.models import ReportDocument, ReportFileError
from modicseg.review.codes import ANATOMY_COLOURS, CODE_COLOURS
from modicseg.review.pack import lesion_codes
from modicseg.review.package import Case, is_case_folder
from modicseg.review.session import CaseState, LevelMark, load_case
from modicseg.review.sources import LABELS, REPORT, TYPES, find_image, is_analysis_folder
from modicseg.review.volumes import DisplayGrid, read_nifti

LayerData = tuple[Any, dict[str, Any], str]
LAYER_NAMES = ("T1", "T2", "anatomy", "lesions", "levels")


def _colormap(colours: Mapping[int, tuple[float, ...]]) -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, tuple[float, ...]] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    color_dict.update(colours.items())
    return DirectLabelColormap(color_dict=color_dict)


def contrast_limits(array: np.ndarray) -> tuple[float, float]:
    """Display window from robust percentiles of the image."""
    values = np.asarray(array, dtype=np.float32)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def layer_data(images: dict[str, np.ndarray], anatomy: np.ndarray, lesions: np.ndarray,
               scale: tuple[float, float, float], marks: list[LevelMark]) -> list[LayerData]:
    """Layer data tuples (display-order arrays) in drawing order."""
    layers: list[LayerData] = []
    for role in ("t1", "t2"):
        if role in images:
            layers.append((images[role], {"name": role.upper(), "scale": scale, "colormap": "gray",
                                          "contrast_limits": contrast_limits(images[role]),
                                          "visible": role == "t2" or "t2" not in images}, "image"))
    layers.append((anatomy, {"name": "anatomy", "scale": scale, "opacity": 0.35,
                             "colormap": _colormap(ANATOMY_COLOURS)}, "labels"))
    layers.append((lesions, {"name": "lesions", "scale": scale, "opacity": 0.55,
                             "colormap": _colormap(CODE_COLOURS)}, "labels"))
    if marks:
        points = np.array([[m.row, m.column] for m in marks], dtype=np.float64)
        layers.append((points, {"name": "levels", "scale": scale[1:], "size": 1, "face_color": "transparent",
                                "border_width": 0, "canvas_size_limits": (0, 0),
                                "features": {"level": [m.level for m in marks]},
                                "text": {"string": "{level}", "color": "yellow", "size": 14, "anchor": "center"}},
                       "points"))
    return layers


def case_layers(state: CaseState) -> list[LayerData]:
    """Layers of an open case (the lesions array is the one the session edits)."""
    return layer_data(state.images, state.anatomy, state.lesions, state.scale, state.level_marks())


def read_case(path: str | Path) -> list[LayerData]:
    """A package case folder with its predicted lesions."""
    return case_layers(load_case(Case.open(Path(path))))


def read_analysis(path: str | Path) -> list[LayerData]:
    """An ``analyze`` output folder (report.json, labels.nii.gz, types.nii.gz, optional t1/t2)."""
    folder = Path(path)
    labels = read_nifti(folder / LABELS, label=True)
    grid = DisplayGrid.of(labels)
    array = np.asarray(labels.array)
    types = np.asarray(read_nifti(folder / TYPES, label=True).array) if (folder / TYPES).is_file() else None
    images = {}
    for role in ("t1", "t2"):
        file = find_image(folder, role)
        if file is not None:
            image = read_nifti(file)
            if image.same_grid(labels):
                images[role] = grid.to_display(image.array)
    anatomy = grid.to_display(np.where(array == LESION, BODY, array).astype(np.uint8))
    lesions = grid.to_display(lesion_codes(array, types))
    marks = []
    try:
        report = ReportDocument.load(folder / REPORT)
    except ReportFileError:  # the images still open, without level names
        report = None
    for v in report.vertebrae if report is not None else []:
        if v.level:
            index = grid.world_to_display(np.asarray([v.centre_ras]))[0]
            marks.append(LevelMark(v.level, float(index[1]), float(index[2]), float(index[0])))
    return layer_data(images, anatomy, lesions, grid.scale, marks)


def napari_get_reader(path: str | list[str]) -> Any:
    """npe2 reader contribution: a callable for case and analysis folders, None otherwise."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if is_case_folder(folder):
        return read_case
    if is_analysis_folder(folder):
        return read_analysis
    return None
