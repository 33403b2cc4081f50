"""Group frames into series, split each series into stacks of one geometry, analyse each stack.

A *stack* is a set of frames that share orientation, matrix, pixel spacing, echo and image type.
A stack is usable as a 3-D volume when it has one image per slice position, at least three
slices, and complete geometry.  Otherwise it carries a ``refusal`` that says why.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.ma  # np.median imports it on its first call: 20 ms inside the first study load otherwise

from modicseg.io.classify import classify_weighting, plane_of
from modicseg.io.dicom_headers import FrameHeader

#: Two positions closer than this along the normal are the same slice position (mm).
SAME_POSITION_MM = 0.01
#: Orientation vectors that differ by less than this are one orientation.
SAME_ORIENTATION = 1e-3
_LOCALIZER_NAME = re.compile(r"LOCALI[ZS]ER|SCOUT|SURVEY|3-?PLANE", re.I)


@dataclass
class SliceGeometry:
    """Where the slices of a stack lie along its normal."""

    normal: np.ndarray  # LPS unit normal (row x column)
    offsets: np.ndarray  # sorted distance of each slice along the normal (mm)
    step_mm: float  # median distance between neighbouring slices
    irregularity: str | None  # missing slices or uneven spacing, described; None when regular


@dataclass
class Stack:
    """One geometry of one series, with its classification and whether it can be a volume."""

    series_instance_uid: str
    series_number: int | None
    series_description: str
    frames: list[FrameHeader]
    stack_index: int = 0  # 0-based within its series
    stacks_in_series: int = 1
    split_reason: str | None = None
    plane: str = "unknown"
    obliquity_deg: float = float("nan")
    weighting: str = "other"
    weighting_reason: str = ""
    refusal: str | None = None
    geometry: SliceGeometry | None = None
    localizer: bool = False
    role: str | None = None  # "t1", "t2" (the fluid-sensitive image: T2, else STIR / fat-suppressed T2) or None
    role_reason: str | None = None  # why this stack was chosen for its role

    @property
    def n_slices(self) -> int:
        return len(self.frames)

    @property
    def first(self) -> FrameHeader:
        return self.frames[0]

    @property
    def name(self) -> str:
        """Series number (and stack within the series) for messages and file names."""
        number = "?" if self.series_number is None else str(self.series_number)
        return number if self.stacks_in_series == 1 else f"{number}.{self.stack_index + 1}"

    @property
    def usable(self) -> bool:
        return self.refusal is None

    def summary(self) -> dict:
        """JSON-ready description (no identifiers)."""
        f = self.first
        return {
            "series_number": self.series_number,
            "series_instance_uid": self.series_instance_uid,
            "stack": self.name,
            "series_description": self.series_description,
            "plane": self.plane,
            "obliquity_deg": None if np.isnan(self.obliquity_deg) else round(self.obliquity_deg, 2),
            "weighting": self.weighting,
            "weighting_reason": self.weighting_reason,
            "n_slices": self.n_slices,
            "matrix": [f.rows, f.columns],
            "pixel_spacing_mm": list(f.pixel_spacing) if f.pixel_spacing else None,
            "slice_spacing_mm": None if self.geometry is None else round(self.geometry.step_mm, 4),
            "slice_thickness_mm": f.slice_thickness,
            "irregularity": None if self.geometry is None else self.geometry.irregularity,
            "localizer": self.localizer,
            "usable": self.usable,
            "refusal": self.refusal,
            "split_reason": self.split_reason,
            "role": self.role,
            "role_reason": self.role_reason,
        }


def _orientation_cluster(clusters: list[tuple[float, ...]], orientation: tuple[float, ...] | None) -> int:
    if orientation is None:
        return -1
    for index, existing in enumerate(clusters):
        if max(abs(a - b) for a, b in zip(existing, orientation, strict=True)) < SAME_ORIENTATION:
            return index
    clusters.append(orientation)
    return len(clusters) - 1


def _stack_key(frame: FrameHeader, orientation_id: int) -> tuple:
    spacing = None if frame.pixel_spacing is None else tuple(round(v, 4) for v in frame.pixel_spacing)
    echo = frame.echo_number if frame.echo_number is not None else (
        None if frame.echo_time is None else round(frame.echo_time, 2))
    return (orientation_id, frame.rows, frame.columns, spacing, echo, frame.image_type)


_KEY_NAMES = ("orientation", "matrix", "matrix", "pixel spacing", "echo", "image type")


def _split_reason(keys: list[tuple]) -> str:
    differing: list[str] = []
    for position, name in enumerate(_KEY_NAMES):
        if len({k[position] for k in keys}) > 1 and name not in differing:
            differing.append(name)
    words = []
    for name in differing:
        if name == "orientation":
            words.append("orientation (slices not parallel)")
        elif name == "echo":
            echoes = sorted({k[4] for k in keys}, key=lambda v: (v is None, v))
            words.append(f"echo ({len(echoes)} echoes per position: {', '.join(map(str, echoes))})")
        else:
            words.append(name)
    return f"{len(keys)} stacks differing in {', '.join(words) or 'geometry'}"


def split_series(frames: list[FrameHeader]) -> list[Stack]:
    """Split the frames of one series into stacks of one geometry each."""
    clusters: list[tuple[float, ...]] = []
    groups: dict[tuple, list[FrameHeader]] = defaultdict(list)
    for frame in frames:
        groups[_stack_key(frame, _orientation_cluster(clusters, frame.orientation))].append(frame)
    # stacks in acquisition order (their first InstanceNumber, then their geometry), not in the order
    # the files happened to be listed: "1.1" names the same stack on every run
    def acquisition_order(key: tuple) -> tuple:
        first = min(groups[key], key=lambda f: (f.instance_number is None, f.instance_number or 0,
                                                tuple(round(v, 3) for v in f.orientation or ())))
        return (first.instance_number is None, first.instance_number or 0,
                tuple(round(v, 3) for v in first.orientation or ()), repr(key[1:]))

    keys = sorted(groups, key=acquisition_order)
    reason = _split_reason(keys) if len(keys) > 1 else None
    first = frames[0]
    stacks = []
    for index, key in enumerate(keys):
        stack = Stack(
            series_instance_uid=first.series_instance_uid,
            series_number=first.series_number,
            series_description=first.series_description,
            frames=groups[key],
            stack_index=index,
            stacks_in_series=len(keys),
            split_reason=reason,
        )
        analyse_stack(stack)
        stacks.append(stack)
    if len(stacks) > 1:
        _name_split_off_images(stacks, keys)
    return stacks


def _key_difference(key: tuple, main: tuple, frame: FrameHeader, reference: FrameHeader) -> str:
    """How a split-off image differs from the stack it would fill a gap of."""
    if key[0] != main[0]:
        return (f"ImageOrientationPatient {'missing or unreadable' if frame.orientation is None else frame.orientation}"
                f" instead of {reference.orientation}")
    if key[1:3] != main[1:3]:
        return f"Rows x Columns {frame.rows}x{frame.columns} instead of {reference.rows}x{reference.columns}"
    if key[3] != main[3]:
        return f"PixelSpacing {'missing or unreadable' if frame.pixel_spacing is None else frame.pixel_spacing} " \
               f"instead of {reference.pixel_spacing}"
    if key[4] != main[4]:
        return f"echo {key[4]} instead of {main[4]}"
    return f"image type {'/'.join(frame.image_type)} instead of {'/'.join(reference.image_type)}"


def _name_split_off_images(stacks: list[Stack], keys: list[tuple]) -> None:
    """A stack with missing slices whose gaps hold images split off from it (a broken orientation, a
    wrong matrix...) says which files those are and how they differ, instead of only "missing slice"."""
    for stack, key in zip(stacks, keys, strict=True):
        geometry = stack.geometry
        if geometry is None or geometry.irregularity is None or "missing" not in geometry.irregularity:
            continue
        low, high = geometry.offsets[0], geometry.offsets[-1]
        culprits = []
        for other, other_key in zip(stacks, keys, strict=True):
            if other is stack:
                continue
            for frame in other.frames:
                if frame.position is not None:
                    offset = float(np.dot(np.asarray(frame.position), geometry.normal))
                    if not low + SAME_POSITION_MM < offset < high - SAME_POSITION_MM:
                        continue
                culprits.append(f"{frame.label} ({_key_difference(other_key, key, frame, stack.first)})")
        if culprits:
            shown = "; ".join(culprits[:3]) + (f"; and {len(culprits) - 3} more" if len(culprits) > 3 else "")
            geometry.irregularity += f"; the image(s) split off from this series at the gap: {shown}"


def group_series(frames: list[FrameHeader]) -> list[Stack]:
    """All stacks of all series, ordered by series number then stack."""
    by_series: dict[str, list[FrameHeader]] = defaultdict(list)
    for frame in frames:
        by_series[frame.series_instance_uid].append(frame)
    stacks: list[Stack] = []
    for series_frames in by_series.values():
        stacks.extend(split_series(series_frames))
    stacks.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid,
                               s.stack_index))
    return stacks


def slice_geometry(frames: list[FrameHeader], normal: np.ndarray) -> tuple[list[FrameHeader], SliceGeometry]:
    """Frames sorted along the normal, and the spacing between them (from positions only)."""
    offsets = np.array([np.dot(np.asarray(f.position), normal) for f in frames])
    order = np.argsort(offsets, kind="stable")
    sorted_frames = [frames[i] for i in order]
    offsets = offsets[order]
    gaps = np.diff(offsets)
    step = float(np.median(gaps)) if len(gaps) else 0.0
    irregularity = None
    if len(gaps) >= 1 and step > 0:
        tolerance = max(0.02, 0.01 * step)
        bad = np.abs(gaps - step) > tolerance
        if bad.any():
            multiples = gaps[bad] / step
            if np.all(np.abs(multiples - np.round(multiples)) * step <= tolerance) and np.all(multiples > 1.5):
                missing = int(np.sum(np.round(multiples) - 1))
                where = ", ".join(f"{offsets[i]:.2f}-{offsets[i + 1]:.2f} mm" for i in np.flatnonzero(bad))
                irregularity = (f"{missing} missing slice(s): gap(s) at {where} along the normal "
                                f"where the step is {step:.3f} mm")
            else:
                irregularity = (f"uneven slice spacing: steps from {gaps.min():.3f} to {gaps.max():.3f} mm "
                                f"(median {step:.3f} mm)")
    return sorted_frames, SliceGeometry(normal=normal, offsets=offsets, step_mm=step, irregularity=irregularity)


def _position_ids(offsets: np.ndarray) -> list[int]:
    """Same id for offsets closer than SAME_POSITION_MM (sorted sweep, no rounding edges)."""
    order = np.argsort(offsets)
    ids = np.empty(len(offsets), dtype=np.int64)
    current = 0
    for rank, index in enumerate(order):
        if rank > 0 and offsets[index] - offsets[order[rank - 1]] > SAME_POSITION_MM:
            current += 1
        ids[index] = current
    return ids.tolist()


#: Row and column cosines must be unit vectors and orthogonal within this tolerance.
ORIENTATION_TOLERANCE = 0.01


def _invalid_geometry(stack: Stack) -> str | None:
    """Why a stack's orientation, positions or pixel spacing cannot define a grid (naming the file), or None."""
    first = stack.first
    row = np.asarray(first.orientation[:3], dtype=np.float64)  # type: ignore[index]
    col = np.asarray(first.orientation[3:], dtype=np.float64)  # type: ignore[index]
    if not (np.isfinite(row).all() and np.isfinite(col).all()) or abs(np.linalg.norm(row) - 1) > ORIENTATION_TOLERANCE \
            or abs(np.linalg.norm(col) - 1) > ORIENTATION_TOLERANCE or abs(float(row @ col)) > ORIENTATION_TOLERANCE:
        return (f"invalid ImageOrientationPatient {list(first.orientation)} in {first.label}: "  # type: ignore[arg-type]
                "not two orthogonal unit vectors")
    for frame in stack.frames:
        if not np.isfinite(np.asarray(frame.position, dtype=np.float64)).all():
            return f"invalid ImagePositionPatient {list(frame.position)} in {frame.label}"  # type: ignore[arg-type]
        spacing = np.asarray(frame.pixel_spacing, dtype=np.float64)
        if not np.isfinite(spacing).all() or (spacing <= 0).any():
            return f"invalid PixelSpacing {list(frame.pixel_spacing)} in {frame.label}"  # type: ignore[arg-type]
    return None


