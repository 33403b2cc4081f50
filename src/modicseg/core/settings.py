"""One configuration mechanism for every stage: pydantic models that refuse unknown keys.

The analysis thresholds (``analysis.config.AnalysisConfig``, ``configs/analysis.yaml``), the model
configuration that travels with a checkpoint (``model.config.ModelConfig``, ``config.json``) and
the training / fine-tuning settings (``model.train_config.TrainSettings``, ``configs/train*.yaml``)
are :class:`Settings` models. A key a model does not know is an error, and so is a value that
does not fit; either raises one :class:`SettingsError` (an ``InputError``: the CLI prints one line
and exits with status 2) naming the file and the dotted key::

    configs/my.yaml: unknown key 'lesions.min_volume' (known: min_volume_mm3, max_distance_mm, ...)
    configs/my.yaml: typing.stir_bands.2.stir: lower bound must be below upper

Layering (defaults, then a file, then command-line overrides) works on the plain data before
validation (:func:`merge_data`), so a file may give any subset of the keys.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from modicseg.core.errors import InputError

S = TypeVar("S", bound="Settings")

#: How many of pydantic's errors a message shows (the rest are counted).
MAX_ERRORS = 3


class SettingsError(InputError, ValueError):
    """A configuration that cannot be used: an unknown key, a value of the wrong kind or out of range.

    Also a ``ValueError``, as the model configuration's errors were before it was a Settings model.
    """


class Settings(BaseModel):
    """A section of settings: unknown keys are refused; build one with ``from_data`` / ``load``."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_data(cls: type[S], data: Mapping[str, Any] | None, source: str | Path = "configuration") -> S:
        """The settings ``data`` gives (None: the defaults); SettingsError naming ``source`` and the key."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SettingsError(f"{source}: a configuration is a mapping of sections")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SettingsError(f"{source}: {describe(exc, cls)}") from None

    @classmethod
    def load(cls: type[S], path: str | Path) -> S:
        """The settings of a YAML (or JSON) file."""
        return cls.from_data(read_yaml(path), source=path)


def one_of(value: Any, choices: Any) -> Any:
    """``value`` when it is one of ``choices``; else ValueError "must be one of a, b, c" (for a field validator,
    which names the key)."""
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(map(str, choices))}")
    return value


def read_yaml(path: str | Path) -> dict[str, Any] | None:
    """A configuration file's mapping (None when it is empty); InputError naming the file otherwise."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read configuration ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({exc})") from None
    if data is not None and not isinstance(data, dict):
        raise SettingsError(f"{path}: a configuration is a mapping of sections")
    return data


def merge_data(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``: mappings merge key by key, any other value is replaced.

    Plain data, before validation: the model that validates the result refuses unknown keys.
    """
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        out[key] = merge_data(old, value) if isinstance(value, Mapping) and isinstance(old, Mapping) else value
    return out


# --- messages ------------------------------------------------------------------------------------

def describe(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Pydantic's errors as one line: ``unknown key 'a.b' (known: ...)`` or ``a.b: problem (got x)``."""
    parts = []
    for error in exc.errors()[:MAX_ERRORS]:
        loc = tuple(str(p) for p in error["loc"])
        kind = error["type"]
        got = error.get("input")
        if kind == "extra_forbidden":
            known = _known_keys(model, loc[:-1])
            parts.append(f"unknown key '{'.'.join(loc)}'" + (f" (known: {', '.join(known)})" if known else ""))
            continue
        if loc and loc[-1] == "[key]" and kind == "literal_error":  # a mapping's key outside its vocabulary
            expected = (error.get("ctx") or {}).get("expected")
            parts.append(f"unknown key '{'.'.join(loc[:-1])}'" + (f" (known: {expected})" if expected else ""))
            continue
        message = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        message = message[:1].lower() + message[1:]
        shown = "" if kind in ("missing", "value_error") or isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"{'.'.join(loc)}: {message}{shown}" if loc else f"{message}{shown}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _known_keys(model: type[BaseModel] | None, loc: tuple[str, ...]) -> list[str]:
    """The keys the settings model at ``loc`` (below ``model``) knows; [] when it cannot be told."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if part in (f.alias, f.validation_alias)), None)
            if field is None:
                return []
            current = next((schema for schema in map(_schema_of, field.metadata) if schema), field.annotation)
        elif typing.get_origin(current) in (dict, list):  # ``part`` is a key or an index: its value's type
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None`` (the model or container of a union)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        schema = next((schema for schema in map(_schema_of, annotation.__metadata__) if schema), None)
        return schema or _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            arg = _unwrap(arg)
            if (isinstance(arg, type) and issubclass(arg, BaseModel)) or typing.get_origin(arg) in (dict, list):
                return arg
    return annotation


def _schema_of(metadata: Any) -> type[BaseModel] | None:
    """The model that checks a mapping kept as given (a validator's ``schema``, see model.config)."""
    schema = getattr(getattr(metadata, "func", None), "schema", None)
    return schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
