"""``modicseg finetune --data DIR --from CHECKPOINT``: fine-tune on annotated scans.

DIR holds one folder per case (t1/t2 NIfTI or a DICOM study, labels as NIfTI or DICOM SEG, an
optional case.json naming the annotated classes), an nnU-Net raw dataset (dataset.json, imagesTr,
labelsTr), or the ../shared/real-spine layout. See docs/model.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modicseg.cli.train_cmd import clear_run, overrides_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a checkpoint on annotated scans",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="annotated cases")
    parser.add_argument("--from", dest="from_checkpoint", type=Path, metavar="CHECKPOINT",
                        help="checkpoint folder to start from (default: the shipped model)")
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="fine-tuning settings (see configs/finetune.yaml)")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR", help="new checkpoint folder")
    parser.add_argument("--run-dir", type=Path, metavar="DIR", help="run folder (checkpoints, CSV log)")
    parser.add_argument("--steps", type=int, metavar="N")
    parser.add_argument("--max-minutes", type=float, metavar="M")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--val-cases", metavar="A,B", help="comma-separated names of validation cases")
    parser.add_argument("--real-fraction", type=float, metavar="F",
                        help="share of annotated (vs synthetic) patches; 1 = annotated only")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming the run folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modicseg.model.checkpoint import default_checkpoint
    from modicseg.model.finetune import FINETUNE_DEFAULTS, finetune
    from modicseg.model.train_config import load_settings

    over = overrides_from(args)
    if args.val_cases:
        over.setdefault("validation", {})["cases"] = [c.strip() for c in args.val_cases.split(",") if c.strip()]
    if args.real_fraction is not None:
        over.setdefault("data", {}).setdefault("real", {})["fraction"] = args.real_fraction
        if args.real_fraction >= 1.0:
            over["data"]["synthetic"] = {"enabled": False}
    settings = load_settings(args.config, over, base=FINETUNE_DEFAULTS)
    if args.fresh:
        clear_run(Path(settings["run_dir"]))
    from modicseg.shipped import shipped_model

    source = shipped_model(args.from_checkpoint) or default_checkpoint()
    result = finetune(args.data, source, settings, args.output, resume=not args.fresh,
                      progress=not args.no_progress)
    if result.train.finished:
        print(f"fine-tuned checkpoint written to {result.output}")
    return 0
