"""Anatomical clean-up of a predicted label map: keep the spinal column, drop look-alikes.

Vertebral bodies, discs and endplate lesions form one column. Whatever the network labels far
from it (abdominal wall, bowel, organs with marrow-like signal) is not spine. The column is the
largest connected foreground region after thin bridges (thinner than ``2 * bridge_mm``) are cut,
plus every region linked to it by a chain of regions each within ``gap_mm`` of the next (vertebrae
split off by missed discs stay, however many in a row). The kept regions are grown back by
``2 * bridge_mm`` inside the original foreground, so thin discs and the surfaces the cut removed
return. All distances are in mm on the grid of the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The parameters (bridge_mm 2, gap_mm 8) are part of the model configuration (``postprocess``), with
# its other settings; re-exported here, where they are used.
from modicseg.model.config import ColumnSettings

__all__ = ["ColumnSettings", "restrict_to_column", "spinal_column_mask"]

#: bridge_mm 2, gap_mm 8: the defaults of a model configuration's ``postprocess.spinal_column: true``
DEFAULT_COLUMN = ColumnSettings()


def _foreground_box(foreground: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the foreground grown by ``margin`` voxels per axis, within the array."""
    box = []
    for axis, pad in enumerate(margin):
        hit = np.flatnonzero(foreground.any(axis=tuple(a for a in range(foreground.ndim) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - int(pad)), min(foreground.shape[axis], int(hit[-1]) + int(pad) + 1)))
    return tuple(box)


def spinal_column_mask(foreground: np.ndarray, spacing: np.ndarray,
                       settings: ColumnSettings = DEFAULT_COLUMN) -> np.ndarray:
    """The part of a boolean foreground that belongs to the spinal column (see module docstring).

    Computed in the foreground's bounding box grown by the largest distance used (plus a voxel),
    which gives the same mask as the whole grid: every distance transform here measures to a set
    inside that box, and the box's own faces are background (or the array border, which counts as
    background as before).
    """
    spacing = np.asarray(spacing, dtype=float)
    if not foreground.any():
        return foreground.copy()
    reach_mm = (settings.gap_mm + 2.0 * settings.bridge_mm) / 2.0 + 2.0 * settings.bridge_mm
    box = _foreground_box(foreground, np.ceil(reach_mm / spacing).astype(int) + 1)
    column = np.zeros_like(foreground)
    column[box] = _column_in_box(foreground[box], spacing, settings)
    return column


def _column_in_box(foreground: np.ndarray, spacing: np.ndarray, settings: ColumnSettings) -> np.ndarray:
    """``spinal_column_mask`` on an array whose faces are background or the original border."""
    # erosion by a ball of bridge_mm: voxels farther than that from the background (the array
    # border counts as background)
    inside = ndimage.distance_transform_edt(np.pad(foreground, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    core = inside > settings.bridge_mm
    if not core.any():
        core = foreground
    components, n = ndimage.label(core, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = ndimage.sum_labels(core, components, index=np.arange(1, n + 1))
    largest = components == int(np.argmax(sizes)) + 1
    # cores are bridge_mm inside their regions, so regions gap_mm apart have cores gap + 2 bridge
    # apart; grown by half that, such cores touch: a connected group of grown cores is a chain
    link_mm = (settings.gap_mm + 2.0 * settings.bridge_mm) / 2.0
    reach = ndimage.distance_transform_edt(~core, sampling=spacing) <= link_mm
    chains, _ = ndimage.label(reach, structure=np.ones((3, 3, 3), dtype=bool))
    column_core = core & (chains == chains[largest][0])
    grow = ndimage.distance_transform_edt(~column_core, sampling=spacing) <= 2.0 * settings.bridge_mm
    return foreground & grow


def restrict_to_column(probs: np.ndarray, spacing: np.ndarray,
                       settings: ColumnSettings = DEFAULT_COLUMN) -> tuple[np.ndarray, int]:
    """Class probabilities [K, ...] (model grid, ``spacing`` mm) with every voxel whose argmax lies
    outside the spinal column turned into certain background; and how many voxels that was."""
    foreground = np.argmax(probs, axis=0) > 0
    column = spinal_column_mask(foreground, spacing, settings)
    outside = foreground & ~column
    removed = int(outside.sum())
    if removed:
        probs = probs.copy()
        probs[:, outside] = 0.0
        probs[0, outside] = 1.0
    return probs, removed
