"""The registry of kinds: each source ``type:`` and each step key, with its options and factory.

Config validates an option block by the kind's options model, the pipeline builds the
source or step with its factory, the reference documents both. This module sits below all
of them and imports none: a kind is named by a reference, ``module:options:factory``, and
its module is imported the first time the kind is asked for, so asking for ``file`` does
not import the SQL drivers. Built-ins are such references; plug-ins are functions,
registered by ``@ladle.step`` / ``@ladle.source`` or found through the entry point groups
``ladle.steps`` and ``ladle.sources``, and made into kinds by the adapter that
:mod:`ladle.plugins` names (``module:function``), loaded the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from ladle.errors import LadleError

O = TypeVar("O")  # noqa: E741 - the options' type: a model class, or a TypeAdapter
Factory = Callable[[Any, Any], Any]
"""Builds a source (options, SourceContext) or a step (options, StepContext)."""


@dataclass(frozen=True)
class Kind(Generic[O]):
    """A registered kind: how its options validate and how to build it."""

    name: str
    options: O
    build: Factory
    plugin: bool = False


def resolve(reference: str) -> Any:
    """The object a ``module:attribute`` reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(import_module(module), attribute)


class Registry(Generic[O]):
    """The kinds of one family (sources or steps), by name.

    ``builtins`` maps each built-in name to ``module:options:factory``; ``adapter`` names a
    function ``(name, function) -> (options, factory)`` that makes a plug-in function a kind.
    """

    def __init__(
        self,
        family: str,
        builtins: Mapping[str, str],
        *,
        group: str,
        adapter: str,
        options: Callable[[Any], O],
    ) -> None:
        self.family = family
        self.group = group
        self._references = dict(builtins)
        self._adapter_reference = adapter
        self._as_options = options
        self._kinds: dict[str, Kind[O]] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        self._entry_points_loaded = False

    # ------------------------------------------------------------ asking

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __getitem__(self, name: str) -> Kind[O]:
        if name not in self._kinds:
            self._load(name)
        return self._kinds[name]

    def names(self) -> list[str]:
        """Every name, built-ins first in their order, then plug-ins as registered."""
        self._load_entry_points()
        return [*self._references, *self._functions]

    def builtin_names(self) -> list[str]:
        """The names that ship with ladle."""
        return list(self._references)

    def plugins(self) -> dict[str, Callable[..., Any]]:
        """Registered plug-in functions by name, entry points included."""
        self._load_entry_points()
        return dict(self._functions)

    def items(self) -> Iterator[tuple[str, Kind[O]]]:
        """Every kind by name, loading each."""
        for name in self.names():
            yield name, self[name]

    # ------------------------------------------------------------ registering

    def add_plugin(self, name: str, function: Callable[..., Any]) -> None:
        """Register a plug-in function under ``name``; a name is taken once, and never one
        of the built-ins."""
        if not name.isidentifier():
            raise LadleError(f"a {self.family} name must be an identifier, got {name!r}")
        if name in self._references:
            raise LadleError(
                f"user {self.family}s may not take the built-in names ['{name}'] "
                f"({qualified(function)} needs another name)"
            )
        known = self._functions.get(name)
        if known is not None and qualified(known) != qualified(function):
            raise LadleError(
                f"the {self.family} name {name!r} is taken by {qualified(known)}; "
                f"{qualified(function)} needs another name"
            )
        self._functions[name] = function
        self._kinds.pop(name, None)

    # ------------------------------------------------------------ loading

    def _load(self, name: str) -> None:
        reference = self._references.get(name)
        if reference is not None:
            module, options, factory = reference.split(":")
            self._kinds[name] = Kind(
                name,
                self._as_options(resolve(f"{module}:{options}")),
                resolve(f"{module}:{factory}"),
            )
            return
        function = self.plugins().get(name)
        if function is None:
            raise KeyError(name)
        options, build = resolve(self._adapter_reference)(name, function)
        self._kinds[name] = Kind(name, options, build, plugin=True)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for point in entry_points(group=self.group):
            try:
                function = point.load()
            except Exception as exc:
                raise LadleError(
                    f"the {self.family} {point.name!r} from entry point {point.value!r} "
                    f"(group {self.group}) cannot be imported: {exc}"
                ) from exc
            self.add_plugin(point.name, function)


def qualified(function: Callable[..., Any]) -> str:
    """``module.name`` of a function, for messages."""
    return f"{function.__module__}.{getattr(function, '__qualname__', function)}"


def _model(options: Any) -> type[BaseModel]:
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"a source's options must be a pydantic model, got {options!r}")
    return options


def _adapter(options: Any) -> TypeAdapter[Any]:
    return TypeAdapter(options)


SOURCES: Registry[type[BaseModel]] = Registry(
    "source",
    {
        "file": "ladle.sources.files:FileOptions:FileSource",
        "sql": "ladle.sources.sql:SqlOptions:SqlSource",
        "http": "ladle.sources.http_api:HttpOptions:HttpSource",
        "redis_stream": "ladle.sources.redis_stream:RedisStreamOptions:RedisStreamSource",
        "documents": "ladle.sources.documents:DocumentsOptions:DocumentsSource",
        "children": "ladle.sources.children:ChildrenOptions:ChildrenSource",
    },
    group="ladle.sources",
    adapter="ladle.plugins:source_kind",
    options=_model,
)
"""Source types by their ``type:`` key; options are pydantic model classes."""

STEPS: Registry[TypeAdapter[Any]] = Registry(
    "step",
    {
        "rename": "ladle.steps.columns:RenameOptions:Rename",
        "select": "ladle.steps.columns:ColumnList:Select",
        "drop": "ladle.steps.columns:ColumnList:Drop",
        "cast": "ladle.steps.cast:CastOptions:Cast",
        "derive": "ladle.steps.derive:DeriveOptions:Derive",
        "validate": "ladle.steps.validate:ValidateOptions:Validate",
        "dedupe": "ladle.steps.dedupe:DedupeOptions:Dedupe",
        "fk": "ladle.steps.foreign_keys:FkOptions:ForeignKeys",
        "lookup": "ladle.steps.lookup:LookupOptions:Lookup",
    },
    group="ladle.steps",
    adapter="ladle.plugins:step_kind",
    options=_adapter,
)
"""Steps by their key in the pipeline file; options are pydantic TypeAdapters."""
