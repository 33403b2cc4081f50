"""Level names of a model + the analysis on one split of a shared real set (e.g. the TRAIN cases,
where level-naming rules and training choices may be checked without touching the held-out ones).

    .venv/bin/python scripts/levels_on_split.py --model DIR --set real-spine --split train
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modicseg.model.sources import split_cases  # noqa: E402

OVERRIDES = {"real-spine": {}, "real-spine-dixon": {"sequence": "DIXON_WATER"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "modicseg-unet-v1")
    parser.add_argument("--set", choices=sorted(OVERRIDES), default="real-spine")
    parser.add_argument("--split", default="train")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared")))
    args = parser.parse_args()
    import torch

    from modicseg.evaluation.segmentation import evaluate_cases
    from modicseg.model.cases import load_labelled_cases
    from modicseg.model.inference import Segmenter

    torch.set_num_threads(2)
    folder = args.shared / args.set
    cases = load_labelled_cases(folder, OVERRIDES[args.set], include=split_cases(folder, args.split))
    summary, rows = evaluate_cases(Segmenter.load(args.model), cases, level_names=True)
    for row in rows:
        wrong = row.get("levels_wrong") or ""
        print(f"{row['case']}: {row['levels_named_right']}/{row['levels_reference']} {wrong}")
    print(f"{args.set} {args.split}: {summary['levels_named_right']:.0f}/{summary['levels_reference']:.0f} "
          f"bodies named like the masks ({args.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
