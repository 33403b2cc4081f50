"""``modicseg synth``: write synthetic lumbar MRI studies with exact ground truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from modicseg.io.errors import InputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate synthetic sagittal lumbar MRI studies with ground truth",
        description="Write DIR/case_NNNN/{dicom/,nifti/,truth.json} (or DIR/pair_NNNN/{baseline,followup}/ "
                    "and pair_truth.json with --pairs). Patient names/IDs are canary strings.")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--cases", type=int, default=1, help="number of cases (or pairs) [1]")
    parser.add_argument("--seed", type=int, default=0, help="base seed; case i uses seed + i [0]")
    parser.add_argument("--pairs", action="store_true", help="baseline / follow-up pairs")
    parser.add_argument("--format", choices=("dicom", "nifti", "both"), default="both", help="outputs [both]")
    parser.add_argument("--variant", action="append", choices=("enhanced", "compressed", "extra-series"),
                        default=[], help="DICOM variant (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.synth.case import generate_case
    from modicseg.synth.pairs import generate_pair, write_pair
    from modicseg.synth.write import write_case

    if args.cases < 1:
        raise InputError(f"--cases must be at least 1 (got {args.cases})")
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    variants = tuple(dict.fromkeys(args.variant))
    for index in range(args.cases):
        seed = args.seed + index
        if args.pairs:
            pair_id = f"pair_{index:04d}"
            pair = generate_pair(seed, pair_id)
            write_pair(pair, out / pair_id, args.format, variants, subject_index=index)
            print(f"{out / pair_id}: {len(pair.baseline.scene.lesions)} -> "
                  f"{len(pair.followup.scene.lesions)} lesion(s)")
        else:
            case_id = f"case_{index:04d}"
            case = generate_case(seed, case_id)
            write_case(case, out / case_id, args.format, variants, subject_index=index)
            print(f"{out / case_id}: {len(case.scene.lesions)} lesion(s), T2 grid {case.t2.shape}")
    return 0
