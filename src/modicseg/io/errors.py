"""Errors that reach the user: defined in :mod:`modicseg.core.errors`, re-exported here."""

from __future__ import annotations

from modicseg.core.errors import (
    GeometryError,
    InputError,
    ModicsegError,
    NotAVolumeError,
    OutputError,
    SelectionError,
)

__all__ = ["GeometryError", "InputError", "ModicsegError", "NotAVolumeError", "OutputError", "SelectionError"]
