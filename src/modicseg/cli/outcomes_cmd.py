"""``modicseg outcomes OUTDIR --arms arms.csv``: unblinding, last: the imaging outcomes by arm.

Reads a finished batch (OUTDIR/cohort/) and the allocation (arms.csv: subject,arm).  Per arm: the
share of type-1 lesions, and of patients, turning type 2 (Fisher's exact or chi-square test) and
the change in type-1 volume (Wilcoxon rank-sum and t-test).  Writes OUTDIR/outcomes/ (outcomes.md,
outcomes.html, outcomes.json, outcomes_by_arm.csv).  Allocation enters no earlier step.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("outcomes", help="imaging outcomes by arm (unblinding, after the batch)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="a finished `modicseg batch` output folder")
    parser.add_argument("--arms", type=Path, required=True, metavar="CSV", help="allocation: columns subject,arm")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR", help="where to write (default OUTDIR/outcomes)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.batch.outcomes import write_outcomes

    folder = write_outcomes(args.outdir, args.arms, args.output)
    print((folder / "outcomes.md").read_text())
    print(f"wrote {folder}/ (outcomes.md, outcomes.html, outcomes.json, outcomes_by_arm.csv)")
    return 0
