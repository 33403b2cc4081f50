"""The reads database (SQLAlchemy Core): SQLite by default, any server URL (PostgreSQL) for multi-site.

Tables: ``schema_version`` (one row), ``readers``, ``reads`` (one per package, case and reader:
status, comment, eligibility, total seconds, latest mask), ``read_lesions`` (the lesion rows of
the latest save) and ``saves`` (every save: revision, time spent, mask file).  Each save is one
transaction; the edited mask is written first as a new file (never overwritten) under the masks
folder and referenced by a path relative to it, so an interrupted save leaves the previous read
intact.  SQLite runs in WAL mode with foreign keys on and synchronous=FULL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modicseg.core.image import LabelImage
from modicseg.io.errors import InputError
from modicseg.review.package import reader_key
from modicseg.review.volumes import read_nifti, write_blinded_nifti

SCHEMA_VERSION = 1
READ_STATUSES = ("in_progress", "done")

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, primary_key=True))

readers = sa.Table(
    "readers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

reads = sa.Table(
    "reads", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("package_id", sa.String(64), nullable=False),
    sa.Column("case_code", sa.String(32), nullable=False),
    sa.Column("reader_id", sa.Integer, sa.ForeignKey("readers.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("eligible", sa.Boolean, nullable=True),
    sa.Column("seconds_spent", sa.Float, nullable=False, default=0.0),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("mask_path", sa.Text, nullable=True),
    sa.Column("mask_sha256", sa.String(64), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("package_id", "case_code", "reader_id", name="uq_read"),
)

read_lesions = sa.Table(
    "read_lesions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("read_id", sa.Integer, sa.ForeignKey("reads.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("level", sa.String(8)),
    sa.Column("vertebra", sa.Integer),
    sa.Column("endplate", sa.String(16)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("type", sa.String(16)),
    sa.Column("primary_type", sa.String(4)),
    sa.Column("secondary_type", sa.String(4)),
    sa.Column("type_fractions", sa.Text),
    sa.Column("model_id", sa.Integer),
    sa.Column("model_type", sa.String(16)),
    sa.Column("volume_mm3", sa.Float),
    sa.Column("fraction_of_vertebral_volume", sa.Float),
    sa.Column("craniocaudal_extent_mm", sa.Float),
    sa.Column("height_fraction", sa.Float),
    sa.Column("extent_grade", sa.String(2)),
    sa.Column("voxels", sa.Integer),
)

saves = sa.Table(
    "saves", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("read_id", sa.Integer, sa.ForeignKey("reads.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("mask_path", sa.Text),
    sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
)

LESION_COLUMNS = [c.name for c in read_lesions.columns if c.name not in ("id", "read_id", "position")]


@dataclass
class ReadRecord:
    """One reader's read of one case (latest save)."""

    id: int
    package_id: str
    case_code: str
    reader: str
    status: str
    comment: str
    eligible: bool | None
    seconds_spent: float
    revision: int
    mask_file: Path | None
    mask_sha256: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    lesions: list[dict[str, Any]] = field(default_factory=list)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    import sqlite3
    import time

    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    # WAL is a property of the file: only the first connection switches it. Switching needs the file to
    # itself, and SQLite answers "database is locked" at once (no busy wait) when readers open it at the
    # same moment, so retry for up to 10 s.
    deadline = time.monotonic() + 10.0
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and WAL mode on every connection."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def reader_folder(name: str) -> str:
    """A file-name-safe folder for a reader's masks (readable part + hash of the identity)."""
    key = reader_key(name)
    slug = re.sub(r"[^a-z0-9]+", "-", key).strip("-")[:32] or "reader"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


