"""The JSON Lines reader: positions, bad lines, encodings, mixed types, fast and slow roads."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ladle.batch import LinePositions, SourceBatch, Unreadable
from ladle.sources import SourceContext, json_reader
from ladle.sources.files import FileOptions, FileSource
from ladle.sources.json_reader import JsonOptions, read_jsonl
from ladle.sources.json_typed import SchemaMemo


def _read(base: Path, path: str, *, batch_size: int = 100, **options: Any) -> list[SourceBatch]:
    source = FileSource(
        FileOptions(type="file", path=path, **options), SourceContext("things", batch_size, base)
    )
    return list(source.batches())


def _one(base: Path, name: str, content: bytes, **options: Any) -> SourceBatch:
    (base / name).write_bytes(content)
    batches = _read(base, name, **options)
    assert len(batches) == 1
    return batches[0]


def test_positions_are_physical_lines_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    """Blank and whitespace-only lines are not records, but they count as lines."""
    batch = _one(tmp_path, "t.jsonl", b'{"a":1}\n\n{"a":2}\n   \n{"a":3}\n\n')
    assert batch.frame.get_column("a").to_list() == [1, 2, 3]
    assert batch.positions == ["t.jsonl:1", "t.jsonl:3", "t.jsonl:5"]
    assert batch.unreadable == []


def test_malformed_line_is_unreadable_and_the_rest_load(tmp_path: Path) -> None:
    """A line that is not JSON is quarantined with the parser's message; its neighbours load."""
    batch = _one(tmp_path, "t.jsonl", b'{"a":1}\n{"a":\n{"a":3}\n')
    assert batch.frame.get_column("a").to_list() == [1, 3]
    assert batch.positions == ["t.jsonl:1", "t.jsonl:3"]
    assert batch.unreadable == [
        Unreadable("t.jsonl:2", '{"a":', "invalid JSON: Expecting value (column 6)", "parse")
    ]


def test_lines_that_are_not_objects_are_unreadable(tmp_path: Path) -> None:
    """Valid JSON that is not an object is not a record, and the message says so."""
    content = b'[1,2]\n3\n"s"\nnull\ntrue\n{"a":1}\n'
    batch = _one(tmp_path, "t.jsonl", content)
    assert batch.frame.rows() == [(1,)]
    expected = [
        ("[1,2]", "an array"),
        ("3", "a number"),
        ('"s"', "a string"),
        ("null", "null"),
        ("true", "a boolean"),
    ]
    assert batch.unreadable == [
        Unreadable(f"t.jsonl:{line}", raw, f"a record must be a JSON object, found {what}")
        for line, (raw, what) in enumerate(expected, start=1)
    ]


def test_undecodable_bytes_spoil_only_their_line(tmp_path: Path) -> None:
    """A line with bytes that are not UTF-8 is unreadable by rule ``encoding``, naming the byte."""
    batch = _one(tmp_path, "t.jsonl", b'{"a":"ok"}\n{"a":"caf\xe9"}\n{"a":"fine"}\n')
    assert batch.frame.get_column("a").to_list() == ["ok", "fine"]
    assert batch.unreadable == [
        Unreadable(
            "t.jsonl:2",
            '{"a":"caf\\xe9"}',
            "cannot decode byte 0xe9 as utf-8; set `encoding:` to the file's encoding",
            "encoding",
        )
    ]


def test_declared_encoding_is_decoded(tmp_path: Path) -> None:
    """``encoding: latin-1`` reads Latin-1 bytes as the characters they stand for."""
    batch = _one(tmp_path, "t.jsonl", b'{"a":"caf\xe9"}\n', encoding="latin-1")
    assert batch.frame.get_column("a").to_list() == ["café"]


def test_bytes_undefined_in_the_declared_encoding_are_unreadable(tmp_path: Path) -> None:
    """In cp1252, byte 0x81 has no character: that line alone is quarantined."""
    batch = _one(tmp_path, "t.jsonl", b'{"a":"\x80"}\n{"a":"\x81"}\n', encoding="cp1252")
    assert batch.frame.get_column("a").to_list() == ["€"]
    assert batch.unreadable == [
        Unreadable(
            "t.jsonl:2",
            '{"a":"\\x81"}',
            "cannot decode byte 0x81 as cp1252; set `encoding:` to the file's encoding",
            "encoding",
        )
    ]


