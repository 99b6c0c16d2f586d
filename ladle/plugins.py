"""User steps and sources: ``@ladle.step`` and ``@ladle.source``, and packages' entry points.

A user step is a function from a batch (a Polars DataFrame) to a batch; its options in
the pipeline file arrive as keyword arguments::

    @ladle.step
    def add_vat(frame: pl.DataFrame, *, rate: float = 0.2) -> pl.DataFrame:
        return frame.with_columns(vat=pl.col("amount") * rate)

    # pipeline.yaml:   steps: [{add_vat: {rate: 0.16}}]

A user source is a function of its options and a :class:`~ladle.sources.SourceContext`
that yields records (dicts) or batches (DataFrames)::

    @ladle.source("inventory")
    def inventory(options: dict, context: SourceContext) -> Iterator[dict]:
        yield from fetch_all(options["warehouse"])

    # pipeline.yaml:   source: {type: inventory, warehouse: north}

Installed packages register theirs through the entry point groups ``ladle.steps`` and
``ladle.sources`` (``name = "package.module:function"``): the object is registered under
the entry point's name. Registration is process-wide, like an import: a name is taken
once, and a second registration of the same name by another function is an error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import polars as pl
from pydantic import BaseModel, ConfigDict, TypeAdapter

from ladle.batch import ROW, SourceBatch, StepResult
from ladle.errors import LadleError, SourceError, StepError
from ladle.kinds import SOURCES, STEPS, Factory, qualified
from ladle.sources import SourceContext
from ladle.sources.flatten import ColumnClash, records_to_frame
from ladle.steps import StepContext

StepFunction = Callable[..., pl.DataFrame | StepResult]
SourceFunction = Callable[[dict[str, Any], SourceContext], Iterable[Any]]
_F = TypeVar("_F", bound=Callable[..., Any])


# ---------------------------------------------------------------- registering


@overload
def step(name: _F, /) -> _F: ...
@overload
def step(name: str | None = None, /) -> Callable[[_F], _F]: ...
def step(name: str | Callable[..., Any] | None = None, /) -> Any:
    """Register a function as a step, under its own name or ``name``: ``@ladle.step``."""
    if callable(name):
        STEPS.add_plugin(name.__name__, name)
        return name

    def register(function: _F) -> _F:
        STEPS.add_plugin(name or function.__name__, function)
        return function

    return register


def source(name: str) -> Callable[[_F], _F]:
    """Register a function as a source type: ``@ladle.source("inventory")``."""

    def register(function: _F) -> _F:
        SOURCES.add_plugin(name, function)
        return function

    return register


def user_steps() -> dict[str, StepFunction]:
    """Registered user steps, entry points included."""
    return STEPS.plugins()


def user_sources() -> dict[str, SourceFunction]:
    """Registered user sources, entry points included."""
    return SOURCES.plugins()


def step_kind(name: str, function: StepFunction) -> tuple[TypeAdapter[Any], Factory]:
    """A user function as a step kind (the adapter :data:`ladle.kinds.STEPS` names)."""

    def build(options: Any, context: StepContext) -> FunctionStep:
        return FunctionStep(name, function, options, context.resource)

    return step_options(), build


def source_kind(name: str, function: SourceFunction) -> tuple[type[UserSourceOptions], Factory]:
    """A user function as a source kind (the adapter :data:`ladle.kinds.SOURCES` names)."""
    return UserSourceOptions, build_source(name, function)


# ---------------------------------------------------------------- steps


class FunctionStep:
    """A user function as a step: options become keyword arguments, rows keep their order.

    The function sees the batch without ladle's row index and must return a frame of the
    same height and order (add or change columns), or a :class:`~ladle.batch.StepResult`
    (which must keep ``_ladle_row``) to reject rows.
    """

    def __init__(self, name: str, function: StepFunction, options: Any, resource: str) -> None:
        self.name = name
        self.function = function
        self.resource = resource
        self.options = dict(options or {})
        try:
            inspect.signature(function).bind(pl.DataFrame(), **self.options)
        except TypeError as exc:
            raise StepError(
                f"the options {sorted(self.options)} do not fit {qualified(function)}: {exc}",
                resource=resource,
                step=name,
            ) from exc

    def __call__(self, frame: pl.DataFrame) -> StepResult:
        """Call the function; put the row index back on what it returns."""
        rows = frame.get_column(ROW)
        try:
            result = self.function(frame.drop(ROW), **self.options)
        except LadleError:
            raise
        except Exception as exc:
            raise StepError(
                f"{qualified(self.function)} raised {type(exc).__name__}: {exc}",
                resource=self.resource,
                step=self.name,
            ) from exc
        if isinstance(result, StepResult):
            return result
        if not isinstance(result, pl.DataFrame):
            raise StepError(
                f"{qualified(self.function)} returned {type(result).__name__}; a step returns "
                "a polars DataFrame (or a StepResult)",
                resource=self.resource,
                step=self.name,
            )
        if result.height != frame.height:
            raise StepError(
                f"{qualified(self.function)} returned {result.height} rows for {frame.height}; "
                "a step may add or change columns, but to take rows out it returns a "
                "StepResult with the rejects",
                resource=self.resource,
                step=self.name,
            )
        return StepResult(result.with_columns(rows))


def step_options() -> TypeAdapter[Any]:
    """A user step's options: a mapping of keyword arguments, or nothing."""
    return TypeAdapter(dict[str, Any] | None)


