"""Write docs/reference.md from ladle's models: ``python docs/gen_reference.py``.

tests/test_docs.py renders the same text in memory and fails when the committed file differs,
so run this after changing a model, a field's docstring, a step or a command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ladle.docs_reference import render, undocumented

TARGET = Path(__file__).with_name("reference.md")


def main() -> int:
    """Write the reference; exit 1 (after writing) if a field has no docstring."""
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
    missing = undocumented()
    for name in missing:
        print(f"no docstring: {name}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
