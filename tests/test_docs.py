"""docs/reference.md documents every key, step and command with its meaning; the docs' links
resolve; the README stays a front door."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from ladle.cli import main
from ladle.columns import ColumnSpec
from ladle.config import PipelineSpec, ResourceSpec
from ladle.incremental import IncrementalSpec
from ladle.kinds import STEPS
from ladle.sources.children import ChildrenOptions, NameLookup
from ladle.sources.documents import DocTypeOptions, DocumentsOptions
from ladle.sources.files import FileOptions
from ladle.sources.http_api import HttpOptions
from ladle.sources.redis_stream import RedisStreamOptions
from ladle.sources.sql import SqlOptions
from ladle.status import FreshnessSpec

ROOT = Path(__file__).parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    """The reference's text under each heading (heading text without its #s), up to the next
    heading of any level."""
    parts = re.split(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


SECTIONS = _sections(REFERENCE)


def _meaning(section: str, key: str) -> str | None:
    """The last cell of the table row for `key` in a section, or None when there is none."""
    for line in SECTIONS.get(section, "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].split(" ")[0] == f"`{key}`":
            return cells[-1] if cells[0] == f"`{key}`" else cells[1]
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


@pytest.mark.parametrize(
    ("model", "section"),
    [
        (PipelineSpec, "Top level"),
        (ResourceSpec, "`resources.<resource>`"),
        (ColumnSpec, "`resources.<resource>.columns.<column>`"),
        (IncrementalSpec, "`resources.<resource>.incremental`"),
        (FreshnessSpec, "`freshness`"),
        (FileOptions, "`type: file`"),
        (ChildrenOptions, "`type: children`"),
        (NameLookup, "`source.names[]`"),
        (SqlOptions, "`type: sql`"),
        (HttpOptions, "`type: http`"),
        (RedisStreamOptions, "`type: redis_stream`"),
        (DocumentsOptions, "`type: documents`"),
        (DocTypeOptions, "`source.doc_types.<doc_type>`"),
    ],
)
def test_every_key_has_its_row_and_description_in_the_reference(
    model: type[BaseModel], section: str
) -> None:
    """Each key a model accepts has a row in its section of docs/reference.md whose meaning
    is a sentence, not just its name somewhere on the page."""
    assert section in SECTIONS, f"docs/reference.md has no section {section!r}"
    keys = _keys(model)
    if section.startswith("`type: "):  # a source's `type` is its section's heading
        keys.remove("type")
    meanings = {key: _meaning(section, key) for key in keys}
    missing = [key for key, meaning in meanings.items() if meaning is None]
    bare = [key for key, meaning in meanings.items() if meaning and len(meaning.split()) < 3]
    assert (missing, bare) == ([], [])


def test_every_step_has_a_description_in_the_reference() -> None:
    """Each built-in step has its own heading in the reference with a sentence under it (user
    steps that tests register are not ladle's to document)."""
    builtin = STEPS.builtin_names()
    prose = {
        name: re.sub(r"<a id=[^>]+></a>", "", SECTIONS.get(f"`{name}`", "")).strip()
        for name in builtin
    }
    missing = sorted(name for name, text in prose.items() if len(text.split()) < 3)
    assert missing == []


def _commands(group: click.Group, prefix: str = "ladle") -> Iterator[tuple[str, click.Command]]:
    if prefix == "ladle":
        yield prefix, group  # the group's own options (-q, --log-format) apply to every command
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def test_every_command_and_option_is_in_the_reference() -> None:
    """Each command has a heading with its description, and each of its options a row with
    its meaning."""
    problems = []
    for name, command in _commands(main):
        text = SECTIONS.get(f"`{name}`")
        if text is None:
            problems.append(name)
            continue
        for param in command.params:
            if isinstance(param, click.Option) and param.help:
                flag = max(param.opts, key=len)
                rows = [line for line in text.splitlines() if line.startswith(f"| `{flag}")]
                if not rows or len(rows[0].split("|")[2].split()) < 2:
                    problems.append(f"{name} {flag}")
    assert problems == []


def test_the_readme_is_a_front_door() -> None:
    """The README stays short, shows the two commands, and links into docs/ for the rest."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 220
    assert "make demo" in readme
    assert "make test" in readme
    for page in ("getting-started", "concepts", "reference", "operations", "contributing"):
        assert f"(docs/{page}.md)" in readme, page


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
