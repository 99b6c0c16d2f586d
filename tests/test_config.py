"""Pipeline files: validation before anything runs, with file:line:key errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import structlog.testing

from ladle.config import WriteMode, load
from ladle.errors import ConfigError
from ladle.schema import Kind

VALID = """\
pipeline: shop
destination: ${SHOP_DB:-duckdb:///shop.duckdb}
resources:
  orders:
    source: {type: file, path: data/orders.jsonl}
    primary_key: order_id
    write: merge
    columns:
      order_id: {type: bigint, required: true}
      amount: decimal(12,2)
    steps:
      - rename: {orderId: order_id}
      - dedupe: {keep: last}
"""


def test_valid_file_loads_with_defaults(write_pipeline: Callable[[str], Path]) -> None:
    """A valid file becomes typed models; shorthand and single keys are expanded."""
    config = load(write_pipeline(VALID))
    orders = config.resources["orders"]
    assert config.name == "shop"
    assert config.spec.destination == "duckdb:///shop.duckdb"
    assert orders.spec.primary_key == ["order_id"]
    assert orders.spec.write is WriteMode.MERGE
    assert orders.spec.columns["amount"].type is not None
    assert str(orders.spec.columns["amount"].type) == "decimal(12,2)"
    assert orders.spec.columns["order_id"].type.kind is Kind.BIGINT  # type: ignore[union-attr]
    assert [s.name for s in orders.steps] == ["rename", "dedupe"]
    assert orders.steps[0].where.endswith("pipeline.yaml:12")
    assert orders.table == "orders"


def test_misspelled_key_names_line_and_suggests(write_pipeline: Callable[[str], Path]) -> None:
    """An unknown key names the file, the line, the parent key and the closest known key."""
    path = write_pipeline(VALID.replace("    primary_key: order_id", "    primary_ky: order_id"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:6: resources.orders: unknown key 'primary_ky' (did you mean 'primary_key'?)"
    )


def test_misspelled_column_constraint(write_pipeline: Callable[[str], Path]) -> None:
    """A misspelled constraint inside columns is found with its line."""
    text = VALID.replace("{type: bigint, required: true}", "{type: bigint, requird: true}")
    path = write_pipeline(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:9: resources.orders.columns.order_id: unknown key 'requird' "
        "(did you mean 'required'?)"
    )


def test_unknown_type_is_rejected(write_pipeline: Callable[[str], Path]) -> None:
    """A column type ladle does not know is an error listing the known ones."""
    path = write_pipeline(VALID.replace("decimal(12,2)", "money"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:10: resources.orders.columns.amount.type: ")
    assert "unknown type 'money'; use one of text, int, bigint" in str(info.value)


def test_unknown_step_suggests(write_pipeline: Callable[[str], Path]) -> None:
    """A misspelled step name points at its line and suggests the right one."""
    path = write_pipeline(VALID.replace("- dedupe:", "- dedup:"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(
        f"{path}:13: resources.orders.steps[1]: unknown step 'dedup' (did you mean 'dedupe'?)"
    )


def test_bad_write_mode(write_pipeline: Callable[[str], Path]) -> None:
    """An invalid write mode names its line and the allowed values."""
    path = write_pipeline(VALID.replace("write: merge", "write: upsert"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:7: resources.orders.write: Input should be 'append', 'replace' or 'merge'"
    )


def test_merge_without_primary_key(write_pipeline: Callable[[str], Path]) -> None:
    """Merge needs a key; the error says so at the write line."""
    path = write_pipeline(VALID.replace("    primary_key: order_id\n", ""))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:6: resources.orders.write: write: merge needs a primary_key "
        "(the columns that identify a row)"
    )


def test_missing_variable_lists_where_it_looked(write_pipeline: Callable[[str], Path]) -> None:
    """A ${VAR} with no value and no default names both places it looked."""
    path = write_pipeline(VALID.replace("${SHOP_DB:-duckdb:///shop.duckdb}", "${LADLE_NOPE_DB}"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:2: destination: ${{LADLE_NOPE_DB}} is not set: looked in the environment "
        f"and in {path.parent / '.env'}; set it, or write ${{LADLE_NOPE_DB:-default}}"
    )


def test_variables_from_env_file_and_environment(
    write_pipeline: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """.env next to the file supplies variables; the environment wins over it."""
    path = write_pipeline(VALID.replace("${SHOP_DB:-duckdb:///shop.duckdb}", "${LADLE_T_DB}"))
    (path.parent / ".env").write_text("LADLE_T_DB=duckdb:///from_env_file.duckdb\n")
    assert load(path).spec.destination == "duckdb:///from_env_file.duckdb"
    monkeypatch.setenv("LADLE_T_DB", "duckdb:///from_environment.duckdb")
    assert load(path).spec.destination == "duckdb:///from_environment.duckdb"


@pytest.mark.parametrize(
    "destination",
    [
        "postgresql://app:hunter2@db/shop",
        "postgresql://:hunter2@db/shop",
        "postgresql://app@db/shop?password=hunter2",
        "${LADLE_T_UNSET:-postgresql://app:hunter2@db/shop}",
    ],
)
def test_literal_password_warns(write_pipeline: Callable[[str], Path], destination: str) -> None:
    """A password written in the file (also as a ${VAR:-default}) is logged as a warning."""
    path = write_pipeline(VALID.replace("${SHOP_DB:-duckdb:///shop.duckdb}", destination))
    with structlog.testing.capture_logs() as logs:
        load(path)
    note = (
        f"{path}:2: destination: a password is written in the file; "
        "take it from the environment instead, e.g. `${DATABASE_URL}`"
    )
    assert logs == [
        {"event": note, "file": str(path), "line": 2, "key": "destination", "log_level": "warning"}
    ]


def test_password_from_environment_does_not_warn(
    write_pipeline: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DSN whose password comes from ${VAR} is fine."""
    monkeypatch.setenv("LADLE_T_PW", "s3cret")
    text = VALID.replace(
        "${SHOP_DB:-duckdb:///shop.duckdb}", "postgresql://app:${LADLE_T_PW}@db/shop"
    )
    config = load(write_pipeline(text))
    assert config.warnings == []
    assert config.spec.destination == "postgresql://app:s3cret@db/shop"


def test_invalid_yaml_names_line(write_pipeline: Callable[[str], Path]) -> None:
    """A YAML syntax error names the line where the parser stopped."""
    path = write_pipeline("pipeline: x\nresources:\n  a: {source: [\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: invalid YAML: "):
        load(path)


def test_missing_file() -> None:
    """A pipeline file that does not exist is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match=r"^nope.yaml: cannot read the pipeline file: "):
        load("nope.yaml")


def test_step_options_are_validated(write_pipeline: Callable[[str], Path]) -> None:
    """A step's options are checked by the step's own model, with the step's line."""
    path = write_pipeline(VALID.replace("- dedupe: {keep: last}", "- dedupe: {keep: newest}"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:13: resources.orders.steps[1].dedupe.keep: ")


def test_destination_override_skips_unset_variable(write_pipeline: Callable[[str], Path]) -> None:
    """--destination replaces the file's destination, so its unset ${VAR} is not an error."""
    path = write_pipeline(VALID.replace("${SHOP_DB:-duckdb:///shop.duckdb}", "${LADLE_NOPE_DB}"))
    config = load(path, destination="duckdb:///override.duckdb")
    assert config.spec.destination == "duckdb:///override.duckdb"
