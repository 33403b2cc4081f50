# The README's two commands: `make demo` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is pinned here (a CPU wheel is available locally); the package itself asks for torch>=2.3
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test imports types lint bench clean onnx schemas

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/modicseg demo -o demo-output

# napari tests need a display with OpenGL: run under Xvfb when it is installed (see .ci/run)
XVFB := $(shell command -v xvfb-run >/dev/null 2>&1 && echo "xvfb-run -a -s '-screen 0 1600x1200x24'")

# imports point one way and form no cycle (.importlinter, docs/architecture.md), src/ type-checks
# (mypy, [tool.mypy] in pyproject.toml), then the suite
test: $(STAMP) imports types
	$(XVFB) $(PY) -m pytest -q

imports: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) scripts/import_cycles.py

# mypy on src/modicseg with the settings in pyproject.toml (cached in .mypy_cache: seconds when warm)
types: $(STAMP)
	$(VENV)/bin/mypy

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts

bench: $(STAMP)
	$(PY) scripts/bench_io.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache

# re-make the shipped model's ONNX export after model.pt changed (tests/test_onnx_runtime.py checks it)
onnx: $(STAMP)
	$(PY) scripts/export_onnx.py

# re-generate docs/schemas/*.schema.json from the typed models (tests/test_report_models.py checks them)
schemas: $(STAMP)
	$(PY) scripts/make_schemas.py
