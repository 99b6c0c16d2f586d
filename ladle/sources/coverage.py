"""Coverage of a ``documents`` run: per doc type, the entities with a document and without.

A doc type that made no document at all is *missing*: the report says so, ``ladle run
--strict`` fails the resource for it, and nothing is ever written in its place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_INTEGER = re.compile(r"-?\d+")


@dataclass
class Found:
    """What one doc type's query gave: rows read, documents made, the entities they cover."""

    rows: int = 0
    documents: int = 0
    keys: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Coverage:
    """One doc type's coverage of the entities; key lists are sorted (numbers as numbers)."""

    doc_type: str
    rows: int
    """Rows its query returned."""
    documents: int
    """Documents made (an entity's rows make one)."""
    with_document: int
    """Entities that have a document of this type."""
    without: list[str]
    """Entities that have none."""
    outside: list[str]
    """Keys with a document that the entities query does not return."""

    @property
    def missing(self) -> bool:
        """No document of this type was made: its query returned no rows (or none usable)."""
        return self.documents == 0

    @property
    def problem(self) -> str | None:
        """Why the doc type is missing, or None when it is not."""
        if not self.missing:
            return None
        if self.rows == 0:
            return f"doc type {self.doc_type!r} is missing: its query returned no rows"
        return (
            f"doc type {self.doc_type!r} is missing: its {self.rows} rows made no document "
            "(see the quarantine)"
        )


@dataclass(frozen=True)
class CoverageReport:
    """Coverage of every doc type over the entities; shown under the run summary."""

    entities: int
    doc_types: list[Coverage]

    columns = ("doc type", "rows", "documents", "entities with", "entities without", "lacking")

    @classmethod
    def build(cls, entities: set[str], found: Mapping[str, Found]) -> CoverageReport:
        """Compare each doc type's keys with the entities."""
        items = [
            Coverage(
                doc_type=name,
                rows=got.rows,
                documents=got.documents,
                with_document=len(got.keys & entities),
                without=sort_keys(entities - got.keys),
                outside=sort_keys(got.keys - entities),
            )
            for name, got in found.items()
        ]
        return cls(len(entities), items)

    def __getitem__(self, doc_type: str) -> Coverage:
        """The coverage of one doc type."""
        for item in self.doc_types:
            if item.doc_type == doc_type:
                return item
        raise KeyError(doc_type)

    @property
    def title(self) -> str:
        """The table's title."""
        return f"coverage of {self.entities:,} entities by doc type"

    @property
    def problems(self) -> list[str]:
        """Missing doc types: what ``ladle run --strict`` fails the resource for."""
        return [item.problem for item in self.doc_types if item.problem is not None]

    def rows(self, *, limit: int | None = None) -> list[tuple[str, ...]]:
        """One row per doc type; the keys of entities lacking it, cut after ``limit``."""
        table: list[tuple[str, ...]] = []
        for item in self.doc_types:
            if item.missing:
                lacking = "MISSING: " + (item.problem or "").split(": ", 1)[1]
            else:
                shown = item.without if limit is None else item.without[:limit]
                lacking = ", ".join(shown)
                if len(shown) < len(item.without):
                    lacking += f", … (+{len(item.without) - len(shown)} more)"
            table.append(
                (
                    item.doc_type,
                    f"{item.rows:,}",
                    f"{item.documents:,}",
                    f"{item.with_document:,}",
                    f"{len(item.without):,}",
                    lacking,
                )
            )
        return table


def sort_keys(keys: set[str]) -> list[str]:
    """Keys in order: integers by value, before other text."""
    return sorted(keys, key=lambda k: (0, int(k), "") if _INTEGER.fullmatch(k) else (1, 0, k))
