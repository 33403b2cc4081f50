"""The key of a reading package: case code -> subject, time point, arm, source folder.

The key is the only link between a case code and a person.  It is written outside the package
(``review pack`` refuses a key path inside it) and is needed only by ``review export``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from modicseg.io.errors import InputError

KEY_FORMAT = "modicseg-review-key"
KEY_SCHEMA_VERSION = 1


@dataclass
class KeyEntry:
    """Who and when one case is."""

    code: str
    subject: str
    timepoint: str = ""
    arm: str = ""
    source: str = ""


def default_key_path(package: Path) -> Path:
    """``PACKAGE-key.json`` next to the package folder."""
    package = Path(package).resolve()
    return package.with_name(f"{package.name}-key.json")


def check_outside(key_path: Path, package: Path) -> None:
    """InputError when the key would be inside (or be) the package folder."""
    key = Path(key_path).resolve()
    pkg = Path(package).resolve()
    if key == pkg or key.is_relative_to(pkg):
        raise InputError(f"{key_path}: the key must be stored outside the reading package ({package})")


def write_key(path: Path, package_id: str, entries: list[KeyEntry]) -> Path:
    """Write the key atomically; refuses to overwrite an existing key."""
    path = Path(path)
    if path.exists():
        raise InputError(f"{path}: a key file already exists there (a key is never overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": KEY_FORMAT, "schema_version": KEY_SCHEMA_VERSION, "package_id": package_id,
            "cases": [asdict(e) for e in sorted(entries, key=lambda e: e.code)]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_key(path: Path, package_id: str | None = None) -> dict[str, KeyEntry]:
    """Code -> entry; InputError when the file is not a key or belongs to another package."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read key ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a key file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise InputError(f"{path}: not a modicseg review key")
    if data.get("schema_version", 0) > KEY_SCHEMA_VERSION:
        raise InputError(f"{path}: key schema {data['schema_version']} is newer than this modicseg understands")
    if package_id is not None and data.get("package_id") != package_id:
        raise InputError(f"{path}: this key belongs to another reading package")
    return {c["code"]: KeyEntry(**c) for c in data.get("cases", [])}
