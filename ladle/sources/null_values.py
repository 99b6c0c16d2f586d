"""``null_values``: text that means "no value" (``NA``, ``?``, ``N/A``) becomes null.

One list for the whole source (``null_values: [NA, "?"]``), or lists per column
(``null_values: {price: ["-"], "*": [NA]}``), where ``*`` is every column that has no
list of its own: a column's own list replaces ``*``'s, so ``{"*": [NA], country: []}``
keeps Namibia's country code. Only text values are compared, whole and exactly.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from ladle.batch import SourceBatch

NullValuesSpec = list[str] | dict[str, list[str]]
"""The ``null_values`` option as validated: a list, or lists by column name (``*``: others)."""

EVERY_COLUMN = "*"


class NullValues:
    """Set the listed text values to null in each batch: one ``when`` per text column."""

    def __init__(self, spec: NullValuesSpec | None) -> None:
        if isinstance(spec, dict):
            self._default = list(spec.get(EVERY_COLUMN, []))
            self._columns = {k: list(v) for k, v in spec.items() if k != EVERY_COLUMN}
        else:
            self._default = list(spec or [])
            self._columns = {}
        self._seen: set[str] = set()
        self._read = False

    def __call__(self, batch: SourceBatch) -> SourceBatch:
        """The batch with the listed values of its text columns as null."""
        if not self._default and not self._columns:
            return batch
        self._read = True
        exprs = []
        for column, dtype in batch.frame.schema.items():
            values = self._columns.get(column, self._default)
            if column in self._columns:
                self._seen.add(column)
            if values and isinstance(dtype, pl.String):
                col = pl.col(column)
                exprs.append(pl.when(col.is_in(values)).then(None).otherwise(col).alias(column))
        return replace(batch, frame=batch.frame.with_columns(exprs)) if exprs else batch

    def unused(self) -> list[str]:
        """Columns the option names that no batch had (a typo, or a renamed column)."""
        return sorted(set(self._columns) - self._seen) if self._read else []
