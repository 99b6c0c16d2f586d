"""The final NUL check, and quarantine JSON that PostgreSQL's jsonb accepts."""

from __future__ import annotations

import json

import polars as pl

from ladle.batch import ROW
from ladle.quarantine import storable_json
from ladle.steps.nul import JSON_MESSAGE, TEXT_MESSAGE, NulCheck


def test_rows_with_nul_are_rejected_per_column() -> None:
    """Text with NUL, and a \\u0000 escape in a JSON or nested column, are rejected."""
    frame = pl.DataFrame(
        {
            ROW: [0, 1, 2, 3],
            "note": ["a\x00", "ok", None, "ok"],
            "doc": ["[1]", '["\\u0000"]', '["\\\\u0000"]', None],
            "nested": [None, None, None, [{"k": "x\x00"}]],
        }
    )
    result = NulCheck(["doc"])(frame)
    assert result.frame.get_column(ROW).to_list() == [2]
    assert result.rejects.select(ROW, "field", "message").rows() == [
        (0, "note", TEXT_MESSAGE),
        (1, "doc", JSON_MESSAGE),
        (3, "nested", JSON_MESSAGE),
    ]


def test_storable_json_writes_nul_as_text() -> None:
    """NUL becomes the six characters \\u0000; an escaped backslash stays as it was."""
    assert json.loads(storable_json({"k\x00": "a\x00b"})) == {"k\\u0000": "a\\u0000b"}
    assert json.loads(storable_json("\\u0000")) == "\\u0000"
    assert json.loads(storable_json("\\\x00")) == "\\\\u0000"
