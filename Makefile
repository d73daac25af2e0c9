# Two commands: `make demo` and `make test`. Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# MLflow phones home unless told not to; no model hub is reachable here.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
# mkdocs-material 9.8 prints an end-of-life banner on every build otherwise.
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test lint typecheck docs unit integration bench clean

$(BIN)/.installed: pyproject.toml integrations/langchain/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	# The distributions were renamed (issue 17): drop an old install of the previous names first.
	$(BIN)/pip uninstall --quiet --yes promptops promptops-langchain 2>/dev/null || true
	$(BIN)/pip install --quiet -e ".[dev,semantic]"
	$(BIN)/pip install --quiet -e integrations/langchain
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/pyright

docs: install
	$(BIN)/mkdocs build --strict --quiet

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

test: lint typecheck docs
	$(BIN)/pytest

bench: install
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_values.py
	$(BIN)/python benchmarks/bench_tracing.py
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_semantic.py
	$(BIN)/python benchmarks/bench_replay.py
	$(BIN)/python benchmarks/bench_verdict.py
	$(BIN)/python benchmarks/bench_langchain.py

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .promptops
