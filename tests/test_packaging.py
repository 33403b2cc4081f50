"""A pip-installed package carries its model, and the demo never reports success without the network.

The wheel is built from a copy of the source tree (so that the build leaves nothing in the
working tree), installed into a folder of its own (``pip install --target``; its dependencies
come from the test's environment), and ``python -m modicseg demo`` runs from another folder,
where neither the source tree nor a ``models/`` folder can be found.  ``.ci/run`` does the same in
a fresh virtual environment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modicseg.cli import main
from modicseg.shipped import MODEL_ENV, MODEL_NAME, PACKAGED_FILES
from tests.conftest import REPO

MODEL_DIR = REPO / "models" / MODEL_NAME


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_copy(target: Path) -> Path:
    """The files a build reads: pyproject.toml, setup.py, MANIFEST.in, README.md, src/, the model."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(REPO / "src", target / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "models"))
    (target / "models" / MODEL_NAME).mkdir(parents=True)
    for name in PACKAGED_FILES:
        if (MODEL_DIR / name).is_file():
            shutil.copy2(MODEL_DIR / name, target / "models" / MODEL_NAME / name)
    return target


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (MODEL_ENV, "PYTHONPATH")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_a_wheel_carries_the_model_and_its_demo_runs_the_network(tmp_path):
    if not (MODEL_DIR / "model.pt").is_file():
        pytest.skip(f"no shipped model in {MODEL_DIR}")
    source = _source_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300,
                           env=_clean_env())
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = wheels.glob("modicseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {Path(n).name: archive.read(n) for n in archive.namelist()
                    if n.startswith(f"modicseg/models/{MODEL_NAME}/")}
    built_from = source / "models" / MODEL_NAME
    assert set(packaged) == {p.name for p in built_from.iterdir()} >= {"model.pt", "config.json"}
    for name, data in packaged.items():
        assert hashlib.sha256(data).hexdigest() == _sha256(built_from / name), name
    assert sum(len(data) for data in packaged.values()) <= 50 * 2**20

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300,
                             env=_clean_env())
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import modicseg; print(modicseg.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    demo = subprocess.run([sys.executable, "-m", "modicseg", "demo", "-o", "d"], cwd=elsewhere,
                          capture_output=True, text=True, env=env, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "FAILED" not in demo.stdout and "done: see d/" in demo.stdout
    report = json.loads((elsewhere / "d" / "analysis" / "report.json").read_text())
    segmentation = report["provenance"]["segmentation"]
    assert segmentation["source"] == "network"
    assert segmentation["checkpoint_sha256"] == _sha256(built_from / "model.pt")
    if importlib.util.find_spec("onnxruntime") and (built_from / "model.onnx").is_file():
        assert segmentation["runtime"] == "onnxruntime"  # the packaged export runs without torch


def test_the_demo_fails_when_the_network_cannot_run(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "no-model"
    empty.mkdir()
    monkeypatch.setenv(MODEL_ENV, str(empty))
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "done:" not in captured.out and "FAILED" in captured.out
    assert "error: the analysis with the network (shipped model) did not run" in captured.err
    assert not (out / "analysis").exists()
    assert (out / "analysis_exact_labels" / "report.json").is_file()  # the rest of the demo still ran
