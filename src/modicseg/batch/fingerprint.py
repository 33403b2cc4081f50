"""Fingerprints that decide whether a finished result is still valid.

A study's fingerprint covers its input files (relative name, size and modification time, or their
content with ``content=True``), the model checkpoint (content hash), the analysis configuration
and the tool version.  A comparison's fingerprint covers both studies' fingerprints and its own
options.  Any change gives a new fingerprint and the job runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any

from modicseg.core.version import __version__

CHUNK = 1 << 20


def digest(data: Any) -> str:
    """sha256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Content hash of a file (cached per path, size and mtime)."""
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def _regular(path: Path) -> bool:
    """A regular file (links followed): FIFOs, sockets, devices and dangling links are never opened
    (opening a named pipe blocks forever) and do not count."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _walk(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path] if _regular(path) else []
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
        files.extend(f for f in (Path(dirpath) / name for name in sorted(filenames)) if _regular(f))
    return files


def inputs_fingerprint(paths: list[Path], content: bool = False) -> dict[str, Any]:
    """{"files": n, "bytes": total, "sha256": ...} over every file under ``paths``."""
    records = []
    total = 0
    for index, root in enumerate(paths):
        if not root.exists():
            records.append([index, str(root), "missing"])
            continue
        for f in _walk(root):
            st = f.stat()
            total += st.st_size
            rel = f.name if root.is_file() else str(f.relative_to(root))
            records.append([index, rel, st.st_size, file_sha256(f) if content else st.st_mtime_ns])
    return {"files": len(records), "bytes": total, "sha256": digest(records)}


def checkpoint_fingerprint(checkpoint: str | Path | None) -> str | None:
    """Content hash of a model checkpoint file or folder; None when no checkpoint is named."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if not path.exists():
        return f"missing:{path}"
    return digest([[str(f.relative_to(path)) if path.is_dir() else f.name, file_sha256(f)] for f in _walk(path)])


def study_fingerprint(inputs: dict[str, Any], model: str | None, config: dict[str, Any] | None,
                      extra: dict[str, Any] | None = None) -> str:
    """The fingerprint of one study's analysis."""
    return digest({"kind": "study", "inputs": inputs["sha256"], "model": model, "config": config,
                   "version": __version__, "extra": extra or {}})


def compare_fingerprint(baseline: str, followup: str, options: dict[str, Any] | None = None) -> str:
    """The fingerprint of one comparison."""
    return digest({"kind": "compare", "baseline": baseline, "followup": followup, "options": options or {},
                   "version": __version__})