class ReadStore:
    """Reads of reading packages: save, fetch, resume."""

    def __init__(self, url: str, masks_dir: str | Path):
        self.url = url
        self.masks_dir = Path(masks_dir)
        self.engine = make_engine(url)
        self._init_schema()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ReadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema -------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        """Create the tables if missing and check the schema version. Readers who open a new
        database at the same moment race to create it: the loser sees "already exists" (or a
        duplicate version row) and simply looks again."""
        for attempt in range(10):
            try:
                with self.engine.begin() as conn:
                    metadata.create_all(conn, checkfirst=True)
                    version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
                    if version is None:
                        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                break
            except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
                racing = isinstance(exc, sa.exc.IntegrityError) or "already exists" in str(exc.orig)
                if not racing or attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if version is not None and version > SCHEMA_VERSION:
            raise InputError(f"reads database {self.url}: schema {version} is newer than this modicseg "
                             f"({SCHEMA_VERSION}); update modicseg")

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one())

    # --- readers ------------------------------------------------------------------------------
    def _reader_id(self, conn: Connection, name: str, create: bool) -> int | None:
        key = reader_key(name)
        found = conn.execute(sa.select(readers.c.id).where(readers.c.key == key)).scalar()
        if found is not None or not create:
            return found
        result = conn.execute(readers.insert().values(key=key, name=" ".join(name.split()), created_at=_now()))
        return _new_id(result)

    # --- saving -------------------------------------------------------------------------------
    def save_read(self, package_id: str, case_code: str, reader: str, *, mask: LabelImage | None,
                  lesions: Iterable[dict[str, Any]], status: str = "in_progress", comment: str = "",
                  eligible: bool | None = None, seconds: float = 0.0) -> ReadRecord:
        """Save one read in one transaction (the mask file is written first, removed on failure)."""
        if status not in READ_STATUSES:
            raise ValueError(f"status must be one of {READ_STATUSES}")
        lesions = list(lesions)
        now = _now()
        mask_file: Path | None = None
        try:
            with self.engine.begin() as conn:
                reader_id = self._reader_id(conn, reader, create=True)
                row = conn.execute(sa.select(reads).where(
                    reads.c.package_id == package_id, reads.c.case_code == case_code,
                    reads.c.reader_id == reader_id)).mappings().first()
                revision = 1 if row is None else int(row["revision"]) + 1
                mask_rel = sha = None
                if mask is not None:
                    mask_rel = (f"{reader_folder(reader)}/{case_code}/"
                                f"r{revision:04d}-{secrets.token_hex(4)}.nii.gz")
                    mask_file = self.masks_dir / mask_rel
                    mask_file.parent.mkdir(parents=True, exist_ok=True)
                    write_blinded_nifti(mask, mask_file)
                    sha = hashlib.sha256(mask_file.read_bytes()).hexdigest()
                values = dict(status=status, comment=comment or "", eligible=eligible, revision=revision,
                              updated_at=now)
                if mask_rel is not None:
                    values.update(mask_path=mask_rel, mask_sha256=sha)
                if row is None:
                    result = conn.execute(reads.insert().values(
                        package_id=package_id, case_code=case_code, reader_id=reader_id, started_at=now,
                        seconds_spent=float(seconds), **values))
                    read_id = _new_id(result)
                else:
                    read_id = int(row["id"])
                    conn.execute(reads.update().where(reads.c.id == read_id).values(
                        seconds_spent=reads.c.seconds_spent + float(seconds), **values))
                conn.execute(read_lesions.delete().where(read_lesions.c.read_id == read_id))
                if lesions:
                    conn.execute(read_lesions.insert(), [
                        {"read_id": read_id, "position": n, **_lesion_values(les)}
                        for n, les in enumerate(lesions, start=1)])
                conn.execute(saves.insert().values(read_id=read_id, revision=revision, status=status,
                                                   seconds=float(seconds), mask_path=mask_rel, saved_at=now))
        except BaseException:
            if mask_file is not None:
                mask_file.unlink(missing_ok=True)
            raise
        record = self.get_read(package_id, case_code, reader)
        assert record is not None
        return record

    # --- reading ------------------------------------------------------------------------------
    def _records(self, conn: Connection, where: list[Any]) -> list[ReadRecord]:
        query = (sa.select(reads, readers.c.name.label("reader_name"))
                 .join(readers, readers.c.id == reads.c.reader_id).where(*where)
                 .order_by(reads.c.case_code, readers.c.key))
        out = []
        for row in conn.execute(query).mappings():
            lesion_rows = conn.execute(sa.select(read_lesions).where(read_lesions.c.read_id == row["id"])
                                       .order_by(read_lesions.c.position)).mappings()
            lesions = []
            for les in lesion_rows:
                item = {c: les[c] for c in LESION_COLUMNS}
                item["type_fractions"] = json.loads(item["type_fractions"] or "{}")
                lesions.append(item)
            out.append(ReadRecord(
                id=row["id"], package_id=row["package_id"], case_code=row["case_code"], reader=row["reader_name"],
                status=row["status"], comment=row["comment"], eligible=row["eligible"],
                seconds_spent=float(row["seconds_spent"]), revision=row["revision"],
                mask_file=None if row["mask_path"] is None else self.masks_dir / row["mask_path"],
                mask_sha256=row["mask_sha256"], started_at=row["started_at"], updated_at=row["updated_at"],
                lesions=lesions))
        return out

    def get_read(self, package_id: str, case_code: str, reader: str) -> ReadRecord | None:
        with self.engine.connect() as conn:
            reader_id = self._reader_id(conn, reader, create=False)
            if reader_id is None:
                return None
            found = self._records(conn, [reads.c.package_id == package_id, reads.c.case_code == case_code,
                                         reads.c.reader_id == reader_id])
        return found[0] if found else None

    def reads(self, package_id: str, status: str | None = None) -> list[ReadRecord]:
        """Every read of a package (optionally only those with ``status``)."""
        where = [reads.c.package_id == package_id]
        if status is not None:
            where.append(reads.c.status == status)
        with self.engine.connect() as conn:
            return self._records(conn, where)

    def saves_of(self, read_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(saves).where(saves.c.read_id == read_id).order_by(saves.c.revision))
            return [dict(r) for r in rows.mappings()]

    def statuses(self, package_id: str, reader: str) -> dict[str, str]:
        """Case code -> read status for one reader."""
        with self.engine.connect() as conn:
            reader_id = self._reader_id(conn, reader, create=False)
            if reader_id is None:
                return {}
            rows = conn.execute(sa.select(reads.c.case_code, reads.c.status).where(
                reads.c.package_id == package_id, reads.c.reader_id == reader_id))
            return {code: status for code, status in rows}

    def progress(self, package_id: str) -> dict[str, dict[str, float]]:
        """Reader name -> {"done": n, "in_progress": n, "done_seconds": total seconds of done reads}."""
        query = (sa.select(readers.c.name, reads.c.status, sa.func.count(), sa.func.sum(reads.c.seconds_spent))
                 .join(readers, readers.c.id == reads.c.reader_id).where(reads.c.package_id == package_id)
                 .group_by(readers.c.name, reads.c.status).order_by(readers.c.name))
        out: dict[str, dict[str, float]] = {}
        with self.engine.connect() as conn:
            for name, status, count, seconds in conn.execute(query):
                entry = out.setdefault(name, {})
                entry[status] = int(count)
                if status == "done":
                    entry["done_seconds"] = float(seconds or 0.0)
        return out

    def resume_index(self, package_id: str, reader: str, worklist: list[str]) -> int:
        """Where a reader goes on: the first case of their worklist not done (the last when all are)."""
        done = {c for c, s in self.statuses(package_id, reader).items() if s == "done"}
        for index, code in enumerate(worklist):
            if code not in done:
                return index
        return max(len(worklist) - 1, 0)

    def load_mask(self, record: ReadRecord) -> np.ndarray | None:
        """The saved lesion mask of a read, checked against its hash."""
        return load_mask(record)


