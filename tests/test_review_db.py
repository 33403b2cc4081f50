"""The reads database: SQLite WAL, schema version, one transaction per save, resume, time per case.
Every behaviour runs on SQLite and on a real PostgreSQL server (throwaway, see conftest)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import sqlalchemy as sa

from modicseg.core.image import LabelImage
from modicseg.io.errors import InputError
from modicseg.review.db import SCHEMA_VERSION, ReadStore, reader_folder

PKG = "p" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reads' / 'reads.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url, tmp_path):
    with ReadStore(database_url, tmp_path / "masks") as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path):
    with ReadStore(f"sqlite:///{tmp_path / 'reads' / 'reads.sqlite'}", tmp_path / "masks") as s:
        yield s


def _mask(value: int = 1) -> LabelImage:
    array = np.zeros((4, 5, 6), np.uint8)
    array[1:3, 2:4, 3] = value
    return LabelImage(array, np.diag([0.8, 0.8, 4.0, 1.0]))


LESION = {"level": "L4", "endplate": "inferior", "status": "edited", "type": "1", "primary_type": "1",
          "volume_mm3": 120.5, "height_fraction": 0.3, "type_fractions": {"1": 1.0}, "model_id": 1}


def test_sqlite_wal_schema_version_and_tables(sqlite_store, tmp_path):
    store = sqlite_store
    assert store.schema_version == SCHEMA_VERSION
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"schema_version", "readers", "reads", "read_lesions", "saves"} <= tables


def test_save_read_and_fetch(store):
    record = store.save_read(PKG, "AAAAAA", "Dr Alice", mask=_mask(), lesions=[LESION], comment="ok",
                             eligible=True, seconds=12.5)
    assert record.revision == 1 and record.status == "in_progress" and record.eligible is True
    assert record.mask_file.is_file() and record.mask_file.is_relative_to(store.masks_dir)
    assert reader_folder("Dr Alice") in record.mask_file.as_posix()
    assert np.array_equal(store.load_mask(record), _mask().array)
    assert record.lesions[0]["type_fractions"] == {"1": 1.0} and record.lesions[0]["level"] == "L4"
    again = store.save_read(PKG, "AAAAAA", "dr alice", mask=_mask(3), lesions=[], status="done", seconds=7.5)
    assert again.revision == 2 and again.status == "done" and again.lesions == []
    assert again.seconds_spent == pytest.approx(20.0)
    assert again.mask_file != record.mask_file and record.mask_file.is_file()  # old revisions kept
    saves = store.saves_of(again.id)
    assert [s["revision"] for s in saves] == [1, 2] and [s["seconds"] for s in saves] == [12.5, 7.5]


def test_failed_save_changes_nothing(store):
    first = store.save_read(PKG, "BBBBBB", "Bob", mask=_mask(), lesions=[LESION], seconds=1.0)
    files_before = set(store.masks_dir.rglob("*.nii.gz"))
    broken = {**LESION, "volume_mm3": "not a number"}
    with pytest.raises(ValueError):
        store.save_read(PKG, "BBBBBB", "Bob", mask=_mask(2), lesions=[LESION, broken], seconds=5.0)
    after = store.get_read(PKG, "BBBBBB", "Bob")
    assert after.revision == first.revision and after.seconds_spent == 1.0 and len(after.lesions) == 1
    assert set(store.masks_dir.rglob("*.nii.gz")) == files_before  # the new mask file was removed
    assert len(store.saves_of(after.id)) == 1


def test_resume_index_and_progress(store):
    worklist = ["C1", "C2", "C3"]
    assert store.resume_index(PKG, "Carol", worklist) == 0
    store.save_read(PKG, "C1", "Carol", mask=None, lesions=[], status="done", seconds=30)
    store.save_read(PKG, "C2", "Carol", mask=None, lesions=[], status="in_progress", seconds=10)
    assert store.resume_index(PKG, "Carol", worklist) == 1
    store.save_read(PKG, "C2", "Carol", mask=None, lesions=[], status="done", seconds=10)
    store.save_read(PKG, "C3", "Carol", mask=None, lesions=[], status="done", seconds=20)
    assert store.resume_index(PKG, "Carol", worklist) == 2  # all done: the last case
    assert store.resume_index(PKG, "Dave", worklist) == 0
    assert store.progress(PKG) == {"Carol": {"done": 3, "done_seconds": 70.0}}


def test_mask_changed_on_disk_is_detected(store):
    record = store.save_read(PKG, "DDDDDD", "Eve", mask=_mask(), lesions=[])
    record.mask_file.write_bytes(record.mask_file.read_bytes()[:-4] + b"oops")
    with pytest.raises(InputError, match="does not match"):
        store.load_mask(record)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "reads.sqlite"
    ReadStore(f"sqlite:///{path}", tmp_path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(InputError, match="newer"):
        ReadStore(f"sqlite:///{path}", tmp_path)


def test_readers_opening_and_saving_at_the_same_time(database_url, tmp_path):
    """Four readers start at once on an empty database (each creates the schema if missing), then
    save ten cases each at the same time: every store opens, every save lands once."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    start = Barrier(4)

    def read(reader: str) -> list[int]:
        start.wait()
        with ReadStore(database_url, tmp_path / "masks") as own:
            return [own.save_read(PKG, f"C{n:02d}", reader, mask=_mask(), lesions=[LESION], status="done",
                                  seconds=5.0).revision for n in range(10)]

    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(read, ["Ann", "Ben", "Cat", "Dan"]))
    assert revisions == [[1] * 10] * 4
    with ReadStore(database_url, tmp_path / "masks") as check:
        assert check.schema_version == SCHEMA_VERSION
        progress = check.progress(PKG)
        assert {name: counts["done"] for name, counts in progress.items()} == {"Ann": 10, "Ben": 10, "Cat": 10,
                                                                              "Dan": 10}
        assert all(len(r.lesions) == 1 and check.load_mask(r) is not None for r in check.reads(PKG))
        with check.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM schema_version")).scalar() == 1