def test_utf8_byte_order_mark_is_stripped(tmp_path: Path) -> None:
    """A UTF-8 BOM does not end up in the first column name."""
    batch = _one(tmp_path, "t.jsonl", b'\xef\xbb\xbf{"a":1}\r\n{"a":2}\r\n')
    assert batch.frame.columns == ["a"]
    assert batch.frame.get_column("a").to_list() == [1, 2]


def test_mixed_types_in_a_field_become_text(tmp_path: Path) -> None:
    """An int here and a string there load as text, non-strings JSON-encoded."""
    lines = [{"n": 123, "b": True, "o": {"x": [1]}, "l": ["a", 1]}]
    lines += [{"n": "x", "b": "yes", "o": "plain", "l": "plain"}]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    frame = _one(tmp_path, "t.jsonl", content).frame
    assert frame.schema == dict.fromkeys(["n", "b", "o", "l"], pl.String)
    assert frame.rows() == [("123", "true", '{"x":[1]}', '["a",1]'), ("x", "yes", "plain", "plain")]


def test_bool_and_int_in_one_field_become_text(tmp_path: Path) -> None:
    """Types Polars refuses to reconcile load too, by the line-by-line road."""
    frame = _one(tmp_path, "t.jsonl", b'{"v":true}\n{"v":3}\n').frame
    assert frame.get_column("v").to_list() == ["true", "3"]


def test_fields_first_seen_late_in_a_batch_are_kept(tmp_path: Path) -> None:
    """Types and columns are inferred over the whole batch, not its first rows."""
    lines = [{"a": i} for i in range(299)] + [{"a": 299, "late": {"x": "y"}}]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    batch = _one(tmp_path, "t.jsonl", content, batch_size=300)
    assert batch.frame.columns == ["a", "late__x"]
    assert batch.frame.get_column("late__x").to_list()[-2:] == [None, "y"]


def test_nested_values_flatten_without_inventing_values(tmp_path: Path) -> None:
    """Objects flatten to ``a__b``; lists keep their exact content as JSON text."""
    record = {
        "a": {"b": {"c": 1}, "empty": {}},
        "objs": [{"x": 1}, {"y": 2}],
        "mixed": [1, "x", 2.5, None, True],
        "nums": [1, 2.5],
        "deep": [[1], []],
    }
    frame = _one(tmp_path, "t.jsonl", json.dumps(record).encode() + b"\n").frame
    assert frame.columns == ["a__b__c", "objs", "mixed", "nums", "deep"]
    assert frame.row(0) == (1, '[{"x":1},{"y":2}]', '[1,"x",2.5,null,true]', "[1,2.5]", "[[1],[]]")


def test_numbers_in_lists_keep_their_values(tmp_path: Path) -> None:
    """Integers in a list with floats stay exact; fractions are spelled as Polars spells them."""
    content = b'{"v":[9007199254740993,2.5]}\n{"v":[0.5,1e-07]}\n'
    batch = _one(tmp_path, "a.jsonl", content[:28])
    assert batch.frame.get_column("v").to_list() == ["[9007199254740993,2.5]"]
    batch = _one(tmp_path, "b.jsonl", content[28:])
    assert batch.frame.get_column("v").to_list() == ["[0.5,1e-7]"]


