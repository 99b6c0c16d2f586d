# The README's two commands: `make demo` and `make test`. Each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	cd examples/facilities && ../../$(BIN)/python generate.py --out data && \
		../../$(BIN)/ladle run pipeline.yaml && ../../$(BIN)/ladle runs pipeline.yaml --last 3

lint: $(STAMP)
	$(BIN)/ruff check ladle tests examples
	$(BIN)/ruff format --check ladle tests examples
	$(BIN)/mypy ladle tests

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
