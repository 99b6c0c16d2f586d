"""Sources: where records come from. Each yields :class:`~ladle.batch.SourceBatch` objects.

A source is chosen by the ``type:`` key of a resource's ``source:``; the registry maps
that key to an options model (pydantic, validated with the rest of the pipeline file)
and a factory. Sources stream: a batch is at most ``batch_size`` records, and nothing
holds a whole input in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from ladle.batch import SourceBatch


@dataclass(frozen=True)
class SourceContext:
    """What a source needs to know about the resource that reads it."""

    resource: str
    batch_size: int
    base_dir: Path
    """Directory of the pipeline file: relative paths resolve against it."""


class Source(Protocol):
    """Anything that yields batches of records with their positions."""

    def batches(self) -> Iterator[SourceBatch]:
        """Yield the records in batches of at most ``batch_size`` rows."""
        ...


SourceFactory = Callable[[Any, SourceContext], Source]


@dataclass(frozen=True)
class SourceKind:
    """A registered ``type:``: its options model and how to build the source."""

    options: type[BaseModel]
    build: SourceFactory


def registry() -> dict[str, SourceKind]:
    """Every source type by its ``type:`` key; drivers are imported only when a source runs."""
    from ladle.sources.files import FileOptions, FileSource

    return {"file": SourceKind(FileOptions, FileSource)}
