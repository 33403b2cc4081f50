"""``modicseg batch MANIFEST -o OUTDIR``: analyse a cohort and compare every subject's time points.

MANIFEST is a CSV (subject,timepoint,path[,labels,t1,t2]) or a folder laid out
SUBJECT/TIMEPOINT/ (see docs/batch.md).  Runs on local worker processes (``--workers``) or on a
Dask cluster (``--scheduler ADDRESS``).  Re-running skips every study and comparison whose inputs,
model and settings are unchanged; a failing study is recorded and the batch goes on.  Writes
OUTDIR/studies/, compare/, cohort/ (tables and figures), summary.json and summary.md.
Treatment allocation never enters a batch: see ``modicseg outcomes``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("batch", help="analyse and compare a whole cohort (resumable, local or Dask)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest CSV or SUBJECT/TIMEPOINT folder")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--workers", type=int, default=2,
                        help="local worker processes (default 2; 0 runs every job in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on the Dask cluster behind this scheduler (e.g. tcp://host:8786)")
    parser.add_argument("--model", "--checkpoint", dest="model", type=Path, metavar="DIR",
                        help="segmentation model checkpoint folder (default: the shipped model)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="analysis thresholds (YAML)")
    parser.add_argument("--content-hash", action="store_true",
                        help="fingerprint inputs by content (slower) instead of name, size and time")
    parser.add_argument("--no-refine", action="store_true", help="landmark-only registration in comparisons")
    parser.add_argument("--no-figures", action="store_true", help="no qc.png per job, no cohort figures")
    parser.add_argument("--no-seg", action="store_true", help="no DICOM SEG per study")
    parser.add_argument("--no-confidence", action="store_true",
                        help="no lesion confidence or uncertainty map (one network pass per study instead of two: "
                             "about 1.4x the studies per hour; the cohort tables' confidence columns stay empty)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.batch.jobs import JobOptions
    from modicseg.batch.manifest import read_manifest
    from modicseg.batch.runner import run_batch

    manifest = read_manifest(args.manifest)
    options = JobOptions(config=str(args.config) if args.config else None,
                         model=str(args.model) if args.model else None, refine_registration=not args.no_refine,
                         figures=not args.no_figures, seg=not args.no_seg, confidence=not args.no_confidence)
    summary = run_batch(manifest, args.output, options, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.no_progress,
                        content_hash=args.content_hash)
    print(summary.text())
    print(f"wrote {args.output}/ (summary.md, summary.json, studies/, compare/, cohort/)")
    return 0

