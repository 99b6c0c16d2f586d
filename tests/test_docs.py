"""The README documents every key of the pipeline file, every step and every command."""

from __future__ import annotations

import re
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

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


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


def test_reference_is_current() -> None:
    """docs/reference.md is what the models generate, and every key it lists has a docstring."""
    from ladle.docs_reference import COMMAND, render, undocumented

    assert undocumented() == [], f"give each of these a docstring, then run `{COMMAND}`"
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert render() == committed, f"docs/reference.md is out of date: run `{COMMAND}`"


def _anchors(page: Path) -> set[str]:
    """Anchors a page offers on GitHub and in MkDocs alike: explicit ids, and headings whose
    slug both compute the same way."""
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        plain = heading.replace("`", "").strip().lower()
        github = re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")
        mkdocs = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", plain).strip())
        if github == mkdocs:
            found.add(github)
    return found


def test_docs_links_resolve() -> None:
    """Every relative link in docs/ names a file that exists, and an anchor its page has."""
    docs = ROOT / "docs"
    broken = []
    for page in sorted(docs.rglob("*.md")):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and docs in linked.parents and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such anchor)")
    assert broken == []
