"""``modicseg inspect STUDY``: the stacks of a study, how each was classified, which are chosen.

The T2 role is the fluid-sensitive image: a T2 when the study has one, else a STIR / TIRM, else a
fat-suppressed T2 (role column "T2 (STIR)"); "chosen:" says which stack fills each role and why.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from modicseg.cli.common import add_study_arguments, study_request

if TYPE_CHECKING:  # imported when the command runs: ``modicseg --help`` stays light
    from modicseg.io.stacks import Stack


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="list the image stacks of a study",
                                   description=__doc__)
    add_study_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list of stacks")
    parser.set_defaults(func=run)


def _voxel(stack: Stack) -> str:
    f = stack.first
    if f.pixel_spacing is None:
        return "?"
    step = "?" if stack.geometry is None else f"{stack.geometry.step_mm:.2f}"
    return f"{f.pixel_spacing[1]:.2f}x{f.pixel_spacing[0]:.2f}x{step}"


def _status(stack: Stack) -> str:
    if stack.refusal:
        return f"refused: {stack.refusal}"
    notes = []
    if stack.localizer:
        notes.append("localizer")
    if stack.geometry is not None and stack.geometry.irregularity:
        notes.append(stack.geometry.irregularity)
    if stack.split_reason:
        notes.append(f"series split: {stack.split_reason}")
    return "; ".join(notes) or "ok"


def _role(stack: Stack) -> str:
    """T1, T2, or T2 (STIR) / T2 (T2FS) for a fat-suppressed image in the T2 (fluid-sensitive) role."""
    if stack.role is None:
        return ""
    if stack.role == "t2" and stack.weighting != "T2":
        return f"T2 ({stack.weighting})"
    return stack.role.upper()


ROLE_TITLE = {"t1": "T1", "t2": "fluid-sensitive (T2 role)"}


def format_choice(stacks: list[Stack]) -> str:
    """Which stack fills each role, and why."""
    lines = ["chosen:"]
    for role in ("t1", "t2"):
        stack = next((s for s in stacks if s.role == role), None)
        if stack is None:
            wanted = "T1" if role == "t1" else "T2, STIR or fat-suppressed T2"
            lines.append(f"  {ROLE_TITLE[role]}: none (no usable sagittal {wanted})")
        else:
            lines.append(f"  {ROLE_TITLE[role]}: series {stack.name} '{stack.series_description}' "
                         f"({stack.weighting}) <- {stack.role_reason}")
    return "\n".join(lines)


def format_table(stacks: list[Stack]) -> str:
    headers = ["series", "description", "plane", "weighting", "slices", "voxel (mm)", "matrix", "role", "status"]
    rows = [[s.name, s.series_description[:32], s.plane, s.weighting, str(s.n_slices), _voxel(s),
             f"{s.first.rows}x{s.first.columns}", _role(s), _status(s)] for s in stacks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers[:-1], widths, strict=True)) + "  " + headers[-1]]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    lines.append("")
    lines.append("weighting reasons:")
    for s in stacks:
        lines.append(f"  {s.name}: {s.weighting} <- {s.weighting_reason}")
    return "\n".join(lines)


def _nifti_rows(args: argparse.Namespace) -> list[dict] | None:
    """Stack summaries for NIfTI inputs, or None when the study is DICOM."""
    from modicseg.io.study import nifti_inputs, open_study

    request = study_request(args)
    if nifti_inputs(request) is None:
        return None
    study = open_study(request, require=())
    rows = []
    for role, image in study.roles().items():
        p = image.provenance
        rows.append({"series_number": p.series_number, "series_instance_uid": p.series_instance_uid,
                     "stack": role.upper(), "series_description": p.series_description, "plane": p.plane,
                     "weighting": p.weighting, "weighting_reason": p.weighting_reason,
                     "n_slices": image.shape[2], "shape": list(image.shape),
                     "voxel_size_mm": [round(float(v), 4) for v in image.spacing],
                     "orientation": "".join(image.axcodes), "usable": True, "refusal": None, "role": role,
                     "role_reason": study.choice.get(role)})
    return rows


def run(args: argparse.Namespace) -> int:
    from modicseg.io.dicom_series import scan_study
    from modicseg.io.errors import InputError
    from modicseg.io.study import assign_roles

    nifti_rows = _nifti_rows(args)
    if nifti_rows is not None:
        if args.json:
            print(json.dumps(nifti_rows, indent=2))
        else:
            for row in nifti_rows:
                voxel = "x".join(f"{v:.2f}" for v in row["voxel_size_mm"])
                role = ROLE_TITLE[row["role"]]
                print(f"{role}: {row['series_description']}  {row['weighting']}  {row['plane']}  shape "
                      f"{'x'.join(map(str, row['shape']))}  voxel {voxel} mm  orientation {row['orientation']}")
                if row["role_reason"]:
                    print(f"  <- {row['role_reason']}")
        return 0
    scan = scan_study(args.study)
    if not scan.stacks:
        raise InputError(f"{args.study}: no image stacks")
    assign_roles(scan, args.t1_series, args.t2_series)
    if args.json:
        print(json.dumps([s.summary() for s in scan.stacks], indent=2))
        return 0
    folder = scan.folder
    print(f"{folder.n_files} files, {len(folder.frames)} MR images, "
          f"{len({s.series_instance_uid for s in scan.stacks})} series, {len(scan.stacks)} stacks; "
          f"skipped: {folder.skipped_summary()}")
    print()
    print(format_table(scan.stacks))
    print()
    print(format_choice(scan.stacks))
    missing = [{"t1": "T1", "t2": "T2 (or STIR)"}[role] for role in ("t1", "t2")
               if not any(s.role == role for s in scan.stacks)]
    if missing:
        print(f"\nno sagittal {' or '.join(missing)} found")
    return 0
