# Two commands: `make demo` and `make test`. Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# MLflow phones home unless told not to; no model hub is reachable here.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
# MLflow prices a span that has a model name and token usage from a catalog it downloads from github.com
# (in the export thread): empty keeps it to the catalog bundled with MLflow.
export MLFLOW_MODEL_CATALOG_URI :=
# mkdocs-material 9.8 prints an end-of-life banner on every build otherwise.
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test lint typecheck docs unit integration bench mutation clean

$(BIN)/.installed: pyproject.toml integrations/langchain/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	# The distributions were renamed (issue 17): drop an old install of the previous names first.
	$(BIN)/pip uninstall --quiet --yes promptops promptops-langchain 2>/dev/null || true
	$(BIN)/pip install --quiet -e ".[dev,semantic,ray]"
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
	$(BIN)/mkdocs build --strict  # not --quiet: it hides the warnings --strict should fail on (a broken anchor passed)

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

# Mutation testing (issue 16) of the statistics and redaction modules against the tests that exercise them
# ([tool.mutmut] in pyproject.toml). Slow: not part of `make test`. MUTATION_TIMEOUT bounds the run (seconds);
# mutmut keeps its results in mutants/, so a second run resumes where the first stopped.
MUTATION_TIMEOUT ?= 3600
mutation: install
	$(BIN)/pip install --quiet -e ".[dev,semantic,mutation]"
	timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run --max-children 2 || test $$? -eq 124
	$(BIN)/mutmut results --all true > mutants/results.txt || true
	$(BIN)/python -c "import collections; c = collections.Counter(line.rpartition(': ')[2].strip() for line in open('mutants/results.txt') if ': ' in line); ran = c['killed'] + c['timeout'] + c['survived'] + c['suspicious']; print(dict(c)); print('mutation score: %d of %d mutants run were killed (%.0f%%)' % (c['killed'] + c['timeout'], ran, 100 * (c['killed'] + c['timeout']) / max(ran, 1)))"

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .promptops mutants
