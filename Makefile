# The whole set-up: `make report` runs the main job, `make test` runs the tests.
# torch==2.13.0 is installed first: any other torch spec makes pip fetch a multi-GB CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.circuitwise-installed

.PHONY: venv test test-fast report bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# The layer contract, lint and types first (pyproject configures each), then the tests.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not integration"

report: $(STAMP)
	$(BIN)/circuitwise run opposites --model bundled --split heldout-template --out runs/opposites

# The JSON Schemas of results.json, patching.json, circuit.json (committed; a test checks they are current).
schema: $(STAMP)
	$(BIN)/python scripts/export_schema.py

# make bench ARCH=llama-gqa  (gpt2, pythia, llama-gqa, qwen2, gemma2: bench/_models.py)
ARCH ?= gpt2
PATCHING_ARGS ?= --tl-cells 30 --threads1
CIRCUITS_ARGS ?= --skip-tl-faithfulness --threads1
bench: $(STAMP)
	$(BIN)/python bench/patching.py --arch $(ARCH) $(PATCHING_ARGS)
	$(BIN)/python bench/circuits.py --arch $(ARCH) $(CIRCUITS_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
