"""QC figure: baseline and registered follow-up side by side, one row per level with a change."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modicseg.core.image import Image, LabelImage
from modicseg.core.resample import resample_to

if TYPE_CHECKING:
    from modicseg.longitudinal.change import ChangeReport

TYPE_COLOURS = {"1": "#e41a1c", "2": "#ffd92f", "3": "#4dd2ff", "1/2": "#ff7f00", "2/1": "#ff7f00",
                "2/3": "#a6d854", "3/2": "#a6d854"}
MAX_ROWS = 8
HALF_WIDTH_MM = 45.0


def _view_axes(image: Image) -> tuple[int, int, int]:
    """(slice axis: most left-right, vertical axis: most cranio-caudal, horizontal axis)."""
    direction = np.abs(image.direction)
    slice_axis = int(np.argmax(direction[0]))
    rest = [a for a in range(3) if a != slice_axis]
    vertical = max(rest, key=lambda a: direction[2, a])
    horizontal = next(a for a in rest if a != vertical)
    return slice_axis, vertical, horizontal


def _panel(array: np.ndarray, image: Image, centre_ras: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """A sagittal crop through ``centre_ras``: superior up, anterior left; and its extent (mm)."""
    s, v, h = _view_axes(image)
    index = image.voxel_coordinates(np.asarray(centre_ras, float)[None])[0]
    plane = np.take(array, int(np.clip(round(index[s]), 0, array.shape[s] - 1)), axis=s)
    rest = [a for a in range(3) if a != s]
    if rest.index(v) == 1:
        plane = plane.T
    spacing = image.spacing
    cv, ch = index[v], index[h]
    half_v, half_h = HALF_WIDTH_MM / spacing[v], HALF_WIDTH_MM / spacing[h]
    v0, v1 = int(max(0, cv - half_v)), int(min(plane.shape[0], cv + half_v + 1))
    h0, h1 = int(max(0, ch - half_h)), int(min(plane.shape[1], ch + half_h + 1))
    crop = plane[v0:v1, h0:h1]
    if image.direction[2, v] > 0:  # index grows toward superior: flip so superior is up
        crop = crop[::-1]
    if image.direction[1, h] > 0:  # index grows toward anterior: flip so anterior is left
        crop = crop[:, ::-1]
    return crop, [0.0, crop.shape[1] * spacing[h], crop.shape[0] * spacing[v], 0.0]


def _row_centre(row: dict[str, Any], change: ChangeReport) -> np.ndarray | None:
    if row.get("baseline_id") is not None:
        return np.asarray(change.baseline.lesion(row["baseline_id"]).centre_ras, float)
    if row.get("followup_id") is not None:
        centre = change.followup.lesion(row["followup_id"]).centre_ras
        inverse = change.registration.transform.GetInverse()
        lps = np.asarray(centre, float) * [-1, -1, 1]
        return np.asarray(inverse.TransformPoint([float(x) for x in lps])) * [-1, -1, 1]
    return None


def qc_figure(change: ChangeReport, path: str | Path) -> Path:
    """Write the figure (PNG); a short note instead of panels when nothing changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, follow = change.baseline, change.followup
    transform = change.registration.transform
    grid = base.labels
    base_img = base.t2 if base.t2 is not None else grid
    follow_img = resample_to(follow.t2 if follow.t2 is not None else follow.labels, grid, transform)
    follow_lesions = resample_to(LabelImage(follow.lesion_map.astype(np.int32), follow.labels.affine), grid,
                                 transform).array
    rows = [r for r in change.rows if _row_centre(r, change) is not None][:MAX_ROWS]
    fig, axes = plt.subplots(max(1, len(rows)), 2, figsize=(7.0, 3.3 * max(1, len(rows))), squeeze=False)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        axes[0, 0].text(0.0, 0.5, "no lesion at either time point", fontsize=12)
    for r, row in enumerate(rows):
        centre = _row_centre(row, change)
        assert centre is not None  # rows without a centre were left out above
        for c, (image, lesion_map, lesion_id, kind, when) in enumerate((
                (base_img, base.lesion_map, row.get("baseline_id"), row["baseline_type"], "baseline"),
                (follow_img, follow_lesions, row.get("followup_id"), row["followup_type"], "follow-up"))):
            ax = axes[r, c]
            panel, extent = _panel(np.asarray(image.array, dtype=np.float32), grid, centre)
            values = panel[panel > 0]
            lo, hi = np.percentile(values, [1, 99.5]) if values.size else (0.0, 1.0)
            ax.imshow(panel, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent,
                      interpolation="nearest")
            if lesion_id is not None:
                mask, _ = _panel((lesion_map == lesion_id).astype(np.float32), grid, centre)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=[TYPE_COLOURS.get(str(kind), "white")],
                               linewidths=1.2, extent=extent, origin="upper")
            volume = row["volume_baseline_mm3"] if c == 0 else row["volume_followup_mm3"]
            label = f"{when}: type {kind}" + (f", {volume:.0f} mm³" if volume else "")
            ax.set_title(f"{row['level']} {row['endplate']}\n{label}" if c == 0 else f"{row['status']}\n{label}",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("baseline | follow-up registered to baseline (sagittal, anterior left)", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / max(1, len(rows))))
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
