"""What a loaded row must hold: a JSON record flattened as ladle does, compared value by value.

Numbers are compared exactly, as decimals: a number loaded as DECIMAL, BIGINT, HUGEINT or
text must equal the number as written; one loaded as DOUBLE must be the double whose
shortest spelling is the number as written (``1.000000000000000005`` stored as ``1.0``
fails, ``123.456789`` passes). Lists arrive as JSON text and are compared the same way,
element by element.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from ladle.schema import normalize_name

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_INTERNAL = "_ladle"


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def is_json(text: str) -> bool:
    """Whether the text is JSON as RFC 8259 says (NaN and Infinity are not).

    Python's parser gives up past about a thousand levels of nesting; such a text counts
    as not JSON here (JSONTestSuite's only one is an unclosed ``n_`` case).
    """
    try:
        json.loads(text, parse_float=str, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return False
    return True


def strict_loads(text: str) -> Any:
    """Parse JSON as RFC 8259 says, numbers kept exact as int or Decimal."""
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse)


def first_wins_loads(text: str) -> Any:
    """Parse JSON as a JSON Lines record is read: exact numbers, and a repeated key keeps
    its first value (RFC 8259 leaves repeated names open; ladle's JSON Lines roads agree
    on the first, JSON documents keep the last, as ijson builds them)."""

    def first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for key, value in pairs:
            record.setdefault(key, value)
        return record

    return json.loads(text, parse_float=Decimal, parse_constant=_refuse, object_pairs_hook=first)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Columns as ladle names them: nested objects as ``parent__child``, empty objects none."""
    columns: dict[str, Any] = {}

    def walk(path: tuple[str, ...], obj: dict[str, Any]) -> None:
        for key, value in obj.items():
            if isinstance(value, dict):
                walk((*path, key), value)
            else:
                columns[normalize_name("__".join((*path, key)))] = value

    walk((), record)
    return columns


def row_mismatches(row: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How a loaded row differs from the expected columns (empty: the same)."""
    loaded = {k: v for k, v in row.items() if not k.startswith(_INTERNAL)}
    problems = []
    if set(loaded) != set(expected):
        problems.append(f"columns {sorted(loaded)} != expected {sorted(expected)}")
    for name in sorted(set(loaded) & set(expected)):
        if not same_value(loaded[name], expected[name]):
            problems.append(f"{name}: loaded {loaded[name]!r}, expected {expected[name]!r}")
    return problems


def same_value(loaded: Any, expected: Any) -> bool:
    """Whether a loaded value is the JSON value, exactly (see the module docstring)."""
    if expected is None or isinstance(expected, bool):
        return loaded is expected
    if isinstance(expected, str):
        return isinstance(loaded, str) and loaded == expected
    if isinstance(expected, int | Decimal):
        number = as_number(loaded)
        return number is not None and number == Decimal(expected)
    if isinstance(loaded, str):
        try:
            loaded = strict_loads(loaded)
        except ValueError:
            return False
    return _same_json(loaded, expected)


def _same_json(loaded: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return (
            isinstance(loaded, list)
            and len(loaded) == len(expected)
            and all(_same_json(a, b) for a, b in zip(loaded, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(loaded, dict)
            and loaded.keys() == expected.keys()
            and all(_same_json(loaded[k], expected[k]) for k in expected)
        )
    return same_value(loaded, expected)


def as_number(value: Any) -> Decimal | None:
    """A loaded number as an exact decimal; None for anything that is not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


def holds_nul(value: Any) -> bool:
    """Whether a NUL character is anywhere in a JSON value, keys included."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    return False
