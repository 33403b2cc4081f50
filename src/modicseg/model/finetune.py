"""Fine-tuning a checkpoint on a site's annotated scans, with a before/after validation table.

The cases (any layout of ``modicseg.model.cases``) are split into training and validation cases
(``validation.cases`` names them, else the dataset's own held-out cases, else
``validation.fraction`` of them, chosen with the seed);
partial labels are handled by the loss. Synthetic data can stay in the mix
(``data.real.fraction`` < 1) so that classes the site does not annotate are not forgotten.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modicseg.io.errors import InputError
from modicseg.model.cases import LabelledCase, load_labelled_cases
from modicseg.model.checkpoint import bundle_metadata, file_sha256, load_checkpoint, save_checkpoint
from modicseg.model.data import VolumeFn
from modicseg.model.inference import Segmenter
from modicseg.model.train import TrainResult, train, validation_sets
from modicseg.model.train_config import FinetuneSettings
from modicseg.model.validation import validate_cases

#: The fine-tuning settings' schema and defaults (``load_settings(path, overrides, base=FINETUNE_DEFAULTS)``;
#: ``FINETUNE_DEFAULTS.defaults()`` is the plain dict): training's, with fewer steps, a lower learning
#: rate, mostly annotated patches and validation on held-out cases.
FINETUNE_DEFAULTS = FinetuneSettings


@dataclass
class FinetuneResult:
    output: Path
    train: TrainResult
    before: dict[str, float]
    after: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""


def split_cases(cases: Sequence[LabelledCase], validation: Mapping[str, Any],
                seed: int) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """(training cases, validation cases): the cases ``validation["cases"]`` names, else those the
    dataset holds out (``info["held_out"]``: an nnU-Net ``dataset.json``'s ``validation_cases``),
    else ``validation["fraction"]`` of them chosen with ``seed``."""
    names = validation.get("cases")
    if not names and any(c.info.get("held_out") for c in cases):
        names = [c.name for c in cases if c.info.get("held_out")]
    if names:
        names = set(names)
        missing = names - {c.name for c in cases}
        if missing:
            raise InputError(f"validation cases not found: {sorted(missing)}")
        return [c for c in cases if c.name not in names], [c for c in cases if c.name in names]
    frac = float(validation.get("fraction", 0.25))
    n_val = int(round(frac * len(cases)))
    n_val = min(max(n_val, 1 if frac > 0 else 0), len(cases) - 1) if len(cases) >= 2 else 0
    order = np.random.default_rng(seed).permutation(len(cases))
    val_idx = set(order[:n_val].tolist())
    return [c for i, c in enumerate(cases) if i not in val_idx], [c for i, c in enumerate(cases) if i in val_idx]


def comparison_table(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """Markdown table of validation Dice before and after fine-tuning."""
    keys = [k for k in before if k in after] + [k for k in after if k not in before]
    lines = ["| metric | before | after | change |", "|---|---|---|---|"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        change = f"{a - b:+.4f}" if a is not None and b is not None else ""
        lines.append(f"| {k} | {'' if b is None else f'{b:.4f}'} | {'' if a is None else f'{a:.4f}'} | {change} |")
    return "\n".join(lines)


def _evaluate(checkpoint: Path, sets: Mapping[str, Sequence[LabelledCase]], device: str, precision: str,
              contrasts: Sequence[str] | None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    segmenter = Segmenter.load(checkpoint, device=device, precision=precision)
    summary: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for name, cases in sets.items():
        s, r = validate_cases(segmenter, cases, contrasts)
        summary.update({f"{name}_{k}": v for k, v in s.items()})
        rows.extend({"set": name, **row} for row in r)
    return summary, rows


def finetune(data_dir: str | Path, from_checkpoint: str | Path, settings: Mapping[str, Any],
             output: str | Path | None = None, *, base_dir: str | Path = ".", resume: bool = True,
             progress: bool = True, volume_fn: VolumeFn | None = None,
             log: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tune ``from_checkpoint`` on the annotated cases of ``data_dir``; write a new checkpoint
    (``output``, else ``settings["output"]``, else ``<run_dir>/finetuned``) with a before/after table."""
    base = Path(base_dir)
    run_settings: dict[str, Any] = copy.deepcopy(dict(settings))
    run_settings["init_from"] = str(from_checkpoint)
    requested_output = run_settings.get("output")
    run_settings["output"] = None  # the fine-tuned checkpoint is written below, with the before/after metrics
    source = load_checkpoint(from_checkpoint)
    real_s = run_settings["data"]["real"]
    cases = load_labelled_cases(data_dir, real_s.get("overrides"), real_s.get("limit"), real_s.get("cases"))
    val_s = run_settings["validation"]
    train_cases, val_cases = split_cases(cases, val_s, int(run_settings["seed"]))
    if not train_cases:
        raise InputError(f"{data_dir}: no case left for training after the validation split")
    sets: dict[str, list[LabelledCase]] = {}
    if val_cases:
        sets["real"] = val_cases
    sets.update({k: v for k, v in validation_sets(run_settings, source.config, base).items() if k == "synthetic"})
    log(f"fine-tuning on {len(train_cases)} case(s), validating on {len(val_cases)}: "
        f"{', '.join(c.name for c in val_cases) or '-'}")
    device = run_settings["optim"].get("device", "auto")
    precision = run_settings["optim"].get("precision", "auto")
    contrasts = val_s.get("contrasts")
    before, rows_before = _evaluate(source.directory, sets, device, precision, contrasts) if sets else ({}, [])
    result = train(run_settings, base_dir=base, resume=resume, progress=progress, volume_fn=volume_fn,
                   real_cases=train_cases, val_sets=sets, log=log)
    run_dir = Path(run_settings["run_dir"])
    run_dir = run_dir if run_dir.is_absolute() else base / run_settings["run_dir"]
    out = Path(output or requested_output or run_dir / "finetuned")
    if not out.is_absolute():
        out = base / out
    if not result.finished:
        log("fine-tuning stopped before its last step; run the same command again to continue")
        return FinetuneResult(out, result, before, {}, rows_before)
    chosen = result.best if result.best is not None else result.last
    ckpt = load_checkpoint(chosen)
    after, rows_after = _evaluate(chosen, sets, device, precision, contrasts) if sets else ({}, [])
    table = comparison_table(before, after)
    meta = bundle_metadata(ckpt.config, metrics={"before": before, "after": after}, training={
        "fine_tuned_from": str(source.directory), "parent_sha256": file_sha256(source.directory / "model.pt"),
        "data": str(data_dir), "training_cases": [c.name for c in train_cases],
        "validation_cases": [c.name for c in val_cases], **ckpt.metadata.get("training", {})},
        description=f"fine-tuned from {source.config.name} {source.config.version} on {data_dir}")
    save_checkpoint(out, ckpt.build_model("cpu"), ckpt.config, meta,
                    extra_files={"train_log.csv": run_dir / "train_log.csv"})
    rows = [{"when": "before", **r} for r in rows_before] + [{"when": "after", **r} for r in rows_after]
    (out / "finetune_report.json").write_text(json.dumps(
        {"before": before, "after": after, "cases": rows}, indent=2) + "\n")
    (out / "finetune_report.md").write_text(f"# Fine-tuning report\n\nFrom `{source.directory}` on `{data_dir}`.\n\n"
                                            f"{table}\n")
    log(table)
    return FinetuneResult(out, result, before, after, rows, table)
