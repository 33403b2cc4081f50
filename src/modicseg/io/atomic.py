"""Write a set of output files all-or-nothing, into an output folder checked before any work."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modicseg.io.errors import OutputError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder a new output folder is made in)."""
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output_dir(final_dir: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that cannot be created or written, before any work is done.

    The folder may exist (its files are then replaced one by one) or not (it is created with its
    parents on success).  Refused: a path that is a file (or a special file), a path under a file,
    and a location where nothing can be written (read-only file system, no permission).  The check
    creates and removes one empty temporary folder, so that it tests what the writer will do.
    """
    final = Path(final_dir)
    if os.path.lexists(final) and not final.is_dir():
        raise OutputError(f"{final}: exists and is not a folder (give a new or existing folder for the output)")
    base = _nearest_existing(final)
    if not base.is_dir():
        raise OutputError(f"{final}: cannot create the output folder: {base} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=f".{final.name or 'output'}.check-", dir=base)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write the output folder: no folder can be created in {base} "
                          f"({exc.strerror or exc})") from None
    return final


@contextlib.contextmanager
def atomic_output_dir(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder; on success its files move into ``final_dir``.

    On any exception the temporary folder is removed and ``final_dir`` is left as it was: a failed
    run writes no partial output and creates no folder (the temporary folder lies in the nearest
    folder that already exists).  Each file is moved with an atomic rename.  A location that
    cannot be written is an :class:`OutputError` naming it.
    """
    final = check_output_dir(final_dir)
    base = _nearest_existing(final.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=base))
    except OSError as exc:
        raise OutputError(f"{final}: cannot write the output folder ({exc.strerror or exc})") from None
    try:
        yield tmp
        try:
            final.mkdir(parents=True, exist_ok=True)
            for path in sorted(tmp.rglob("*")):
                target = final / path.relative_to(tmp)
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
        except OSError as exc:
            raise OutputError(f"{final}: cannot write the output folder ({exc.strerror or exc})") from None
    except OSError as exc:
        # writing into the temporary folder failed (disk full, file system turned read-only, ...)
        raise OutputError(f"{final}: cannot write the output ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
