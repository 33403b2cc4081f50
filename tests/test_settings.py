"""One config system (issue 19, item 4): every shipped configuration loads with the values it states,
and a misspelt key in an analysis, model or training configuration is refused with the key named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modicseg.analysis.config import AnalysisConfig, load_config
from modicseg.cli import main
from modicseg.io.errors import InputError
from modicseg.model.config import ModelConfig
from modicseg.model.finetune import FINETUNE_DEFAULTS
from modicseg.model.postprocess import ColumnSettings
from modicseg.model.train_config import load_settings, model_config_from

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TRAIN_YAMLS = sorted(CONFIGS.glob("train*.yaml"))
SHIPPED = REPO / "models" / "modicseg-unet-v1"


def _leaves(data: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every value in a YAML mapping that is not itself a mapping."""
    if isinstance(data, dict) and data:
        return [leaf for key, value in data.items() for leaf in _leaves(value, (*path, str(key)))]
    return [(path, data)]


def _at(settings: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        settings = settings[key]
    return settings


def test_every_shipped_training_yaml_loads_with_the_values_it_states() -> None:
    assert len(TRAIN_YAMLS) >= 7
    for path in TRAIN_YAMLS:
        settings = load_settings(path)
        for where, value in _leaves(yaml.safe_load(path.read_text())):
            assert _at(settings, where) == value, (path.name, where)
        # what a file leaves out takes the training defaults
        assert settings["optim"]["lr_end_fraction"] == 0.02 and settings["optim"]["grad_clip"] == 12.0
        assert "fraction" not in settings["validation"]  # a fine-tuning key
        config = model_config_from(settings)
        assert config.network.kernel_size and config.in_channels == 4


def test_shipped_training_yamls_resolve_as_before() -> None:
    stage4 = load_settings(CONFIGS / "train_realscans_stage4.yaml")
    assert stage4["model"] == {"name": "modicseg-unet", "version": "2.0.0", "inference": {
        "roi_size": [16, 128, 128], "overlap": 0.25, "blend": "gaussian", "sw_batch_size": 1}}
    assert stage4["optim"] == {"steps": 6000, "batch_size": 2, "lr": 0.0004, "weight_decay": 0.0001,
                               "warmup_steps": 50, "lr_end_fraction": 0.02, "grad_clip": 12.0,
                               "precision": "auto", "device": "auto", "num_threads": 2, "max_minutes": None,
                               "checkpoint_every_min": 5}
    assert stage4["data"]["real"]["sources"][1] == {"dir": "../shared/real-spine", "split": "train",
                                                    "ignore_above": True, "weight": 4}  # as written
    assert stage4["data"]["real"]["paint"] == {"intensity_curve": 0.3, "lesions": [0, 3], "lookalikes": [0, 3]}
    assert stage4["data"]["real"]["dirs"] == [] and stage4["validation"]["real"]["cases"] is None
    # command-line options over the file
    over = load_settings(CONFIGS / "train.yaml", {"run_dir": "elsewhere", "optim": {"steps": 5}})
    assert over["run_dir"] == "elsewhere" and over["optim"]["steps"] == 5 and over["optim"]["lr"] == 0.002


def test_finetune_yaml_loads_over_the_finetune_defaults() -> None:
    path = CONFIGS / "finetune.yaml"
    settings = load_settings(path, base=FINETUNE_DEFAULTS)
    for where, value in _leaves(yaml.safe_load(path.read_text())):
        assert _at(settings, where) == value, where
    defaults = FINETUNE_DEFAULTS.defaults()
    assert settings["data"]["synthetic"]["refresh_every"] == defaults["data"]["synthetic"]["refresh_every"] == 4
    assert (defaults["run_dir"], defaults["optim"]["steps"], defaults["optim"]["lr"]) == ("runs/finetune", 300, 5e-4)
    assert defaults["optim"]["batch_size"] == 2  # training's where fine-tuning says nothing
    assert defaults["validation"]["fraction"] == 0.25 and defaults["data"]["real"]["fraction"] == 0.75
    # a file that gives part of a section keeps the fine-tuning defaults for the rest
    partial = load_settings(overrides={"optim": {"steps": 10}}, base=FINETUNE_DEFAULTS)
    assert partial["optim"]["steps"] == 10 and partial["optim"]["lr"] == 5e-4


def test_shipped_analysis_yaml_and_checkpoint_config_load() -> None:
    assert load_config(CONFIGS / "analysis.yaml") == AnalysisConfig()
    written = json.loads((SHIPPED / "config.json").read_text())
    config = ModelConfig.load(SHIPPED / "config.json")
    assert config.to_dict() == written  # the checkpoint's config.json reads and writes back unchanged
    assert config.resolved().network.strides == written["network"]["strides"]
    assert ColumnSettings.from_config(config.postprocess) == ColumnSettings(bridge_mm=2.0, gap_mm=8.0)


@pytest.mark.parametrize(("text", "key"), [
    ("lesions:\n  min_volume: 30\n", "lesions.min_volume"),
    ("typing:\n  stir_bands:\n    '1': {t1: [0, 0.8], stir: [1.5, null], stirr: [0, 1]}\n", "typing.stir_bands.1"),
    ("eligibilty:\n  min_height_fraction: 0.2\n", "eligibilty"),
])
def test_analysis_yaml_typo_is_refused_naming_file_and_key(tmp_path, capsys, text, key) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"{path}: .*{key}"):
        load_config(path)
    # the CLI: one line on stderr, exit status 2, before the study is read
    study = tmp_path / "study"
    study.mkdir()
    assert main(["analyze", str(study), "-o", str(tmp_path / "out"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and key in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_analysis_yaml_names_the_known_keys_and_bad_values(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("lesions:\n  min_volume: 30\n")
    with pytest.raises(InputError, match=r"unknown key 'lesions\.min_volume' \(known: min_volume_mm3, "):
        load_config(path)
    path.write_text("eligibility:\n  min_confidence: 1.5\n")
    with pytest.raises(InputError, match=r"eligibility\.min_confidence: .*less than or equal to 1"):
        load_config(path)
    path.write_text("lesions:\n  max_endplate_gap_mm: null\n")  # documented: null keeps every part
    assert load_config(path).lesions.max_endplate_gap_mm is None


def test_model_config_typo_is_refused_naming_file_and_key(tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    data = json.loads((SHIPPED / "config.json").read_text())
    data["inference"]["overlapp"] = 0.5
    (checkpoint / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"config\.json: unknown key 'inference\.overlapp' \(known: roi_size, "):
        ModelConfig.load(checkpoint / "config.json")
    data["inference"].pop("overlapp")
    data["postprocess"] = {"spinal_column": {"gap": 5}}
    (checkpoint / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"unknown key 'postprocess\.spinal_column\.gap' \(known: bridge_mm, gap_mm\)"):
        ModelConfig.load(checkpoint / "config.json")


@pytest.mark.parametrize(("section", "key"), [
    ("optim:\n  stpes: 10\n", "optim.stpes"),
    ("augment:\n  artefacts: {motoin: 0.1}\n", "augment.artefacts.motoin"),
    ("data:\n  real:\n    sources:\n      - {dir: somewhere, wieght: 2}\n", "data.real.sources.0.wieght"),
    ("model:\n  network: {filterz: [8, 16]}\n", "model.network.filterz"),
    ("validation:\n  fraction: 0.2\n", "validation.fraction"),  # fine-tuning only
])
def test_training_yaml_typo_is_refused_naming_file_and_key(tmp_path, capsys, section, key) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("seed: 1\n" + section)
    with pytest.raises(InputError, match=f"{path}: unknown key '{key}'"):
        load_settings(path)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: unknown key '{key}'") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_finetune_yaml_typo_is_refused(tmp_path) -> None:
    path = tmp_path / "finetune.yaml"
    path.write_text((CONFIGS / "finetune.yaml").read_text().replace("  fraction: 0.25", "  fractoin: 0.25"))
    with pytest.raises(InputError, match=f"{path}: unknown key 'validation.fractoin'"):
        load_settings(path, base=FINETUNE_DEFAULTS)
    path.write_text("optim:\n  steps: many\n")
    with pytest.raises(InputError, match=f"{path}: optim.steps: .*integer"):
        load_settings(path, base=FINETUNE_DEFAULTS)
