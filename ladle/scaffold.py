"""``ladle init``: a pipeline file and sample data that run as they are.

The sample shows the parts a new user needs first: declared columns, a rename, a
derived column, validation, dedupe and a merge on a primary key. Two of its records
are bad on purpose, so the first run shows the quarantine at work.
"""

from __future__ import annotations

import json
from pathlib import Path

from ladle.errors import LadleError
from ladle.schema import normalize_name

_PIPELINE = """\
# A ladle pipeline. Every key: docs/reference.md
pipeline: {name}
destination: ${{LADLE_DESTINATION:-duckdb:///{name}.duckdb}}

resources:
  orders:
    source: {{type: file, path: data/orders.jsonl}}
    primary_key: [order_id]
    write: merge
    columns:
      order_id: {{type: bigint, required: true}}
      status: {{type: text, in: [new, paid, shipped, cancelled]}}
      amount: {{type: "decimal(12,2)", min: 0}}
      ordered_at: {{type: timestamptz}}
    steps:
      - rename: {{orderId: order_id}}
      - derive: {{is_weekend: "isodow(ordered_at) >= 6"}}
      - dedupe: {{keep: last, order_by: ordered_at}}
"""

_ORDERS = [
    {"orderId": 1, "status": "new", "amount": "19.90", "ordered_at": "2026-03-06T09:15:00Z"},
    {"orderId": 2, "status": "paid", "amount": 5, "ordered_at": "2026-03-07T18:02:11+01:00"},
    {"orderId": 3, "status": "shipped", "amount": "120.00", "ordered_at": "2026-03-08 12:00:00"},
    {"orderId": 2, "status": "shipped", "amount": 5, "ordered_at": "2026-03-09T08:00:00+01:00"},
    {"orderId": 4, "status": "lost", "amount": "7.50", "ordered_at": "2026-03-09T10:00:00Z"},
    {"orderId": 5, "status": "new", "amount": "-3", "ordered_at": "not a date"},
]


def scaffold(directory: Path) -> list[Path]:
    """Create ``directory`` with ``pipeline.yaml`` and ``data/orders.jsonl``; never overwrite."""
    pipeline = directory / "pipeline.yaml"
    data = directory / "data" / "orders.jsonl"
    for path in (pipeline, data):
        if path.exists():
            raise LadleError(f"{path} already exists; choose another name or remove it")
    data.parent.mkdir(parents=True, exist_ok=True)
    name = normalize_name(directory.resolve().name)
    pipeline.write_text(_PIPELINE.format(name=name), encoding="utf-8")
    lines = [json.dumps(order) for order in _ORDERS]
    lines.insert(3, '{"orderId": 6, "status": "new", "amount": 1')  # a truncated line
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [pipeline, data]
