"""``modicseg train --config configs/train.yaml``: train the segmentation network (resumable)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train the segmentation network on synthetic (+ annotated) data",
                                   description=__doc__)
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="training settings (default: built-in defaults; see configs/train.yaml)")
    parser.add_argument("--run-dir", type=Path, metavar="DIR", help="run folder (checkpoints, CSV log)")
    parser.add_argument("--output", type=Path, metavar="DIR", help="export the final model here")
    parser.add_argument("--steps", type=int, metavar="N", help="total optimisation steps")
    parser.add_argument("--max-minutes", type=float, metavar="M",
                        help="stop (with a checkpoint) after M minutes; run again to continue")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fresh", action="store_true",
                        help="start over: delete the run folder's checkpoints instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict:
    """Command-line options as settings overrides."""
    over: dict = {}
    if args.run_dir is not None:
        over["run_dir"] = str(args.run_dir)
    if getattr(args, "output", None) is not None:
        over["output"] = str(args.output)
    if args.seed is not None:
        over["seed"] = args.seed
    optim = {k: v for k, v in (("steps", args.steps), ("max_minutes", args.max_minutes),
                                ("device", args.device)) if v is not None}
    if optim:
        over["optim"] = optim
    return over


def clear_run(run_dir: Path) -> None:
    for name in ("last", "best", "train_log.csv"):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run(args: argparse.Namespace) -> int:
    from modicseg.model.train import train
    from modicseg.model.train_config import load_settings

    settings = load_settings(args.config, overrides_from(args))
    if args.fresh:
        clear_run(Path(settings["run_dir"]))
    result = train(settings, resume=not args.fresh, progress=not args.no_progress)
    state = "finished" if result.finished else "stopped (run the same command to continue)"
    print(f"training {state} at step {result.step}; last checkpoint: {result.last}")
    if result.exported:
        print(f"model exported to {result.exported}")
    return 0
