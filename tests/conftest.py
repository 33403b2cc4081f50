"""Shared fixtures: paths to ../shared data, small DICOM studies written with pydicom.

Two session-wide rules:

* every report.json, change.json and review case.json that the code under test writes is
  validated against its JSON schema (``MODICSEG_VALIDATE_OUTPUTS=1``, see
  ``modicseg.report.schema``; inherited by subprocesses and spawned batch workers), so a writer
  that breaks its schema fails the test that made it write;
* tests that need Qt windows (the ``qtbot`` / ``qapp`` / ``make_napari_viewer`` fixtures) are
  skipped, with the reason, where no usable display exists: creating a QApplication without one
  aborts the whole run.  ``make test`` and ``.ci/run`` run the suite under Xvfb when it is installed.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MODICSEG_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "dicom-conformance"
REAL_SPINE = SHARED / "real-spine"

os.environ["MODICSEG_VALIDATE_OUTPUTS"] = "1"

#: Fixtures that create a QApplication (pytest-qt, napari's pytest plugin).
QT_FIXTURES = frozenset({"qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy"})
#: Creates a QApplication and an OpenGL context (napari draws with OpenGL), in a child process:
#: where Qt cannot connect to a display it aborts the process.
_DISPLAY_PROBE = """
from qtpy.QtGui import QOffscreenSurface, QOpenGLContext
from qtpy.QtWidgets import QApplication
app = QApplication([])
surface = QOffscreenSurface()
surface.create()
context = QOpenGLContext()
raise SystemExit(0 if context.create() and context.makeCurrent(surface) else 3)
"""


@functools.lru_cache(maxsize=1)
def display_problem() -> str | None:
    """Why Qt windows cannot be opened here (None when they can)."""
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return None  # the user chose a platform that needs no display
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not display:
        return ("no display (DISPLAY unset): napari/Qt tests need one; run under xvfb-run "
                "(make test does when Xvfb is installed)")
    try:
        probe = subprocess.run([sys.executable, "-c", _DISPLAY_PROBE], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"display {display}: Qt did not start within 120 s"
    if probe.returncode != 0:
        lines = [line for line in (probe.stderr or "").splitlines() if line.strip()]
        why = lines[0] if lines else f"exit status {probe.returncode}"
        return f"display {display} is not usable by Qt with OpenGL ({why})"
    return None


def pytest_collection_modifyitems(config, items):
    qt_items = [item for item in items if QT_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if not qt_items:
        return
    problem = display_problem()
    if problem is None:
        return
    marker = pytest.mark.skip(reason=problem)
    for item in qt_items:
        item.add_marker(marker)


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