def load_mask(record: ReadRecord) -> np.ndarray | None:
    """The saved lesion mask of a read (lesion codes on the case's grid), checked against its hash;
    None when the read saved none."""
    if record.mask_file is None:
        return None
    try:
        data = record.mask_file.read_bytes()
    except OSError as exc:
        raise InputError(f"{record.mask_file}: cannot read the reader's mask ({exc.strerror or exc})") from None
    if record.mask_sha256 and hashlib.sha256(data).hexdigest() != record.mask_sha256:
        raise InputError(f"{record.mask_file}: mask file does not match the database (changed on disk)")
    return np.asarray(read_nifti(record.mask_file, label=True).array)


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The primary key an INSERT of one row gave it."""
    key = result.inserted_primary_key
    assert key is not None  # an INSERT's result always carries it
    return int(key[0])


def _lesion_values(lesion: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {c: lesion.get(c) for c in LESION_COLUMNS}
    values["type_fractions"] = json.dumps(lesion.get("type_fractions") or {})
    for name in ("volume_mm3", "fraction_of_vertebral_volume", "craniocaudal_extent_mm", "height_fraction"):
        value = None if values[name] is None else float(values[name])
        values[name] = None if value is None or not np.isfinite(value) else value
    for name in ("vertebra", "model_id", "voxels"):
        values[name] = None if values[name] is None else int(values[name])
    return values
