"""Training loop: on-the-fly synthetic data (+ optional annotated cases), Dice + CE with partial
labels, periodic validation, atomic checkpoints, automatic resume, CSV log, AMP on CUDA.

Run folder (``run_dir``)::

    last/            latest checkpoint + train_state.pt (resume point)
    best/            best synthetic-validation checkpoint
    train_log.csv    step, time, lr, loss, validation Dice per class
    settings.yaml    the merged settings of the run
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml

from modicseg.io.errors import InputError
from modicseg.model.cases import LabelledCase, load_labelled_cases
from modicseg.model.checkpoint import bundle_metadata, load_checkpoint, save_checkpoint
from modicseg.model.config import ModelConfig
from modicseg.model.data import TrainingStream, VolumeFn, case_to_volume
from modicseg.model.inference import Segmenter, autocast_dtype, resolve_device
from modicseg.model.losses import PartialDiceCELoss
from modicseg.model.network import build_network
from modicseg.model.train_config import model_config_from
from modicseg.model.validation import validate_cases


@dataclass
class TrainResult:
    """What a (possibly partial) training run ended with."""

    step: int
    finished: bool
    last: Path
    best: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    exported: Path | None = None


def lr_at(step: int, optim: Mapping[str, Any]) -> float:
    """Linear warm-up, then polynomial (0.9) decay to ``lr_end_fraction`` of the peak."""
    lr, steps, warm = float(optim["lr"]), int(optim["steps"]), int(optim.get("warmup_steps", 0))
    if step < warm:
        return lr * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, steps - warm))
    end = float(optim.get("lr_end_fraction", 0.0))
    return lr * (end + (1 - end) * (1 - frac) ** 0.9)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def validation_sets(settings: Mapping[str, Any], config: ModelConfig, base_dir: Path) -> dict[str, list[LabelledCase]]:
    """{"synthetic": [...], "real": [...]} validation cases named by the settings."""
    val = settings["validation"]
    out: dict[str, list[LabelledCase]] = {}
    syn = val.get("synthetic") or {}
    n = int(syn.get("n_cases", 0))
    if n > 0 and settings["data"]["synthetic"].get("enabled", True):
        source = settings["data"]["synthetic"].get("source", "synth")
        if source == "toy":
            from modicseg.model.toy import toy_cases

            shape = tuple(settings["data"]["synthetic"].get("generator", {}).get("shape", config.patch_size))
            out["synthetic"] = toy_cases(n, int(syn.get("seed", 1000)),
                                           cast("tuple[float, float, float]", tuple(config.spacing_mm)), shape)
        else:
            from modicseg.model.synth_adapter import synth_validation_cases

            out["synthetic"] = synth_validation_cases(n, int(syn.get("seed", 1000)), **dict(syn.get("generator") or {}))
    real = val.get("real") or {}
    cases: list[LabelledCase] = []
    for d in real.get("dirs") or []:
        path = _resolve(d, base_dir)
        if path.is_dir():
            cases.extend(load_labelled_cases(path, real.get("overrides"), real.get("limit"), real.get("cases")))
    if cases:
        out["real"] = cases
    return out


def _resolve(path: str | Path, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


class _Log:
    """The CSV log: fixed columns, rows after the resume step dropped on resume."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None) -> None:
        self.path, self.columns = path, columns
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(float(r.get("step", 0) or 0)) <= resume_step]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()})


def validate(model: torch.nn.Module, config: ModelConfig, sets: Mapping[str, Sequence[LabelledCase]],
             device: torch.device, precision: str) -> dict[str, float]:
    """Dice per class on each validation set, keys "<set>_dice_<class>"."""
    segmenter = Segmenter.from_model(model, config, device, precision)
    out: dict[str, float] = {}
    for name, cases in sets.items():
        summary, _ = validate_cases(segmenter, cases)
        out.update({f"{name}_{k}": v for k, v in summary.items()})
    return out


