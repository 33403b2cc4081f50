"""Write a set of output files all-or-nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output_dir(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``final_dir``; on success its files move into ``final_dir``.

    On any exception the temporary folder is removed and ``final_dir`` is left as it was, so a
    failed run writes no partial output.  Each file is moved with an atomic rename.
    """
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        final.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.rglob("*")):
            target = final / path.relative_to(tmp)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