# ---------------------------------------------------------------- sources


class UserSourceOptions(BaseModel):
    """A user source's ``source:``: ``type`` plus whatever keys the function takes."""

    model_config = ConfigDict(extra="allow")

    type: str


@dataclass
class FunctionSource:
    """A user function as a source: records are gathered into batches of ``batch_size``."""

    name: str
    function: SourceFunction
    options: dict[str, Any]
    context: SourceContext
    _count: int = 0

    def batches(self) -> Iterator[SourceBatch]:
        """Yield the function's output as batches; positions are ``<type>#<n>``."""
        self._count = 0
        try:
            yield from self._gather()
        except (LadleError, GeneratorExit):
            raise
        except ColumnClash as exc:
            raise SourceError(str(exc), position=f"{self.name}#{self._count}") from exc
        except Exception as exc:
            raise SourceError(
                f"{qualified(self.function)} raised {type(exc).__name__}: {exc}",
                position=f"{self.name}#{self._count}",
            ) from exc

    def _gather(self) -> Iterator[SourceBatch]:
        pending: list[Mapping[str, Any]] = []
        for item in self.function(self.options, self.context):
            if isinstance(item, pl.DataFrame):
                if pending:
                    yield self._batch(records_to_frame(pending), self._count - len(pending))
                    pending = []
                yield self._batch(item, self._count)
                self._count += item.height
                continue
            if not isinstance(item, Mapping):
                raise SourceError(
                    f"{qualified(self.function)} yielded {type(item).__name__}; a source "
                    "yields dicts (records) or polars DataFrames (batches)",
                    position=f"{self.name}#{self._count}",
                )
            pending.append(item)
            self._count += 1
            if len(pending) >= self.context.batch_size:
                yield self._batch(records_to_frame(pending), self._count - len(pending))
                pending = []
        if pending:
            yield self._batch(records_to_frame(pending), self._count - len(pending))

    def _batch(self, frame: pl.DataFrame, first: int) -> SourceBatch:
        positions = [f"{self.name}#{first + i}" for i in range(frame.height)]
        return SourceBatch(frame, positions)


def build_source(name: str, function: SourceFunction) -> Callable[[Any, SourceContext], Any]:
    """The factory the source registry calls for a user source type."""

    def build(options: UserSourceOptions, context: SourceContext) -> FunctionSource:
        values = options.model_dump(exclude={"type"})
        return FunctionSource(name, function, values, context)

    return build
