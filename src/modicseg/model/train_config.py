"""Training / fine-tuning settings (YAML): ``core.settings`` models with the defaults, checked on load.

``load_settings`` layers the defaults, a YAML file (``configs/train*.yaml``, ``configs/finetune.yaml``)
and command-line overrides, validates the result with :class:`TrainSettings` (or
:class:`FinetuneSettings`) and returns it as the plain nested dict that ``train`` and ``finetune``
read. An unknown key anywhere (a typo) or a value of the wrong kind is an ``InputError`` naming the
file and the dotted key, before any work. The ``model:`` section is checked against ``ModelConfig``
but kept as written (what it leaves out comes from ``init_from`` or the model defaults); so are the
entries of ``data.real.sources``. ``generator`` and ``overrides`` are keyword arguments passed on
as given (to the synthetic generator and to ``model.cases``), checked by their users.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from modicseg.core.settings import Settings, merge_data, read_yaml
from modicseg.io.errors import InputError
from modicseg.model.config import ModelConfig

#: TorchIO scanner artefacts that ``augment.artefacts`` may name (``model.data.scanner_artefacts``).
ARTEFACTS = ("motion", "ghosting", "spike", "anisotropy")


class OptimSettings(Settings):
    steps: int = 2400
    batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    lr_end_fraction: float = 0.02
    grad_clip: float = 12.0
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"
    num_threads: int = 2
    max_minutes: float | None = None  # stop with a checkpoint after this long; run again to continue
    checkpoint_every_min: float = 5.0


class LossSettings(Settings):
    dice_weight: float = 1.0
    ce_weight: float = 1.0


class SyntheticDataSettings(Settings):
    enabled: bool = True
    source: Literal["synth", "toy"] = "synth"  # modicseg.synth (domain-randomised) or the toy phantom
    pool_size: int = 24  # volumes kept in memory ...
    refresh_every: int = 4  # ... one replaced by a fresh one every this many patches
    slice_spacing_mm: list[float] = Field(default_factory=lambda: [3.0, 4.5])  # randomised slice spacing
    fov_mm: list[float] = Field(default_factory=lambda: [60.0, 200.0, 240.0])  # field of view (jittered)
    generator: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the generator


class RealSource(Settings):
    """One entry of ``data.real.sources``: a folder of annotated cases and how to use them."""

    dir: str
    split: str | None = None  # "train" / "heldout" of the splits file
    splits_file: str | None = None
    cases: list[str] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)  # case overrides (model.cases)
    limit: int | None = None
    paint: bool = False  # paint lesions and look-alikes into the real marrow
    ignore_above: bool = False  # unlabelled vertebrae above the highest label: ignored by the loss
    ignore_below: bool = False
    weight: int = 1  # each case drawn this many times as often


class PaintSettings(Settings):
    intensity_curve: float = 0.0
    lesions: list[int] = Field(default_factory=lambda: [0, 3])
    lookalikes: list[int] = Field(default_factory=lambda: [0, 3])


class RealDataSettings(Settings):
    dirs: list[str] = Field(default_factory=list)
    fraction: float = Field(default=0.0, ge=0, le=1)  # share of patches from annotated cases
    overrides: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = None
    cases: list[str] | None = None
    sources: list[RealSource] = Field(default_factory=list)
    paint: PaintSettings = Field(default_factory=PaintSettings)


class DataSettings(Settings):
    num_workers: int = 1
    foreground_fraction: float = Field(default=0.67, ge=0, le=1)
    synthetic: SyntheticDataSettings = Field(default_factory=SyntheticDataSettings)
    real: RealDataSettings = Field(default_factory=RealDataSettings)


class AugmentSettings(Settings):
    flip_lr: float = 0.5
    affine: float = 0.3
    rotate_deg: float = 12.0
    scale: float = 0.1
    noise: float = 0.2
    bias_field: float = 0.3
    gamma: float = 0.3
    smooth: float = 0.2
    scale_intensity: float = 0.3
    channel_dropout: dict[str, float] = Field(default_factory=lambda: {"T1": 0.15, "T2": 0.15})
    artefacts: dict[Literal[ARTEFACTS], float] = Field(default_factory=dict)  # type: ignore[valid-type]


class SyntheticValidationSettings(Settings):
    n_cases: int = 6
    seed: int = 1000
    generator: dict[str, Any] = Field(default_factory=dict)


class RealValidationSettings(Settings):
    dirs: list[str] = Field(default_factory=list)
    limit: int | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    cases: list[str] | None = None


class ValidationSettings(Settings):
    every_steps: int = 250
    synthetic: SyntheticValidationSettings = Field(default_factory=SyntheticValidationSettings)
    real: RealValidationSettings = Field(default_factory=RealValidationSettings)


class FinetuneValidationSettings(ValidationSettings):
    fraction: float = Field(default=0.25, ge=0, lt=1)  # share of the cases held out for the before/after table
    cases: list[str] | None = None  # ... or their names
    contrasts: list[str] | None = None  # evaluate with these contrasts only


class TrainSettings(Settings):
    """``modicseg train`` settings (``configs/train*.yaml``)."""

    #: Defaults that differ from the fields' own, as data under the file (a subclass sets them: a
    #: file that gives part of a section keeps these for the rest).
    layered_defaults: ClassVar[dict[str, Any]] = {}

    seed: int = 0
    run_dir: str = "runs/default"
    output: str | None = None
    init_from: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)  # kept as written (see the module docstring)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    loss: LossSettings = Field(default_factory=LossSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

    def to_settings(self) -> dict[str, Any]:
        """The plain nested dict ``train`` / ``finetune`` read: every section with its defaults,
        the ``model:`` section and the real sources as written."""
        settings = self.model_dump()
        written = self.model_dump(exclude_unset=True)
        settings["model"] = written.get("model", {})
        settings["data"]["real"]["sources"] = written.get("data", {}).get("real", {}).get("sources", [])
        return settings

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The settings when no file and no override is given."""
        return cls.from_data(cls.layered_defaults, source="defaults").to_settings()


class FinetuneSettings(TrainSettings):
    """``modicseg finetune`` settings (``configs/finetune.yaml``): training's, with fewer steps, a lower
    learning rate, mostly annotated patches and validation on held-out cases."""

    layered_defaults: ClassVar[dict[str, Any]] = {
        "run_dir": "runs/finetune",
        "optim": {"steps": 300, "lr": 5e-4, "warmup_steps": 20, "checkpoint_every_min": 5.0},
        "data": {"real": {"fraction": 0.75}},
        "validation": {"every_steps": 100, "synthetic": {"n_cases": 0}},
    }

    validation: FinetuneValidationSettings = Field(default_factory=FinetuneValidationSettings)


def load_settings(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  base: type[TrainSettings] = TrainSettings) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, checked by ``base`` (``FinetuneSettings`` for fine-tuning).

    Relative paths stay as written (resolved by the caller)."""
    data: dict[str, Any] = dict(base.layered_defaults)
    checked = base.from_data(data, source="defaults")
    if path is not None:
        data = merge_data(data, read_yaml(path) or {})
        checked = base.from_data(data, source=path)  # a problem in the file names the file
    if overrides:
        data = merge_data(data, overrides)
        checked = base.from_data(data, source="command-line options")
    return checked.to_settings()


def model_config_from(settings: Mapping[str, Any]) -> ModelConfig:
    """The ModelConfig of the ``model:`` section (defaults for what it leaves out)."""
    try:
        return ModelConfig.from_dict(dict(settings.get("model") or {}), source="model settings").resolved()
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid model settings: {exc}") from None