def train(settings: Mapping[str, Any], *, base_dir: str | Path = ".", resume: bool = True,
          progress: bool = True, volume_fn: VolumeFn | None = None,
          real_cases: Sequence[LabelledCase] | None = None,
          val_sets: Mapping[str, Sequence[LabelledCase]] | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train (or continue training) as ``settings`` say; returns where the checkpoints are.

    Resumes from ``run_dir/last`` when it exists and ``resume`` is true. Stops after
    ``optim.steps`` steps, after ``optim.max_minutes`` (checkpointed; run again to continue), or on
    SIGINT/SIGTERM (checkpointed). ``volume_fn`` replaces the synthetic generator (tests);
    ``real_cases`` / ``val_sets`` replace the annotated cases / validation sets the settings name.
    """
    check_settings(settings)
    base = Path(base_dir)
    optim_s = settings["optim"]
    run_dir = _resolve(settings["run_dir"], base)
    run_dir.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if optim_s.get("num_threads"):
        torch.set_num_threads(int(optim_s["num_threads"]))
    try:
        return _train(settings, base, run_dir, optim_s, resume, progress, volume_fn, real_cases, val_sets, log)
    finally:
        torch.set_num_threads(threads_before)


def _train(settings: Mapping[str, Any], base: Path, run_dir: Path, optim_s: Mapping[str, Any], resume: bool,
           progress: bool, volume_fn: VolumeFn | None, real_cases: Sequence[LabelledCase] | None,
           val_sets: Mapping[str, Sequence[LabelledCase]] | None, log: Callable[[str], None]) -> TrainResult:
    last_dir, best_dir = run_dir / "last", run_dir / "best"
    seed = int(settings["seed"])
    device = resolve_device(optim_s.get("device", "auto"))
    precision = optim_s.get("precision", "auto")
    amp_dtype = autocast_dtype(device, precision)

    # --- model and state --------------------------------------------------------------------
    state: dict[str, Any] | None = None
    if resume and (last_dir / "train_state.pt").is_file():
        ckpt = load_checkpoint(last_dir, with_train_state=True)
        config = ckpt.config
        state = ckpt.train_state
        model = ckpt.build_model(device).train()
        log(f"resuming {run_dir} at step {state['step'] if state else 0}")
    elif settings.get("init_from"):
        ckpt = load_checkpoint(_resolve(settings["init_from"], base))
        config = ckpt.config
        model = ckpt.build_model(device).train()
        log(f"starting from weights {ckpt.directory}")
    else:
        config = model_config_from(settings)
        seed_everything(seed)
        model = build_network(config).to(device).train()
    if (settings.get("model") or {}).get("inference"):  # deployment settings, not architecture: YAML wins
        config.inference = dict(settings["model"]["inference"])
    if (settings.get("model") or {}).get("version") and not state:  # a new stage from init_from: its own version
        config.version = str(settings["model"]["version"])
    (run_dir / "settings.yaml").write_text(yaml.safe_dump(_plain(settings), sort_keys=False))

    optimizer = torch.optim.AdamW(model.parameters(), lr=float(optim_s["lr"]),
                                  weight_decay=float(optim_s.get("weight_decay", 0.0)))
    scaler = torch.amp.GradScaler("cuda", enabled=(device.type == "cuda" and amp_dtype == torch.float16))
    start_step, best_score, elapsed_before = 0, -math.inf, 0.0
    if state:
        if state.get("optimizer"):  # absent when continuing from a shipped (weights-only) checkpoint
            optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
        best_score = float(state.get("best_score", -math.inf))
        elapsed_before = float(state.get("elapsed_s", 0.0))
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])
    total_steps = int(optim_s["steps"])

    # --- data -------------------------------------------------------------------------------
    real_settings = settings["data"]["real"]
    if real_cases is None:
        real_cases = []
        for d in real_settings.get("dirs") or []:
            real_cases.extend(load_labelled_cases(_resolve(d, base), real_settings.get("overrides"),
                                                  real_settings.get("limit"), real_settings.get("cases")))
    real_volumes = [case_to_volume(case, config) for case in real_cases]
    if real_settings.get("sources"):
        from modicseg.model.sources import source_volumes

        real_volumes += source_volumes(real_settings["sources"], config, base, log)
    stream = TrainingStream(config, settings, real_volumes, seed=seed * 1_000_003 + start_step, volume_fn=volume_fn)
    workers = int(settings["data"].get("num_workers", 0))
    loader = torch.utils.data.DataLoader(stream, batch_size=int(optim_s["batch_size"]), num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    if val_sets is None:
        val_sets = validation_sets(settings, config, base)
    loss_fn = PartialDiceCELoss(float(settings["loss"]["dice_weight"]), float(settings["loss"]["ce_weight"]))

    metric_cols = [f"{s}_dice_{name}" for s in ("synthetic", "real")
                   for name in [config.labels[c] for c in sorted(config.labels) if c] + ["mean"]]
    log_file = _Log(run_dir / "train_log.csv", ["step", "time_s", "lr", "loss", "samples_per_s", *metric_cols],
                    start_step if state else None)

    stop = {"flag": False}

    def _on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not in the main thread
            old_handlers[sig] = signal.signal(sig, _on_signal)

    def train_state(step: int, elapsed: float) -> dict[str, Any]:
        return {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "best_score": best_score, "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(),
                "seed": seed, "settings": _plain(settings)}

    def metadata(step: int, metrics: Mapping[str, float], elapsed: float) -> dict[str, Any]:
        return bundle_metadata(config, metrics=dict(metrics), training={
            "step": step, "steps": total_steps, "elapsed_s": round(elapsed, 1), "seed": seed,
            "device": str(device), "precision": str(amp_dtype) if amp_dtype else "float32",
            "batch_size": int(optim_s["batch_size"]), "settings": _plain(settings)})

    started = time.perf_counter()
    last_save = started
    max_minutes = optim_s.get("max_minutes")
    every = int(settings["validation"].get("every_steps", 0) or 0)
    ckpt_every = float(optim_s.get("checkpoint_every_min", 5.0)) * 60
    step = start_step
    metrics: dict[str, float] = {}
    running, n_running, t_log = 0.0, 0, time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    try:
        it = iter(loader)
        while step < total_steps and not stop["flag"]:
            x, y, groups = next(it)
            x, y, groups = x.to(device), y.to(device), groups.to(device)
            lr = lr_at(step, optim_s)
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            if amp_dtype is not None:
                with torch.autocast(device.type, dtype=amp_dtype):
                    logits = model(x)
            else:
                logits = model(x)
            loss = loss_fn(logits.float(), y, groups)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(optim_s.get("grad_clip", 12.0)))
            scaler.step(optimizer)
            scaler.update()
            step += 1
            running += float(loss.detach())
            n_running += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running / n_running:.4f}", lr=f"{lr:.2e}")
            now = time.perf_counter()
            elapsed = elapsed_before + now - started
            do_val = bool(val_sets) and ((every and step % every == 0) or step == total_steps)
            row: dict[str, Any] = {}
            if do_val:
                metrics = validate(model, config, val_sets, device, precision)
                model.train()
                score = metrics.get("synthetic_dice_mean", metrics.get("real_dice_mean", -math.inf))
                row.update(metrics)
                if score > best_score:
                    best_score = score
                    save_checkpoint(best_dir, model, config, metadata(step, metrics, elapsed))
                log_line = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                (bar.write if bar is not None else log)(f"step {step}: {log_line}")
            if step % 10 == 0 or do_val or step == total_steps:
                row.update({"step": step, "time_s": round(elapsed, 1), "lr": lr, "loss": running / max(1, n_running),
                            "samples_per_s": n_running * int(optim_s["batch_size"]) / max(1e-9, now - t_log)})
                log_file.write(row)
                running, n_running, t_log = 0.0, 0, now
            timed_out = max_minutes is not None and (now - started) > float(max_minutes) * 60
            if do_val or now - last_save > ckpt_every or timed_out or step == total_steps:
                save_checkpoint(last_dir, model, config, metadata(step, metrics, elapsed),
                                train_state(step, elapsed))
                last_save = now
            if timed_out:
                log(f"stopping after {max_minutes} min at step {step}; run again to continue")
                break
        if stop["flag"]:
            elapsed = elapsed_before + time.perf_counter() - started
            save_checkpoint(last_dir, model, config, metadata(step, metrics, elapsed), train_state(step, elapsed))
            log(f"interrupted at step {step}: checkpoint saved to {last_dir}; run again to resume")
    finally:
        if bar is not None:
            bar.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    finished = step >= total_steps
    exported = None
    if finished and settings.get("output"):
        source = best_dir if best_dir.is_dir() else last_dir
        ckpt = load_checkpoint(source)
        exported = _resolve(settings["output"], base)
        model_out = ckpt.build_model("cpu")
        save_checkpoint(exported, model_out, ckpt.config, ckpt.metadata,
                        extra_files={"train_log.csv": run_dir / "train_log.csv"})
        log(f"exported {source.name} checkpoint to {exported}")
    return TrainResult(step, finished, last_dir, best_dir if best_dir.is_dir() else None, metrics, exported)


def _plain(value: Any) -> Any:
    """YAML/JSON-safe copy of settings (paths and tuples to plain types)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def check_settings(settings: Mapping[str, Any]) -> None:
    """Early, readable errors for settings that cannot work."""
    if int(settings["optim"]["steps"]) < 1:
        raise InputError("optim.steps must be >= 1")
    if int(settings["optim"]["batch_size"]) < 1:
        raise InputError("optim.batch_size must be >= 1")
