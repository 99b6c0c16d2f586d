"""The conformance suites, fetched by ``make conformance``; absent, the tests fail and say so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conformance.fetch_suites import ROOT, SUITES, is_ready

MISSING = (
    "the conformance suites are not in tests/.conformance/: run `make conformance` "
    "(it needs Node.js and npm) before these tests"
)


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """tests/.conformance/, holding every pinned suite unpacked and verified."""
    missing = [suite.spec for suite in SUITES if not is_ready(suite)]
    if missing:
        pytest.fail(f"{MISSING} (missing: {', '.join(missing)})", pytrace=False)
    return ROOT


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL destination URL with a schema shared by one module's tests, dropped after."""
    schema = f"ladle_conf_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
