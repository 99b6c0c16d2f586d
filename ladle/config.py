"""Pipeline files: YAML -> validated models, before anything runs.

Every value keeps the line it came from, so an error reads
``pipeline.yaml:12: resources.tickets: unknown key 'primary_ky' (did you mean 'primary_key'?)``.
``${VAR}`` and ``${VAR:-default}`` come from the environment, then from a ``.env`` file
next to the pipeline file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, get_args

import structlog
import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ladle.columns import ColumnSpec
from ladle.errors import ConfigError
from ladle.incremental import IncrementalSpec
from ladle.kinds import SOURCES, STEPS
from ladle.memory import check_limit
from ladle.redact import mask
from ladle.schema import Kind, fit_name, normalize_name
from ladle.status import FreshnessSpec
from ladle.yaml_errors import explain

DEFAULT_BATCH_SIZE = 10_000
"""Measured: 10k-row batches keep peak memory low and overlap parsing with loading best."""
Path_ = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)
_log = structlog.get_logger("ladle")


class WriteMode(StrEnum):
    """How a resource's rows reach its table."""

    APPEND = "append"
    REPLACE = "replace"
    MERGE = "merge"


DEFAULT_MAX_SHRINK = 0.5
"""A replace may remove at most half of a table's rows unless the run or the file allows more."""


class ReplaceSpec(BaseModel):
    """How far ``write: replace`` may shrink its table before the run refuses to swap it in."""

    model_config = ConfigDict(extra="forbid")

    max_shrink: float = Field(default=DEFAULT_MAX_SHRINK, ge=0, le=1)
    """The largest share of the table's rows a replace may remove (0.5: half; 1: any,
    even all). A replace that would remove more fails before the swap and changes
    nothing; a table that does not exist yet or is empty is never refused.
    ``ladle run --allow-shrink`` lifts the limit for one run."""


class ResourceSpec(BaseModel):
    """One entry under ``resources:``; ``source`` and ``steps`` are checked by their registries."""

    model_config = ConfigDict(extra="forbid")

    source: dict[str, Any]
    """Where records come from: a mapping whose ``type:`` picks the kind of source (``file``
    when left out); its other keys are that type's own."""
    table: str | None = None
    """The destination table; not set: the resource's name, snake_cased."""
    primary_key: list[str] = Field(default_factory=list)
    """The column, or list of columns, that identifies a row; needed by ``write: merge``.
    Key columns are implicitly ``required``."""
    write: WriteMode = WriteMode.APPEND
    """``append`` inserts every row; ``replace`` loads a new table and swaps it in
    atomically; ``merge`` upserts on ``primary_key``, counting inserted, updated and
    unchanged rows exactly, and leaves unchanged rows as they are."""
    replace: ReplaceSpec | None = None
    """Only with ``write: replace``: how far the new table may be smaller than the old
    (``{max_shrink: 0.5}``, the default, refuses to remove more than half of its rows)."""
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    """Declared columns by name: a type and constraints, or only the type
    (``amount: decimal(12,2)``). Columns not declared are inferred from the data."""
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """Transformations of each batch, in order; each is a mapping with one key, the step's
    name, whose value holds its options (see Steps)."""
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1)
    """Records per batch: what the source reads and the steps see at a time."""
    incremental: IncrementalSpec | None = None
    """Fetch only the records whose cursor is past the mark the last successful run left;
    not with ``write: replace``."""
    commit_every: int | None = Field(default=None, ge=1)
    """Commit the load in chunks of about this many records, each with its checkpoint."""
    freshness: FreshnessSpec | None = None
    """How old this resource's data may be (``ladle status``); replaces the pipeline's."""
    memory_limit_mb: int | None = None
    """This resource's own memory limit; replaces the pipeline's."""

    _limit = field_validator("memory_limit_mb")(check_limit)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("columns", mode="before")
    @classmethod
    def _type_shorthand(cls, value: Any) -> Any:
        # `amount: double` is shorthand for `amount: {type: double}`.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class PipelineSpec(BaseModel):
    """The whole pipeline file."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    """The pipeline's name, as the ledger records it: letters, digits, ``_`` and ``-``."""
    destination: str | None = None
    """``duckdb:///relative/path.duckdb`` (``duckdb:////absolute/path.duckdb``; query
    parameters are DuckDB settings) or ``postgresql://user@host:5432/db?schema=name``
    (``?pool_timeout=`` seconds to wait for a pooled connection, default 30;
    ``&lock_timeout=60s`` and ``&statement_timeout=0``, the defaults: how long a statement
    may wait for a lock, and run, ``0`` is no limit; other parameters are libpq's, e.g.
    ``connect_timeout``, ladle's default 10); not set:
    ``duckdb:///<pipeline>.duckdb`` in the working directory. Keep a URL with a password
    in the environment: ``${DATABASE_URL}``."""
    timezone: str = "UTC"
    """IANA zone for naive datetimes cast to ``timestamptz`` (unless a column names its
    own), and the session zone of ``derive`` expressions."""
    resources: dict[str, ResourceSpec] = Field(min_length=1)
    """The resources to load, by name: each loads one table."""
    freshness: FreshnessSpec | None = None
    """How old each resource's data may be (``ladle status``)."""
    memory_limit_mb: int | None = None
    """The most memory a run may take, in MB (at least 256); batches adapt to stay under it."""

    _limit = field_validator("memory_limit_mb")(check_limit)


