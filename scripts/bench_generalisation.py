"""Generalisation benchmark: held-out real subjects only, lesions painted by an independent painter.

    .venv/bin/python scripts/bench_generalisation.py --json OUT.json                  # models/modicseg-unet-v1
    .venv/bin/python scripts/bench_generalisation.py --compare OLD_DIR NEW_DIR        # side by side
    .venv/bin/python scripts/bench_generalisation.py --model A --model B --quick       # 2-3 volumes per set
    .venv/bin/python scripts/bench_generalisation.py --tables OLD.json NEW.json       # reprint saved runs
    .venv/bin/python scripts/bench_generalisation.py --split train                    # develop a rule (not a score)

Scores only data the training generator did not produce, on the subjects that ``configs/splits.yaml``
holds out (``heldout`` lists of ``real-spine`` and ``real-spine-dixon``): false lesions on healthy
scans, level names, body Dice, and lesions painted into real marrow by
``modicseg.evaluation.independent_painter`` (see ``modicseg.evaluation.generalisation`` for every
rule). The painted lesions depend only on ``--seed`` and the case, never on the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from modicseg.evaluation.generalisation import (  # noqa: E402
    FOUND_COVERAGE,
    SET_TITLES,
    TARGETS,
    evaluate_model,
    load_sets,
)
from modicseg.model.sources import read_splits  # noqa: E402


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _verdict(met) -> str:
    return {True: "met", False: "**not met**", None: "-"}[met]


HEADLINE_ROWS = (
    ("healthy_false_lesions_per_scan", "healthy scans: false lesions >= 100 mm³ per scan", lambda v: _fmt(v, 2)),
    ("healthy_false_lesions_tall_per_scan", "... of them >= 10 % of the body height, per scan", lambda v: _fmt(v, 2)),
    ("healthy_lesion_parts_per_scan", "healthy scans: network lesion parts >= 20 mm³ per scan", lambda v: _fmt(v, 1)),
    ("level_names_right", "level names like the masks", _pct),
    ("levels_named_right_count", "... bodies", str),
    ("dixon_body_dice", "Dixon held-out: body Dice", _fmt),
    ("dixon_body_dice_annotated_levels", "Dixon held-out: body Dice, annotated levels only (L1-L5)", _fmt),
    ("painted_lesion_dice", "painted lesions: lesion Dice (network, mean of scans)", _fmt),
    ("painted_found", f"painted lesions found (>= {FOUND_COVERAGE:.0%} covered by reported lesions)", _pct),
    ("painted_median_volume_error", "painted lesions: median abs. volume error (found)", _pct),
    ("painted_false_lesions_per_scan", "painted scans: false lesions >= 100 mm³ per scan", lambda v: _fmt(v, 2)),
    ("pair_type2_found", "T1+T2 pair: type-2 lesions found", str),
    ("pair_type2_typed_right", "T1+T2 pair: type-2 lesions typed 2 (primary)", str),
)


def headline_table(results: list[dict]) -> list[str]:
    names = [r["label"] for r in results]
    lines = ["| measure | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, title, fmt in HEADLINE_ROWS:
        target = TARGETS.get(key)
        cells = []
        for r in results:
            h = r["headline"]
            cell = fmt(h.get(key))
            if target is not None:
                cell += f" ({_verdict(h['met'].get(key))})"
            cells.append(cell)
        tgt = f"{target[0]} {target[1]:g}" if target else ""
        lines.append(f"| {title} | {tgt} | " + " | ".join(cells) + " |")
    return lines


def set_table(results: list[dict]) -> list[str]:
    lines = ["| set | model | scans | body Dice | annotated levels | surface Dice 2 mm | precision / recall | "
             "levels named right | healthy: false lesions >= 100 mm³ (>= 10 % height) | painted: lesions found | "
             "lesion Dice | median abs. volume error | false lesions | found by chance |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for set_name, title in SET_TITLES.items():
        for r in results:
            s = r["sets"].get(set_name)
            if s is None:
                continue
            summ, rows, p = s["summary"], s["cases"], s["painted"]["summary"]
            healthy = [row for row in rows if row.get("healthy")]
            false = (f"{sum(x['false_lesions_100mm3'] for x in healthy)} "
                     f"({sum(x['false_lesions_100mm3_tall'] for x in healthy)}) in {len(healthy)}" if healthy else "-")
            lines.append(
                f"| {title} | {r['label']} | {len(rows)} | {_fmt(summ.get('dice_vertebral_body'))} | "
                f"{_fmt(summ.get('dice_vertebral_body_annotated_levels'))} | {_fmt(summ.get('nsd_vertebral_body'))} | "
                f"{_fmt(summ.get('precision_vertebral_body'))} / {_fmt(summ.get('recall_vertebral_body'))} | "
                f"{summ.get('levels_named_right', '-')}/{summ.get('levels_reference', '-')} | {false} | "
                f"{p['found']}/{p['lesions']} (types 1/2/3: {p['found_type1']}, {p['found_type2']}, "
                f"{p['found_type3']}) | {_fmt(p['dice_lesion_network'])} | {_pct(p['median_abs_volume_error'])} | "
                f"{p['false_lesions_100mm3']} | {p['found_by_chance']} |")
    return lines


def case_lines(result: dict) -> list[str]:
    lines = [f"Per scan, {result['label']}:", "",
             "| scan | painted contrasts | body Dice | levels | wrong names | lesions reported (unpainted) | "
             "painted: found | lesion Dice | volume errors | types (painted -> analysis) | false lesions |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for set_name in SET_TITLES:
        s = result["sets"].get(set_name)
        if s is None:
            continue
        for row, p in zip(s["cases"], s["painted"]["cases"], strict=True):
            errors = ", ".join(f"{100 * les['volume_error']:+.0f}%" for les in p["lesions"] if les["found"])
            types = ", ".join(f"{les['type']}->{les['analysis']['type']}" if les["found"] else f"{les['type']}->missed"
                              for les in p["lesions"])
            sequence = row.get("sequence") or ""
            lines.append(f"| {row['case']} | {p['contrasts']}{f' ({sequence})' if sequence == 'DIXON_WATER' else ''} | "
                         f"{_fmt(row.get('dice_vertebral_body'))} | "
                         f"{row.get('levels_named_right', '-')}/{row.get('levels_reference', '-')} | "
                         f"{row.get('levels_wrong') or ''} | {row.get('lesions_reported', '-')} | "
                         f"{p['found']}/{p['painted']} | {_fmt(p['dice_lesion_network'])} | {errors} | {types} | "
                         f"{p['false_lesions_100mm3']} |")
    return lines


def markdown(results: list[dict]) -> str:
    lines = [*headline_table(results), "", *set_table(results), ""]
    for r in results:
        lines += [*case_lines(r), ""]
    return "\n".join(lines)


def source_state() -> dict:
    """The commit and the uncommitted source files the run used (figures depend on the analysis code too)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    changed = git("status", "--porcelain", "--", "src", "configs")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": changed.splitlines() if changed else []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", help="model folder (repeatable)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("OLD", "NEW"), help="two model folders side by side")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared")))
    parser.add_argument("--splits", type=Path, default=REPO / "configs" / "splits.yaml")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the painted lesions")
    parser.add_argument("--quick", action="store_true", help="2 Dixon volumes, the healthy real-spine subject")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"),
                        help="train: the training subjects, to develop an analysis rule without touching the "
                             "held-out ones (optimistic: the network has seen them; never a generalisation figure)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--tables", type=Path, nargs="+", metavar="JSON",
                        help="only print the tables of earlier --json outputs (side by side), run nothing")
    args = parser.parse_args()
    if args.tables:
        print(markdown([r for path in args.tables for r in json.loads(path.read_text())["results"]]))
        return 0
    models = list(args.model or []) + list(args.compare or [])
    if not models:
        models = [REPO / "models" / "modicseg-unet-v1"]
    import torch

    from modicseg.model.inference import Segmenter

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits = read_splits(args.splits)
    sets, healthy = load_sets(args.shared, splits, quick=args.quick, split=args.split)
    if not sets:
        print(f"no held-out data found under {args.shared}", file=sys.stderr)
        return 2
    res: dict = {"load_average": ", ".join(f"{v:.1f}" for v in os.getloadavg()), "quick": args.quick,
                 "split": args.split,
                 "seed": args.seed, "shared": str(args.shared), "splits": str(args.splits),
                 "source": source_state(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                 "cases": {k: [c.name for c in v] for k, v in sets.items()}, "healthy": sorted(healthy),
                 "targets": {k: list(v) for k, v in TARGETS.items()}, "results": []}

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    labels = [m.name for m in models]
    if len(set(labels)) < len(labels):
        labels = [str(m) for m in models]
    for model, label in zip(models, labels, strict=True):
        segmenter = Segmenter.load(model, device=args.device, precision=args.precision)
        progress(f"model {model} ({segmenter.config.version})")
        result = evaluate_model(segmenter, sets, healthy, seed=args.seed, progress=progress)
        result["label"] = f"{label} ({segmenter.config.version})"
        result["path"] = str(model)
        res["results"].append(result)
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    res["load_average_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    if args.split != "heldout":
        print(f"{args.split.upper()} SPLIT: the network has seen these subjects; set titles say 'held-out' but these "
              "are not generalisation figures\n")
    print(markdown(res["results"]))
    print(f"\n{res['elapsed_s']:.0f} s in all; load average {res['load_average']} at the start, "
          f"{res['load_average_end']} at the end")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
