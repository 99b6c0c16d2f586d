"""The README documents every key of the pipeline file, every step and every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ladle.cli import main
from ladle.columns import ColumnSpec
from ladle.config import PipelineSpec, ResourceSpec
from ladle.incremental import IncrementalSpec
from ladle.sources.children import ChildrenOptions, NameLookup
from ladle.sources.documents import DocTypeOptions, DocumentsOptions
from ladle.sources.files import FileOptions
from ladle.sources.http_api import HttpOptions
from ladle.sources.redis_stream import RedisStreamOptions
from ladle.sources.sql import SqlOptions
from ladle.status import FreshnessSpec
from ladle.steps import registry

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


@pytest.mark.parametrize(
    "model",
    [
        PipelineSpec,
        ResourceSpec,
        ColumnSpec,
        IncrementalSpec,
        FreshnessSpec,
        FileOptions,
        ChildrenOptions,
        NameLookup,
        SqlOptions,
        HttpOptions,
        RedisStreamOptions,
        DocumentsOptions,
        DocTypeOptions,
    ],
)
def test_every_key_is_documented(model: type[BaseModel]) -> None:
    """Each key a model accepts appears in the README as `key`."""
    missing = [key for key in _keys(model) if f"`{key}`" not in README]
    assert missing == []


def test_every_step_is_documented() -> None:
    """Each built-in step has a row in the README's step table (user steps that tests
    register are not ladle's to document)."""
    from ladle.plugins import user_steps

    builtin = set(registry()) - set(user_steps())
    missing = [name for name in sorted(builtin) if f"| `{name}` |" not in README]
    assert missing == []


def test_every_command_is_documented() -> None:
    """Each CLI command appears in the README's CLI reference."""
    commands = list(main.commands)
    missing = [name for name in commands if f"`ladle {name}" not in README]
    assert missing == []
