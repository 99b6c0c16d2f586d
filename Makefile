# The README's two commands: `make demo` and `make test`. Each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-faults test-soak lint install clean bench bench-stream chromium conformance

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
	$(BIN)/ruff check ladle tests examples bench docs
	$(BIN)/ruff format --check ladle tests examples bench docs
	$(BIN)/mypy ladle tests docs/gen_reference.py

test: lint chromium conformance
	$(BIN)/pytest

# Long fault-injection runs, left out of `make test` (pytest marker `faults`): a PostgreSQL
# outage of many retry cycles, through a TCP proxy the test stops and restarts (about a minute);
# PostgreSQL's disk filling up under a run and under a worker (a tablespace on a tmpfs: run as
# root, against a server on this machine).
test-faults: $(STAMP)
	$(BIN)/pytest -m faults -v

# Loads of millions of records, left out of `make test` (pytest marker `soak`): 3,000,000
# records from JSON Lines and CSV into DuckDB and PostgreSQL at two memory_limit_mb values,
# peak RSS within 10 % of each (tests/integration/test_memory_peaks.py; about five minutes).
test-soak: $(STAMP)
	$(BIN)/pytest -m soak -v

# The browser test (tests/integration/test_ui_browser.py) drives Debian's Chromium, headless,
# through Playwright's Python package (no browser download). Installed here when missing: with
# apt as root; otherwise it stops and says what to install. LADLE_TEST_CHROMIUM names another.
CHROMIUM_HINT := the browser test needs Chromium: sudo apt-get install chromium (Debian/Ubuntu), \
	brew install --cask chromium (macOS), or set LADLE_TEST_CHROMIUM to a Chromium or Chrome binary

chromium:
	@if [ -n "$$LADLE_TEST_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
		command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		{ apt-get update -q >/dev/null && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	else echo "$(CHROMIUM_HINT)" >&2; exit 1; fi

# The public conformance suites (tests/conformance/README.md): JSONTestSuite and csv-spectrum,
# packed by npm at pinned versions, checked against pinned SHA-512s, unpacked into
# tests/.conformance/ (gitignored) when missing. Without npm it stops and says what to install.
conformance: $(STAMP)
	$(BIN)/python tests/conformance/fetch_suites.py

# The benchmark (bench/run.py; BENCHMARKS.md): PostgreSQL and DuckDB loads, then the streaming
# one. `make bench` installs what it needs: the `bench` extra (pgpq, ADBC) into .venv; dlt in its
# own venv so its pins never touch ladle's; and DuckDB with its postgres extension in another,
# because the extension's PyPI package is built for one DuckDB release (pinned here), not the one
# ladle uses. Options: make bench BENCH_ARGS='--quick' (a smoke run), or --rows N, --repeat K,
# --skip-dlt, --skip-large, --skip-stream, --report PATH (default: BENCHMARKS.md).
DLT_VENV := bench/.venv-dlt
DLT_STAMP := $(DLT_VENV)/.installed
DUCKDB_PG_VENV := bench/.venv-duckdb-pg
DUCKDB_PG_STAMP := $(DUCKDB_PG_VENV)/.installed
DUCKDB_PG_VERSION := 1.5.5
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(DLT_STAMP):
	test -d $(DLT_VENV) || $(PYTHON) -m venv $(DLT_VENV)
	$(DLT_VENV)/bin/pip install --quiet --upgrade pip
	$(DLT_VENV)/bin/pip install --quiet 'dlt[postgres,parquet]' adbc-driver-postgresql
	touch $(DLT_STAMP)

$(DUCKDB_PG_STAMP):
	test -d $(DUCKDB_PG_VENV) || $(PYTHON) -m venv $(DUCKDB_PG_VENV)
	$(DUCKDB_PG_VENV)/bin/pip install --quiet --upgrade pip
	$(DUCKDB_PG_VENV)/bin/pip install --quiet 'duckdb==$(DUCKDB_PG_VERSION)' \
		'duckdb-extension-postgres-scanner==$(DUCKDB_PG_VERSION)'
	touch $(DUCKDB_PG_STAMP)

bench: $(BENCH_STAMP) $(DLT_STAMP) $(DUCKDB_PG_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Only the streaming benchmark (bench/stream.py: ladle worker, Redis stream -> PostgreSQL); it
# rewrites only its own section of BENCHMARKS.md. Redis and PostgreSQL from
# LADLE_BENCH_REDIS_URL and LADLE_BENCH_POSTGRES_URL (default: this machine's).
# Options: make bench-stream STREAM_ARGS='--quick' (or --messages N, --batch-sizes 1000,10000).
STREAM_ARGS ?=

bench-stream: $(STAMP)
	$(BIN)/python bench/stream.py $(STREAM_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