@dataclass(frozen=True)
class StepConfig:
    """A validated step: its key, its options and where it was written."""

    name: str
    options: Any
    where: str


@dataclass(frozen=True)
class Resource:
    """A resource ready to run: the spec plus its validated source and step options."""

    name: str
    spec: ResourceSpec
    source_type: str
    source_options: BaseModel
    steps: list[StepConfig]

    @property
    def table(self) -> str:
        """The destination table: ``table:`` or the resource name, snake_cased; at most 63 bytes."""
        return fit_name(self.spec.table) if self.spec.table else normalize_name(self.name)


@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline file."""

    spec: PipelineSpec
    path: Path
    resources: dict[str, Resource]
    config_hash: str
    warnings: list[str] = field(default_factory=list)
    lines: Mapping[Path_, int] = field(default_factory=dict)
    """The line each key of the file is on, by its path (``("resources", "tickets")``)."""

    def line_of(self, *path: str | int) -> int | None:
        """The line of the key at ``path``, or of the nearest key above it; None in code."""
        return _nearest_line(self.lines, path)

    @property
    def name(self) -> str:
        """The pipeline's name, as the ledger records it."""
        return self.spec.pipeline

    @property
    def base_dir(self) -> Path:
        """Directory of the pipeline file: relative paths resolve against it."""
        return self.path.parent


# ---------------------------------------------------------------- YAML with lines


class _Reader:
    """Turns a YAML node tree into plain data, remembering each value's line and env use."""

    _VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

    def __init__(self, file: str, env: dict[str, str], env_file: Path) -> None:
        self.file = file
        self.env = env
        self.env_file = env_file
        self.lines: dict[Path_, int] = {}
        self.literal: dict[Path_, str] = {}
        self.overrides: dict[Path_, Any] = {}
        """Values given on the command line: used as they are, their ${VAR}s never looked up."""

    def read(self, node: yaml.Node, path: Path_ = ()) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if path in self.overrides:
            return self.overrides[path]
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                if key in out:
                    raise ConfigError(
                        "duplicate key",
                        file=self.file,
                        line=key_node.start_mark.line + 1,
                        key=_dotted((*path, key)),
                    )
                out[key] = self.read(value_node, (*path, key))
                # After the value: read() records the value's line, the key's line wins.
                self.lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self._scalar(node)
        if isinstance(value, str) and "$" in value:
            self.literal[path] = value
            return self._VAR.sub(lambda m: self._substitute(m, path), value)
        if isinstance(value, str):
            self.literal[path] = value
        return value

    @staticmethod
    def _key(node: yaml.Node) -> str:
        """A mapping key as written: YAML 1.1 would read ``on:`` (dedupe, lookup) as ``True``."""
        value = _Reader._scalar(node)
        if isinstance(value, bool) and isinstance(node, yaml.ScalarNode):
            return str(node.value)
        return str(value)

    @staticmethod
    def _scalar(node: yaml.Node) -> Any:
        """A scalar's value with YAML's usual typing (ints, bools, nulls)."""
        return yaml.SafeLoader("").construct_object(node, deep=True)

    def _substitute(self, match: re.Match[str], path: Path_) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if name in self.env:
            return self.env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"${{{name}}} is not set: looked in the environment and in {self.env_file}; "
            f"set it, or write ${{{name}:-default}}",
            file=self.file,
            line=self.lines.get(path),
            key=_dotted(path),
        )


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _nearest_line(lines: Mapping[Path_, int], path: Path_) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


