"""Errors that reach the user: each names the file or series and what is wrong.

Defined in ``core`` so that every stage (``core`` itself included) can raise them;
``modicseg.io.errors`` re-exports them under their historical import path.
"""

from __future__ import annotations


class ModicsegError(Exception):
    """An error caused by the input, reported to the user without a traceback."""


class InputError(ModicsegError):
    """The input cannot be read (missing, empty, corrupt, unsupported)."""


class NotAVolumeError(InputError):
    """A series that is not one 3-D anatomical stack (4-D, mosaic, several volumes, ...)."""


class GeometryError(InputError):
    """Slice geometry that cannot be turned into a regular grid without a decision."""


class OutputError(ModicsegError):
    """The output location cannot be created or written (checked before any work)."""


class SelectionError(ModicsegError):
    """The requested T1/T2 series cannot be found or chosen."""
