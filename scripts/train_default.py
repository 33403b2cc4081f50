"""Train the default model (configs/train.yaml) in resumable sessions and export it to models/.

    .venv/bin/python scripts/train_default.py --minutes 55          # train up to 55 min, checkpointed
    .venv/bin/python scripts/train_default.py --minutes 55          # ... run again to continue
    .venv/bin/python scripts/train_default.py --export              # copy the best checkpoint so far to models/

Resume order: ``runs/default/last`` (exact: weights, optimizer, step) if it exists; otherwise the
shipped ``models/modicseg-unet-v1`` (weights and step from its metadata.json, fresh optimizer state),
so training can continue in a fresh clone; otherwise from scratch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modicseg.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from modicseg.model.train import train  # noqa: E402
from modicseg.model.train_config import load_settings  # noqa: E402


def seed_run_from_shipped(run_dir: Path, shipped: Path) -> bool:
    """Make ``run_dir/last`` from the shipped weights so that training continues from them."""
    if (run_dir / "last" / "train_state.pt").is_file() or not (shipped / "model.pt").is_file():
        return False
    ckpt = load_checkpoint(shipped)
    training = ckpt.metadata.get("training", {})
    # the step in configs/train.yaml's schedule: a second-stage checkpoint (configs/train_lookalikes.yaml)
    # records where stage 1 ended
    step = int(training.get("stage_1_step", training.get("step", 0)))
    state = {"step": step, "optimizer": None, "scaler": None,
             "best_score": float(ckpt.metadata.get("metrics", {}).get("synthetic_dice_mean", float("-inf"))),
             "elapsed_s": float(training.get("elapsed_s", 0.0)), "torch_rng": None}
    save_checkpoint(run_dir / "last", ckpt.build_model(), ckpt.config, ckpt.metadata, state)
    if (shipped / "train_log.csv").is_file() and not (run_dir / "train_log.csv").is_file():
        (run_dir / "train_log.csv").write_text((shipped / "train_log.csv").read_text())
    print(f"continuing from the shipped model {shipped} at step {state['step']} (fresh optimizer state)")
    return True


def export(run_dir: Path, output: Path, settings_inference: dict | None = None) -> Path:
    """Copy the best (else last) checkpoint of the run, with its CSV log, to ``output``."""
    source = run_dir / "best" if (run_dir / "best" / "model.pt").is_file() else run_dir / "last"
    ckpt = load_checkpoint(source)
    if settings_inference:  # the YAML's sliding-window settings win (they are not part of the weights)
        ckpt.config.inference = dict(settings_inference)
    save_checkpoint(output, ckpt.build_model(), ckpt.config, ckpt.metadata,
                    extra_files={"train_log.csv": run_dir / "train_log.csv"})  # keeps MODEL_CARD.md
    print(f"exported {source} (step {ckpt.metadata.get('training', {}).get('step')}) to {output}")
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train.yaml")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long (checkpointed)")
    parser.add_argument("--steps", type=int, default=None, help="override optim.steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export", action="store_true", help="only export the best checkpoint so far")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    over: dict = {"optim": {"num_threads": args.threads}}
    if args.minutes is not None:
        over["optim"]["max_minutes"] = args.minutes
    if args.steps is not None:
        over["optim"]["steps"] = args.steps
    settings = load_settings(args.config, over)
    run_dir = (REPO / settings["run_dir"]).resolve()
    output = (REPO / settings["output"]).resolve()
    if args.export:
        export(run_dir, output, (settings.get("model") or {}).get("inference"))
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_run_from_shipped(run_dir, output)
    torch.set_num_threads(args.threads)
    result = train(settings, base_dir=REPO, resume=True, progress=not args.no_progress)
    print(json.dumps({"step": result.step, "finished": result.finished, "metrics": result.metrics}, indent=2))
    if not result.finished:
        print("not finished: run the same command again to continue; --export copies the best checkpoint so far")
    return 0


if __name__ == "__main__":
    sys.exit(main())
