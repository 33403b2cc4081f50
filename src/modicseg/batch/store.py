"""The batch output folder: where each job's result lives, its state record, atomic commits.

Layout::

    OUTDIR/studies/SUBJECT/TIMEPOINT/     analysis of one study (+ job.json)
    OUTDIR/compare/SUBJECT/BL_to_FU/      comparison of two time points (+ job.json)
    OUTDIR/state/JOBKEY.json              {"status": "done"|"failed", "fingerprint", ...}
    OUTDIR/cohort/                        cohort tables and figures
    OUTDIR/summary.json, summary.md

A job writes into a hidden temporary folder next to its final folder, puts ``job.json`` (with the
fingerprint) in it last, and renames the folder into place in one ``rename``; only then is the
"done" state record written (itself written to a temporary file and renamed).  A killed run
therefore leaves either a complete result or a temporary folder, which the next run deletes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modicseg.io.errors import ModicsegError

JOB_FILE = "job.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


class BatchLockedError(ModicsegError):
    """Another batch is writing into the same output folder."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, fsync, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``; an older ``final`` is swapped out via a trash name."""
    if final.exists():
        trash = final.parent / f"{TRASH_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ResultStore:
    """Paths and atomic operations of one batch output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()  # workers may run elsewhere (other cwd, other host)

    # --- paths ---------------------------------------------------------------------------
    def study_dir(self, subject: str, timepoint: str) -> Path:
        return self.root / "studies" / subject / timepoint

    def compare_dir(self, subject: str, baseline: str, followup: str) -> Path:
        return self.root / "compare" / subject / f"{baseline}_to_{followup}"

    @property
    def cohort_dir(self) -> Path:
        return self.root / "cohort"

    def state_path(self, job_id: str) -> Path:
        return self.root / "state" / (job_id.replace("/", "__") + ".json")

    # --- state -----------------------------------------------------------------------------
    def state(self, job_id: str) -> dict[str, Any] | None:
        return read_json(self.state_path(job_id))

    def done_job_ids(self) -> set[str]:
        """Ids of the jobs whose state record says done (records being written are skipped)."""
        folder = self.root / "state"
        records = (read_json(path) for path in folder.glob("[!.]*.json")) if folder.is_dir() else ()
        return {r["job_id"] for r in records if r is not None and r.get("status") == "done"}

    def write_state(self, job_id: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.state_path(job_id), {"job_id": job_id, "time": time.time(), **record})

    def is_done(self, job_id: str, fingerprint: str, output: Path) -> bool:
        """A finished result with this fingerprint exists (state record and folder agree)."""
        result = read_json(output / JOB_FILE)
        if result is None or result.get("fingerprint") != fingerprint:
            return False
        state = self.state(job_id)
        if state is None or state.get("status") != "done" or state.get("fingerprint") != fingerprint:
            # renamed into place but killed before the state record: the folder is complete
            self.write_state(job_id, {"status": "done", "fingerprint": fingerprint, "output": self.rel(output),
                                      "recovered": True})
        return True

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    # --- atomic results ----------------------------------------------------------------------
    def new_tmp(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))

    def commit(self, tmp: Path, final: Path, job: dict[str, Any]) -> bool:
        """Write job.json into ``tmp`` and rename it to ``final``; False when an equal result won."""
        write_json_atomic(tmp / JOB_FILE, job)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
            existing = read_json(final / JOB_FILE)
            if existing is not None and existing.get("fingerprint") == job.get("fingerprint"):
                shutil.rmtree(tmp, ignore_errors=True)  # another worker finished the same job
                return False
            replace_folder(tmp, final)
        _fsync_dir(final.parent)
        return True

    def cleanup(self) -> int:
        """Delete temporary and trash folders/files left by killed runs; returns how many."""
        removed = 0
        for top in ("studies", "compare", "state", "cohort", ""):
            base = self.root / top if top else self.root
            if not base.is_dir():
                continue
            depth = {"studies": 3, "compare": 3}.get(top, 1)
            for path in _entries(base, depth):
                if path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            path.unlink()
                    removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the output folder (released by the OS if the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / ".batch.lock", "w")  # noqa: SIM115
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BatchLockedError(f"{self.root}: another batch is running on this folder") from None
            yield
        finally:
            fh.close()


def _entries(base: Path, depth: int) -> Iterator[Path]:
    """Entries of ``base`` down to ``depth`` levels (not following temporary folders)."""
    try:
        children = list(base.iterdir())
    except OSError:
        return
    for child in children:
        yield child
        if depth > 1 and child.is_dir() and not child.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            yield from _entries(child, depth - 1)
