"""Shared fixtures: paths to ../shared data, small DICOM studies written with pydicom."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "dicom-conformance"
REAL_SPINE = SHARED / "real-spine"


def conformance_cases() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p for p in CONFORMANCE.iterdir() if (p / "case.json").is_file())


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one torch thread, and do not suffer when other processes load
    the CPU (model test modules use it for every test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def postgres_server():
    """URL template of a throwaway PostgreSQL server (skipped without the server binaries or psycopg)."""
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) not installed")
    from tests.postgres_server import running_server, server_binaries

    bindir = server_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    with running_server(bindir) as template:
        yield template


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the throwaway server."""
    from tests.postgres_server import create_database

    url, _ = create_database(postgres_server)
    return url