# ---------------------------------------------------------------- loading


def load(path: str | Path, *, destination: str | None = None) -> PipelineConfig:
    """Read and validate a pipeline file; raise ConfigError naming file, line and key.

    ``destination`` replaces the file's own (so a ``${VAR}`` there need not be set).
    """
    file_path = Path(path)
    display = str(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline file: {exc.strerror}", file=display) from exc
    env_file = file_path.parent / ".env"
    env = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    reader = _Reader(display, env, env_file)
    if destination is not None:
        reader.overrides[("destination",)] = destination
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        line, message = explain(exc, text)
        raise ConfigError(message, file=display, line=line) from None
    if node is None:
        raise ConfigError("the file is empty; see `ladle init` for a starting point", file=display)
    data = reader.read(node)
    if not isinstance(data, dict):
        raise ConfigError(
            "a pipeline file is a mapping with `pipeline:` and `resources:`", file=display, line=1
        )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _config(data, reader, file_path, digest)


def from_mapping(data: Mapping[str, Any], *, base_dir: str | Path = ".") -> PipelineConfig:
    """A pipeline defined in code, as the mapping a file would hold; validated the same way.

    Errors name the key (there is no line); relative paths resolve against ``base_dir``.
    """
    display = "<pipeline defined in code>"
    reader = _Reader(display, {}, Path(base_dir) / ".env")
    text = json.dumps(data, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _config(dict(data), reader, Path(base_dir) / display, digest)


def _config(data: dict[str, Any], reader: _Reader, path: Path, digest: str) -> PipelineConfig:
    spec = _validate(PipelineSpec, data, reader, ())
    resources = {
        name: _resource(name, res, reader, ("resources", name))
        for name, res in spec.resources.items()
    }
    _check_parents(resources, reader)
    notes = _literal_secret_warnings(reader) + _naive_alias_warnings(spec, reader)
    return PipelineConfig(spec, path, resources, digest, notes, reader.lines)


def read_target(path: str | Path) -> tuple[str, str | None]:
    """Only the pipeline's name and destination: what ``ladle runs`` and ``quarantine`` need.

    Nothing else is read, so a source's ``${TOKEN}`` need not be set to look at the ledger.
    """
    file_path = Path(path)
    display = str(path)
    try:
        text = file_path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline file: {exc.strerror}", file=display) from exc
    except yaml.YAMLError:
        load(path)  # raises the full, positioned error
        raise
    env_file = file_path.parent / ".env"
    env = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    reader = _Reader(display, env, env_file)
    found: dict[str, Any] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(reader._scalar(key_node))
            if key in ("pipeline", "destination"):
                found[key] = reader.read(value_node, (key,))
    if not isinstance(found.get("pipeline"), str):
        load(path)  # the full validation says what is wrong
    destination = found.get("destination")
    return str(found["pipeline"]), str(destination) if destination is not None else None


@dataclass(frozen=True)
class OutlinedResource:
    """A resource as ``ladle status`` sees it: its table and its freshness."""

    table: str
    freshness: FreshnessSpec | None


@dataclass(frozen=True)
class Outline:
    """What looking at a pipeline's loads needs: its name, destination and resources."""

    name: str
    destination: str | None
    resources: dict[str, OutlinedResource]


def read_outline(path: str | Path) -> Outline:
    """The pipeline's name, destination, and each resource's table and freshness.

    Sources and steps are not read, so their ``${VAR}``s need not be set (``ladle status``
    runs where the source's secrets are not); what is read is validated as ``load`` does.
    """
    name, destination = read_target(path)
    display = str(path)
    file_path = Path(path)
    env_file = file_path.parent / ".env"
    env = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    reader = _Reader(display, env, env_file)
    node = yaml.compose(file_path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    top = _mapping_nodes(node)
    default = _outlined_freshness(reader, top.get("freshness"), ("freshness",))
    resources: dict[str, OutlinedResource] = {}
    for resource, res_node in _mapping_nodes(top.get("resources")).items():
        keys = _mapping_nodes(res_node)
        where = ("resources", resource)
        table = reader.read(keys["table"], (*where, "table")) if "table" in keys else None
        freshness = default
        if "freshness" in keys:
            freshness = _outlined_freshness(reader, keys["freshness"], (*where, "freshness"))
        resources[resource] = OutlinedResource(
            fit_name(str(table)) if table else normalize_name(resource), freshness
        )
    if not resources:
        load(path)  # the full validation says what is wrong
    return Outline(name, destination, resources)


def _mapping_nodes(node: yaml.Node | None) -> dict[str, yaml.Node]:
    """A YAML mapping's value nodes by key (empty for anything else)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {_Reader._key(key): value for key, value in node.value}


def _outlined_freshness(
    reader: _Reader, node: yaml.Node | None, path: Path_
) -> FreshnessSpec | None:
    if node is None:
        return None
    return _validate(FreshnessSpec, reader.read(node, path), reader, path)


def _resource(name: str, spec: ResourceSpec, reader: _Reader, path: Path_) -> Resource:
    source_path = (*path, "source")
    source_type = str(spec.source.get("type", "file"))
    if source_type not in SOURCES:
        raise _unknown(
            reader,
            (*source_path, "type"),
            f"unknown source type {source_type!r}",
            source_type,
            SOURCES.names(),
        )
    options = _validate(
        SOURCES[source_type].options, {"type": source_type, **spec.source}, reader, source_path
    )
    configs = []
    for index, item in enumerate(spec.steps):
        step_path = (*path, "steps", index)
        if not isinstance(item, dict) or len(item) != 1:
            line = _nearest_line(reader.lines, step_path)
            raise ConfigError(
                "a step is a mapping with one key, e.g. `- rename: {old: new}`",
                file=reader.file,
                line=line,
                key=_dotted(step_path),
            )
        ((key, value),) = item.items()
        if key not in STEPS:
            raise _unknown(reader, (*step_path, key), f"unknown step {key!r}", key, STEPS.names())
        try:
            parsed = STEPS[key].options.validate_python(value)
        except ValidationError as exc:
            raise _from_validation(exc, reader, (*step_path, key)) from None
        where = f"{reader.file}:{_nearest_line(reader.lines, (*step_path, key))}"
        configs.append(StepConfig(key, parsed, where))
    if spec.write is WriteMode.MERGE and not spec.primary_key:
        raise ConfigError(
            "write: merge needs a primary_key (the columns that identify a row)",
            file=reader.file,
            line=_nearest_line(reader.lines, (*path, "write")),
            key=_dotted((*path, "write")),
        )
    if spec.replace is not None and spec.write is not WriteMode.REPLACE:
        raise ConfigError(
            f"only goes with write: replace (this resource is write: {spec.write})",
            file=reader.file,
            line=_nearest_line(reader.lines, (*path, "replace")),
            key=_dotted((*path, "replace")),
        )
    for key in ("incremental", "commit_every"):
        if spec.write is WriteMode.REPLACE and getattr(spec, key) is not None:
            raise ConfigError(
                f"{key} does not go with write: replace (a replace reloads everything and "
                "swaps the table in at once); use write: merge or append",
                file=reader.file,
                line=_nearest_line(reader.lines, (*path, key)),
                key=_dotted((*path, key)),
            )
    return Resource(name, spec, source_type, options, configs)


def _check_parents(resources: dict[str, Resource], reader: _Reader) -> None:
    """A ``children`` source's ``of:`` names another resource of the file, and no chain of
    them comes back to where it started."""
    parents = {
        name: str(getattr(res.source_options, "of", ""))
        for name, res in resources.items()
        if res.source_type == "children"
    }
    for name, parent in parents.items():
        path = ("resources", name, "source", "of")
        if parent not in resources or parent == name:
            others = [r for r in resources if r != name]
            text = (
                "a resource cannot read its own records"
                if parent == name
                else f"no resource named {parent!r}" + _suggest(parent, others)
            )
            raise ConfigError(
                f"{text}; of: names the resource whose records hold the list "
                f"(the file has {', '.join(others) or 'no other'})",
                file=reader.file,
                line=_nearest_line(reader.lines, path),
                key=_dotted(path),
            )
        chain = [name]
        while chain[-1] in parents and parents[chain[-1]] not in chain:
            chain.append(parents[chain[-1]])
        if chain[-1] in parents and parents[chain[-1]] == name:
            raise ConfigError(
                f"children sources form a cycle: {' -> '.join([*chain, name])}; one of them "
                "must read a source of its own",
                file=reader.file,
                line=_nearest_line(reader.lines, path),
                key=_dotted(path),
            )


def _validate(model: type[_M], data: Any, reader: _Reader, path: Path_) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc, reader, path, model) from None


def _from_validation(
    exc: ValidationError, reader: _Reader, path: Path_, model: Any = None
) -> ConfigError:
    """Turn pydantic's errors into one ConfigError naming file:line:key; all are listed."""
    messages = []
    first: tuple[int | None, str] | None = None
    for error in exc.errors():
        loc = (*path, *(p for p in error["loc"] if not _is_union_tag(p)))
        if error["type"] == "extra_forbidden":
            parent, bad = loc[:-1], str(loc[-1])
            allowed = _keys_at(model, tuple(error["loc"][:-1]))
            text = f"unknown key {bad!r}" + _suggest(bad, allowed)
            key = _dotted(parent)
            line = reader.lines.get(loc, _nearest_line(reader.lines, parent))
        else:
            text = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "missing":
                text = f"missing required key {str(loc[-1])!r}"
                key = _dotted(loc[:-1])
            else:
                key = _dotted(loc)
            line = _nearest_line(reader.lines, loc)
        messages.append(
            f"{reader.file}:{line}: {key}: {text}" if key else f"{reader.file}:{line}: {text}"
        )
        if first is None:
            first = (line, f"{key}\0{text}")
    assert first is not None  # noqa: S101 - pydantic never raises without errors
    key, text = first[1].split("\0", 1)
    result = ConfigError(text, file=reader.file, line=first[0], key=key)
    if len(messages) > 1:
        result.args = (str(result) + "\n" + "\n".join(messages[1:]),)
    return result


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points, found by walking the model's annotations."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        else:
            current = _inner(current)
    current = _inner(current) if get_args(current) else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _inner(annotation: Any) -> Any:
    """What ``dict[str, X]`` holds, or what ``X | None`` may be: X."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    return args[-1] if args else None


def _suggest(bad: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(reader: _Reader, path: Path_, text: str, bad: str, allowed: Any) -> ConfigError:
    line = _nearest_line(reader.lines, path)
    return ConfigError(
        text + _suggest(bad, list(allowed)) + f"; known: {', '.join(sorted(allowed))}",
        file=reader.file,
        line=line,
        key=_dotted(path[:-1]),
    )


def _literal_secret_warnings(reader: _Reader) -> list[str]:
    """Warn (through the log) about secrets written in the file itself, not taken from ${VAR}.

    A ``${VAR:-default}``'s default is written in the file too, so it counts.
    """
    notes = []
    for path, raw in reader.literal.items():
        written = reader._VAR.sub(_as_written, raw)
        if mask(written) == written:
            continue
        line, key = reader.lines.get(path), _dotted(path)
        note = (
            f"{reader.file}:{line}: {key}: a password is written in the file; "
            "take it from the environment instead, e.g. `${DATABASE_URL}`"
        )
        _log.warning(note, file=reader.file, line=line, key=key)
        notes.append(note)
    return notes


def _naive_alias_warnings(spec: PipelineSpec, reader: _Reader) -> list[str]:
    """Warn about a naive ``timestamp`` chosen through an alias (``datetime``): whoever writes
    it usually means a moment in time, which is ``timestamptz``; ``timestamp`` written as
    such is taken to be meant."""
    notes = []
    for resource, res in spec.resources.items():
        for column, declared in res.columns.items():
            if declared.type is None or declared.type.kind is not Kind.TIMESTAMP:
                continue
            path: Path_ = ("resources", resource, "columns", column)
            written = reader.literal.get((*path, "type"), reader.literal.get(path, ""))
            if written.strip().lower() == Kind.TIMESTAMP.value:
                continue
            line, key = reader.lines.get(path), _dotted(path)
            note = (
                f"{reader.file}:{line}: {key}: type {written!r} is a timestamp without time "
                "zone (naive); timestamptz is usually meant (a moment in time, stored in UTC). "
                "Write `timestamptz`, or `timestamp` if naive values are meant"
            )
            _log.warning(note, file=reader.file, line=line, key=key)
            notes.append(note)
    return notes


def _as_written(match: re.Match[str]) -> str:
    """What the file itself holds for a ``${VAR}``: its default, or nothing."""
    if match.group(0) == "$$":
        return "$"
    return match.group(2) or ""