def test_batches_hold_at_most_batch_size_records(tmp_path: Path) -> None:
    """25 records with batch_size 10 come as 10, 10 and 5, bad lines included in the count."""
    lines = [json.dumps({"i": i}) if i != 12 else "{oops" for i in range(25)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    batches = _read(tmp_path, "t.jsonl", batch_size=10)
    assert [batch.fetched for batch in batches] == [10, 10, 5]
    assert [len(batch.unreadable) for batch in batches] == [0, 1, 0]
    assert batches[2].positions == [f"t.jsonl:{line}" for line in range(21, 26)]


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _read_bytes_batches(
    content: bytes, batch_size: int, options: JsonOptions | None = None
) -> list[SourceBatch]:
    return list(
        read_jsonl(
            io.BytesIO(content),
            "t",
            batch_size=batch_size,
            encoding="utf-8",
            consumed=int,
            options=options,
        )
    )


def _read_bytes(content: bytes, options: JsonOptions | None = None) -> SourceBatch:
    batches = _read_bytes_batches(content, 10_000, options)
    assert len(batches) == 1
    return batches[0]


def _comparable(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    """Rows with columns in name order and JSON text parsed (1e-7 and 1e-07 are one number)."""
    ordered = pl.DataFrame(sorted(frame.get_columns(), key=lambda series: series.name))
    return [tuple(_parsed(value) for value in row) for row in ordered.rows()]


def _parsed(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith("["):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


_TEXT = st.text(st.characters(codec="utf-8"), max_size=6) | st.sampled_from(
    ["{}", "[1, 2]", "123", "true", '{"a": 1}', "", "\\", '"']
)
_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: round(f, 3))
_KIND = st.sampled_from(
    [
        _INT,
        _FLOAT,
        st.booleans(),
        _TEXT,
        st.lists(_INT, max_size=3),
        st.lists(_TEXT, max_size=3),
        st.lists(_INT | _FLOAT, max_size=3),
        st.lists(st.dictionaries(_TEXT, _INT, max_size=2), max_size=2),
        st.lists(st.lists(_INT, max_size=2), max_size=2),
        st.dictionaries(st.sampled_from(["p", "q"]), _INT | st.none(), max_size=2),
        st.dictionaries(st.just("r"), st.dictionaries(st.just("s"), _TEXT, max_size=1)),
        _INT | _TEXT,
        st.booleans() | _TEXT,
        st.dictionaries(st.just("k"), _INT, min_size=1) | _TEXT,
        st.lists(_INT, max_size=2) | _TEXT,
    ]
)
_FIELD_NAMES = st.text(st.characters(codec="utf-8", exclude_characters="_"), min_size=1, max_size=4)


@st.composite
def _batches_of_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records whose fields each hold one kind of value (or null), in random subsets."""
    kinds = draw(st.dictionaries(_FIELD_NAMES, _KIND, min_size=1, max_size=5))
    records = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        present = draw(st.lists(st.sampled_from(sorted(kinds)), unique=True))
        records.append({key: draw(kinds[key] | st.none()) for key in present})
    return records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches_of_records())
def test_fast_and_line_by_line_roads_agree(records: list[dict[str, Any]]) -> None:
    """A chunk read by Polars equals the same chunk read line by line (forced by a bad line)."""
    fast = _read_bytes(_jsonl(records))
    slow = _read_bytes(_jsonl(records) + b"{not json\n")
    assert fast.unreadable == slow.unreadable[:-1]  # a record with no fields, on both roads
    assert slow.unreadable[-1].raw == "{not json"
    assert fast.positions == slow.positions
    assert dict(sorted(fast.frame.schema.items())) == dict(sorted(slow.frame.schema.items()))
    assert _comparable(fast.frame) == _comparable(slow.frame)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches_of_records())
@example(records=[{"*": 0, "0": 0}])  # a key that select() would read as a wildcard
def test_declared_json_fields_read_the_same_on_both_roads(records: list[dict[str, Any]]) -> None:
    """Fields declared `type: json` give the same text whichever road reads the
    chunk (Polars, when it holds them as written, or line by line)."""
    whole = JsonOptions(whole=frozenset(key for record in records for key in record))
    fast = _read_bytes(_jsonl(records), whole)
    slow = _read_bytes(_jsonl(records) + b"{not json\n", whole)
    assert fast.unreadable == slow.unreadable[:-1]
    assert fast.positions == slow.positions
    # Column order may differ, as for flattened fields (Polars orders the keys it meets).
    # Columns are taken as Series: a key such as "*" would be a wildcard in select().
    assert _sorted_columns(fast.frame).equals(_sorted_columns(slow.frame))


def _sorted_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame([frame.get_column(name) for name in sorted(frame.columns)])


def test_declared_json_list_is_read_by_polars(tmp_path: Path) -> None:
    """A declared json field holding lists of text does not send its chunk line by line."""
    content = b'{"id": 1, "tags": ["vpn", "\\u00e9"]}\n{"id": 2, "tags": null}\n{"id": 3}\n'
    options = JsonOptions(whole=frozenset({"tags"}))
    with _line_by_line_refused():
        batch = _read_bytes(content, options)
    assert batch.frame.rows() == [(1, '["vpn","\u00e9"]'), (2, None), (3, None)]


@contextmanager
def _line_by_line_refused() -> Iterator[None]:
    """Fail the test if a chunk is read line by line."""
    original = json_reader._parse_lines

    def refuse(*args: Any, **kwargs: Any) -> SourceBatch:
        raise AssertionError("the chunk was read line by line")

    json_reader._parse_lines = refuse
    try:
        yield
    finally:
        json_reader._parse_lines = original


_DEEP = (
    "invalid JSON: arrays and objects nest deeper than {limit} levels; "
    "if the data is meant to, raise the source's `max_depth:` (column {column})"
)


def test_line_nested_too_deep_is_unreadable_before_parsing(tmp_path: Path) -> None:
    """A line of 100,000 brackets (a RecursionError, or gigabytes in Polars) is unreadable at
    the column of its 65th level; the other lines load."""
    content = b'{"a":1}\n{"a":' + b"[" * 100_000 + b'\n{"a":3}\n'
    batch = _one(tmp_path, "t.jsonl", content)
    assert batch.frame.get_column("a").to_list() == [1, 3]
    [bad] = batch.unreadable
    assert (bad.position, bad.message) == ("t.jsonl:2", _DEEP.format(limit=64, column=69))
    assert len(bad.raw) == 100_005


def test_max_depth_applies_to_lines(tmp_path: Path) -> None:
    """``max_depth: 2`` takes `{"a": [1]}` and refuses `{"a": [[1]]}`; strings don't count."""
    content = b'{"a": [1]}\n{"a": ["[[{{"]}\n{"a": [[1]]}\n'
    batch = _one(tmp_path, "t.jsonl", content, max_depth=2)
    assert batch.frame.get_column("a").to_list() == ["[1]", '["[[{{"]']
    assert [(u.position, u.message) for u in batch.unreadable] == [
        ("t.jsonl:3", _DEEP.format(limit=2, column=8))
    ]


def test_nesting_polars_reads_slowly_goes_line_by_line(tmp_path: Path) -> None:
    """Lines nested 16 deep (Polars: 18 s and 580 MB for 1.7 MB) are read line by line, fast."""
    line = b'{"a":' + b"[" * 15 + b"1" + b"]" * 15 + b"}\n"
    started = time.monotonic()
    batch = _one(tmp_path, "t.jsonl", line * 20_000, batch_size=20_000)
    assert time.monotonic() - started < 10
    assert batch.frame.get_column("a").unique().to_list() == ["[" * 15 + "1" + "]" * 15]


def test_form_feed_in_a_line_is_unreadable(tmp_path: Path) -> None:
    """A form feed or vertical tab outside strings is not JSON whitespace, even where Polars
    would take it; inside a string (escaped) it is fine."""
    content = b'{"a":\x0c1}\n{"a":"\\f"}\n{"a":\x0b2}\n'
    batch = _one(tmp_path, "t.jsonl", content)
    assert batch.frame.get_column("a").to_list() == ["\x0c"]
    assert [(u.position, u.message) for u in batch.unreadable] == [
        ("t.jsonl:1", "invalid JSON: a form feed is not JSON whitespace (column 6)"),
        ("t.jsonl:3", "invalid JSON: a vertical tab is not JSON whitespace (column 6)"),
    ]


def test_line_with_no_fields_is_unreadable(tmp_path: Path) -> None:
    """`{}` is a record with no fields: unreadable, with its line; not a row without columns."""
    batch = _one(tmp_path, "t.jsonl", b'{}\n{"a": {}}\n{"a": {"b": 1}}\n')
    assert batch.frame.rows() == [(1,)]
    assert batch.unreadable == [
        Unreadable("t.jsonl:1", "{}", "the record has no fields"),
        Unreadable("t.jsonl:2", '{"a": {}}', "the record has no fields"),
    ]


def test_declared_json_field_is_kept_whole(tmp_path: Path) -> None:
    """A top-level field declared `type: json` stays one JSON text on the line-by-line road."""
    (tmp_path / "t.jsonl").write_bytes(b'{"p": {"a": 1}, "q": {"b": 2}}\n{"p": [1]}\n')
    context = SourceContext("things", 100, tmp_path, json_columns=frozenset({"p"}))
    [batch] = list(FileSource(FileOptions(type="file", path="t.jsonl"), context).batches())
    assert batch.frame.to_dicts() == [{"q__b": 2, "p": '{"a":1}'}, {"q__b": None, "p": "[1]"}]


def test_positions_of_a_polars_read_chunk_are_spelled_when_asked() -> None:
    """A chunk Polars reads keeps line numbers, not strings; each reads as `name:LINE`, blank
    lines skipped, and a slice keeps its lines."""
    batch = _read_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    assert isinstance(batch.positions, LinePositions)
    assert batch.positions == ["t:1", "t:3", "t:4"]
    assert batch.positions[1] == "t:3"
    assert batch.positions[1:] == ["t:3", "t:4"]
    assert len(batch.positions) == batch.frame.height


@given(
    st.lists(
        st.one_of(
            st.text(max_size=5),
            st.integers(),
            st.decimals(allow_nan=False, allow_infinity=False),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_text_column_holds_each_number_as_written(values: list[Any]) -> None:
    """Whatever mix of strings and numbers a column holds, a number that lands in a text
    column reads back as the text it had in the file (an exponent as the same number)."""
    lines = [f'{{"a": {json.dumps(v) if isinstance(v, str) else str(v)}}}' for v in values]
    batch = _read_bytes("".join(line + "\n" for line in lines).encode())
    read = batch.frame.get_column("a").to_list()
    if batch.frame.schema["a"] != pl.String:
        return  # all numbers: an exact numeric column, covered elsewhere
    for value, got in zip(values, read, strict=True):
        if isinstance(value, str) or "e" not in str(value).lower():
            assert got == (value if isinstance(value, str) else str(value)), (values, read)
        else:  # an exponent is spelled the one way Decimal does (1e+16 as 1E+16)
            assert Decimal(got) == Decimal(str(value)), (values, read)


# A chunk read with the schema of the chunk before it (ladle.sources.json_typed).


def _typed(first: bytes, second: bytes) -> pl.DataFrame | None:
    """``second`` read with the schema Polars inferred for ``first``; None: not taken."""
    memo = SchemaMemo()
    memo.remember(pl.read_ndjson(first, infer_schema_length=None))
    return memo.read(second, second.count(b"\n"))


def test_a_typed_read_is_taken_for_a_chunk_of_the_same_shape() -> None:
    first = b'{"id":1,"s":"a","f":1.5,"b":true,"l":["x"]}\n'
    second = b'{"id":2,"s":"b:\\"c\\":","f":2.5,"b":null}\n{"f":3.5,"id":3,"s":"c","l":[]}\n'
    frame = _typed(first, second)
    assert frame is not None
    assert frame.to_dicts() == [
        {"id": 2, "s": 'b:"c":', "f": 2.5, "b": None, "l": None},
        {"id": 3, "s": "c", "f": 3.5, "b": None, "l": []},
    ]


@pytest.mark.parametrize(
    "second",
    [
        b'{"id":2,"new":"x"}\n',  # a key the schema does not name
        b'{"id":2,"new":{"deep":1}}\n',
        b'{"id":2, "new" : 5}\n',  # spaces around the colon
        b'{"id":2,"new\\\\":5}\n',  # a key ending in an escaped backslash
        b'{"id":2.5}\n',  # a value that does not fit
        b'{"id":"2"}\n',
    ],
)
def test_a_typed_read_that_would_lose_or_change_something_is_not_taken(second: bytes) -> None:
    assert _typed(b'{"id":1}\n', second) is None


def test_a_repeated_key_keeps_its_first_value_on_a_typed_read_too() -> None:
    frame = _typed(b'{"id":1}\n', b'{"id":2,"id":3}\n')
    assert frame is not None
    assert frame.to_dicts() == [{"id": 2}]


def test_a_key_new_in_a_later_chunk_is_kept(tmp_path: Path) -> None:
    """Batches of one line: the third line's new field reaches its batch."""
    batches = _read_bytes_batches(b'{"id":1}\n{"id":2}\n{"id":3,"extra":"x"}\n', 1)
    assert batches[-1].frame.to_dicts() == [{"id": 3, "extra": "x"}]


_FLAT_KIND = st.sampled_from(
    [
        _INT,
        _FLOAT,
        st.booleans(),
        _TEXT,
        st.lists(_INT, max_size=3),
        st.lists(_TEXT, max_size=3),
        _INT | _TEXT,
        st.booleans() | _TEXT,
        _INT | _FLOAT,
    ]
)


def _mostly(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``values``, null one time in ten."""
    return st.integers(0, 9).flatmap(lambda i: st.none() if i == 0 else values)


@st.composite
def _two_chunks(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two chunks of one shape (fields of flat kinds), the second sometimes with a field
    of any kind the first never had: what a typed read meets."""
    kinds = draw(st.dictionaries(_FIELD_NAMES, _FLAT_KIND, min_size=1, max_size=4))
    size = draw(st.integers(min_value=1, max_value=5))

    def chunk(fields: dict[str, st.SearchStrategy[Any]]) -> list[dict[str, Any]]:
        return [
            {key: draw(_mostly(fields[key])) for key in draw(st.permutations(sorted(fields)))}
            for _ in range(size)
        ]

    first = chunk(kinds)
    extra = draw(st.dictionaries(_FIELD_NAMES, _KIND, max_size=1))
    return first, chunk({**kinds, **extra})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_two_chunks() | st.tuples(_batches_of_records(), _batches_of_records()))
def test_a_chunk_after_another_reads_as_it_does_alone(
    chunks: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """Whether or not the typed read is taken, the second chunk holds the fields, types,
    values and positions it holds read line by line."""
    first, second = chunks
    size = min(len(first), len(second))
    first, second = first[:size], second[:size]
    batches = _read_bytes_batches(_jsonl(first) + _jsonl(second), size)
    alone = _read_bytes(_jsonl(second) + b"{not json\n")
    if not alone.frame.height:
        return  # no batch: nothing was read the fast way
    later = batches[-1]
    shift = [replace(u, position=_shifted(u.position, size)) for u in alone.unreadable[:-1]]
    assert later.unreadable == shift
    assert list(later.positions) == [_shifted(p, size) for p in alone.positions]
    assert dict(sorted(later.frame.schema.items())) == dict(sorted(alone.frame.schema.items()))
    assert _comparable(later.frame) == _comparable(alone.frame)


def _shifted(position: str, lines: int) -> str:
    name, line = position.rsplit(":", 1)
    return f"{name}:{int(line) + lines}"


def test_number_like_text_keeps_a_chunk_on_the_fast_road() -> None:
    """Hex ids that read like long numbers ("4e12345678901234") are text, not numbers a
    double could round: the chunk is still read by Polars (stream entries were all read
    line by line for this)."""
    content = b'{"id":"4e12345678901234","score":1.5}\n{"id":"1234567890123456","score":2.25}\n'
    batch = _read_bytes(content)
    assert isinstance(batch.positions, LinePositions)
    assert batch.frame.to_dicts() == [
        {"id": "4e12345678901234", "score": 1.5},
        {"id": "1234567890123456", "score": 2.25},
    ]


def test_a_long_number_value_still_sends_its_chunk_line_by_line() -> None:
    content = b'{"id":"x","score":1.5}\n{"id":"y","score":0.10000000000000000555}\n'
    batch = _read_bytes(content)
    assert not isinstance(batch.positions, LinePositions)
    assert batch.frame.get_column("score").to_list()[1] == Decimal("0.10000000000000000555")
