"""Real annotated sources for training: folders, subject splits (``configs/splits.yaml``), and how
each source's cases enter the training stream (painted lesions, ignored unlabelled levels)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modicseg.io.errors import InputError
from modicseg.model.cases import LabelledCase, load_labelled_cases
from modicseg.model.config import ModelConfig
from modicseg.model.data import TrainingVolume, case_to_volume

SPLITS_FILE = Path(__file__).resolve().parents[3] / "configs" / "splits.yaml"


def read_splits(path: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """``{set name: {"train": [...], "heldout": [...], "healthy": [...]}}`` (``healthy: all`` = every case)."""
    p = Path(path) if path is not None else SPLITS_FILE
    if not p.is_file():
        raise InputError(f"{p}: no such splits file")
    data = yaml.safe_load(p.read_text()) or {}
    out: dict[str, dict[str, list[str]]] = {}
    for name, parts in data.items():
        every = [*parts.get("train", []), *parts.get("heldout", [])]
        out[str(name)] = {key: (list(every) if value == "all" else [str(v) for v in value])
                          for key, value in parts.items()}
        overlap = set(out[name].get("train", [])) & set(out[name].get("heldout", []))
        if overlap:
            raise InputError(f"{p}: {name}: cases both trained on and held out: {sorted(overlap)}")
    return out


def split_cases(folder: str | Path, split: str, splits_path: str | Path | None = None) -> list[str]:
    """The case names of ``split`` ("train", "heldout", "healthy") for a shared set folder (by its name)."""
    name = Path(folder).resolve().name
    splits = read_splits(splits_path)
    if name not in splits:
        raise InputError(f"{splits_path or SPLITS_FILE}: no split for '{name}'")
    return list(splits[name].get(split, []))


def source_cases(source: Mapping[str, Any], base: Path) -> list[LabelledCase]:
    """The cases one ``data.real.sources`` entry names."""
    folder = Path(source["dir"])
    folder = folder if folder.is_absolute() else base / folder
    include: Sequence[str] | None = source.get("cases")
    if source.get("split"):
        include = split_cases(folder, str(source["split"]), source.get("splits_file"))
    return load_labelled_cases(folder, source.get("overrides"), source.get("limit"), include)


def source_volumes(sources: Sequence[Mapping[str, Any]], config: ModelConfig, base: Path,
                   log: Any = None) -> list[TrainingVolume]:
    """Model-space training volumes of every source (see ``case_to_volume`` for paint / ignore;
    ``weight``: each case of the source is drawn that many times as often)."""
    volumes: list[TrainingVolume] = []
    for source in sources:
        unknown = set(source) - {"dir", "split", "splits_file", "cases", "limit", "overrides", "paint",
                                 "ignore_above", "ignore_below", "weight"}
        if unknown:
            raise InputError(f"data.real.sources: unknown keys {sorted(unknown)}")
        cases = source_cases(source, base)
        weight = int(source.get("weight", 1))  # each case drawn this many times as often
        if weight < 1:
            raise InputError(f"data.real.sources: weight must be a whole number >= 1 (got {weight})")
        for case in cases:
            volume = case_to_volume(case, config, paint=bool(source.get("paint", False)),
                                    ignore_above=bool(source.get("ignore_above", False)),
                                    ignore_below=bool(source.get("ignore_below", False)))
            volumes.extend([volume] * weight)
        if log is not None:
            log(f"real source {source['dir']}: {len(cases)} cases"
                f"{' (painted)' if source.get('paint') else ''}")
    return volumes