def _first_missing(frames: list[FrameHeader], attribute: str) -> FrameHeader | None:
    return next((f for f in frames if getattr(f, attribute) is None), None)


def analyse_stack(stack: Stack) -> None:
    """Fill in plane, weighting, slice geometry and the refusal reason (if any) of a stack."""
    first = stack.first
    stack.plane, stack.obliquity_deg = plane_of(first.orientation)
    stack.weighting, stack.weighting_reason = classify_weighting(first)
    stack.localizer = "LOCALIZER" in first.image_type or bool(
        _LOCALIZER_NAME.search(first.series_description))
    if first.is_mosaic:
        stack.refusal = "mosaic (several slices tiled in one image): not a 3-D anatomical series"
        return
    if first.samples_per_pixel != 1:
        stack.refusal = f"{first.samples_per_pixel} samples per pixel (colour): not an MR magnitude series"
        return
    for attribute, tag in (("orientation", "ImageOrientationPatient"), ("position", "ImagePositionPatient"),
                           ("pixel_spacing", "PixelSpacing")):
        missing = _first_missing(stack.frames, attribute)
        if missing is not None:
            stack.refusal = f"no {tag} (missing or unreadable) in {missing.label}"
            return
    normal = first.normal
    if normal is None:
        stack.refusal = f"degenerate ImageOrientationPatient in {first.label}"
        return
    invalid = _invalid_geometry(stack)
    if invalid is not None:
        stack.refusal = invalid
        return
    offsets = np.array([np.dot(np.asarray(f.position), normal) for f in stack.frames])
    counts = Counter(_position_ids(offsets))
    per_position = sorted(counts.values())
    if per_position[-1] > 1:
        n_positions = len(counts)
        if per_position[0] == per_position[-1]:
            temporal = {f.temporal_position for f in stack.frames} - {None}
            what = f"{len(temporal)} time points" if len(temporal) > 1 else "several volumes"
            stack.refusal = (f"4-D: {per_position[-1]} images per slice position at {n_positions} positions "
                             f"({what}): not a 3-D anatomical series")
        else:
            duplicated = sum(1 for v in counts.values() if v > 1)
            stack.refusal = (f"duplicate slice positions: {duplicated} of {n_positions} positions hold more "
                             "than one image (e.g. a repeated or mixed-in slice)")
        return
    if stack.n_slices < 3:
        stack.refusal = (f"only {stack.n_slices} slice(s) in this orientation"
                         f"{' (localizer)' if stack.localizer else ''}: not a 3-D stack")
        return
    stack.frames, stack.geometry = slice_geometry(stack.frames, normal)
