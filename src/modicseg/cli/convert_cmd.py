"""``modicseg convert STUDY -o DIR``: the chosen T1 and T2 (or every 3-D stack) as NIfTI + JSON.

The fluid-sensitive image is written as ``study_T2w`` (a T2, or a fat-suppressed T2 whose sidecar
says "T2FS") or ``study_STIR`` (a STIR): reading the folder back keeps the contrast.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from modicseg.cli.common import add_study_arguments, study_request
from modicseg.io.atomic import atomic_output_dir
from modicseg.io.errors import InputError, ModicsegError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="write the chosen T1/T2 (or all stacks) as NIfTI",
                                   description=__doc__)
    add_study_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    parser.add_argument("--all", action="store_true",
                        help="write every 3-D stack (any plane or weighting) instead of T1/T2")
    parser.add_argument("--t1-on-t2-grid", action="store_true",
                        help="also write the T1 resampled onto the T2 grid (study_T1w_on_T2grid)")
    parser.set_defaults(func=run)


def _convert_all(args: argparse.Namespace) -> int:
    from modicseg.io.dicom_series import scan_study
    from modicseg.io.dicom_volume import build_volume
    from modicseg.io.nifti_output import safe_name, write_image

    if args.study is None:
        raise InputError("--all needs a DICOM STUDY folder")
    scan = scan_study(args.study)
    images, refused = [], []
    for stack in scan.stacks:
        if not stack.usable:
            refused.append(f"series {stack.name} '{stack.series_description}': {stack.refusal}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                images.append((stack, build_volume(stack, args.resample_irregular)))
        except ModicsegError as exc:
            refused.append(f"series {stack.name} '{stack.series_description}': {exc}")
    for line in refused:
        print(f"refused {line}", file=sys.stderr)
    if not images:
        raise InputError(f"{args.study}: no 3-D stack could be converted ({len(refused)} refused)")
    with atomic_output_dir(args.output) as tmp:
        for stack, image in images:
            number = f"{stack.series_number:03d}" if stack.series_number is not None else "NA"
            suffix = "" if stack.stacks_in_series == 1 else f"-{stack.stack_index + 1}"
            stem = f"{number}{suffix}_{safe_name(stack.series_description)}"
            write_image(image, tmp, stem)
            print(f"wrote {args.output / stem}.nii.gz  ({stack.plane} {stack.weighting}, {image.shape})")
    return 0


def run(args: argparse.Namespace) -> int:
    from modicseg.io.nifti_output import write_image
    from modicseg.io.study import open_study, t1_on_t2_grid

    if args.all:
        return _convert_all(args)
    study = open_study(study_request(args))
    with atomic_output_dir(args.output) as tmp:
        for role, image in study.roles().items():
            stem = "study_STIR" if role == "t2" and image.provenance.weighting == "STIR" else f"study_{role.upper()}w"
            write_image(image, tmp, stem, {"role": role})
            print(f"wrote {args.output / stem}.nii.gz  ({image.provenance.weighting}, series "
                  f"{image.provenance.series_number}, "
                  f"{image.shape}, voxel {'x'.join(f'{v:.2f}' for v in image.spacing)} mm)")
        if args.t1_on_t2_grid:
            t1, _ = t1_on_t2_grid(study)
            write_image(t1, tmp, "study_T1w_on_T2grid", {"role": "t1", "resampled_onto": "t2"})
            print(f"wrote {args.output / 'study_T1w_on_T2grid'}.nii.gz")
    return 0
