"""PyYAML's errors, said as what is probably wrong in the pipeline file, with the line shown.

PyYAML reports where its parser gave up (``expected <block end>, but found '<block
mapping start>'``), which is often a line after the mistake: a key without its colon is
only noticed at the next line. :func:`explain` names the line to look at and what to
look for there (indentation, a tab, a missing colon, an unclosed bracket or quote, a
``: `` inside a value), and shows it with a caret under the place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

_CONTEXT_LINES = 1
"""Lines shown before the one the message is about."""


@dataclass(frozen=True)
class YamlProblem:
    """What is probably wrong, on which line (1-based) and column (0-based)."""

    line: int | None
    column: int
    hint: str


def explain(error: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The line to blame and a message: the likely mistake, then the line with a caret."""
    lines = text.splitlines()
    problem = _diagnose(error, lines)
    if problem.line is None:
        return None, f"invalid YAML: {problem.hint}"
    return problem.line, f"invalid YAML: {problem.hint}\n{_excerpt(lines, problem)}"


def _diagnose(error: yaml.YAMLError, lines: list[str]) -> YamlProblem:
    mark = getattr(error, "problem_mark", None)
    raw = str(getattr(error, "problem", None) or error)
    if mark is None:
        return YamlProblem(None, 0, raw)
    found = _by_problem(error, raw, lines)
    return found or YamlProblem(mark.line + 1, mark.column, f"{raw} (line {mark.line + 1})")


def _by_problem(error: yaml.YAMLError, raw: str, lines: list[str]) -> YamlProblem | None:
    """The likely mistake behind one of the errors PyYAML gives most often; None if unknown."""
    line, column = error.problem_mark.line, error.problem_mark.column  # type: ignore[attr-defined]
    context_mark: yaml.Mark | None = getattr(error, "context_mark", None)
    context = getattr(error, "context", None) or ""
    if "'\\t'" in raw:
        return YamlProblem(
            line + 1, column, f"line {line + 1} is indented with a tab; indent with spaces only"
        )
    if raw.startswith("expected <block end>"):
        return _indentation(line, column, context_mark, lines)
    if raw == "mapping values are not allowed here":
        return _colon(line, column, lines)
    if raw.startswith(("expected ',' or '}'", "expected ',' or ']'")) and context_mark:
        return _flow(raw, line, column, context_mark)
    if "quoted scalar" in context and context_mark is not None:
        quote = lines[context_mark.line][context_mark.column] if lines else '"'
        return YamlProblem(
            context_mark.line + 1,
            context_mark.column,
            f"the quote {quote} opened on line {context_mark.line + 1} is never closed; "
            "close it on the same line",
        )
    return None


def _indentation(
    line: int, column: int, context_mark: yaml.Mark | None, lines: list[str]
) -> YamlProblem:
    """A line indented deeper, or less deep, than the keys of the block it is in."""
    above = _previous(lines, line)
    levels: list[tuple[int, int]] = []
    if above is not None:
        levels.append((above + 1, _indent(lines[above])))
    if context_mark is not None and context_mark.line != above:
        levels.append((context_mark.line + 1, context_mark.column))
    shown = " and ".join(f"line {n} has {_spaces(i)}" for n, i in levels)
    detail = f": it has {_spaces(column)}" + (f", {shown}" if shown else "")
    return YamlProblem(
        line + 1,
        column,
        f"check the indentation of line {line + 1}{detail}; the keys of one mapping "
        "(and the items of one list) start in the same column",
    )


def _colon(line: int, column: int, lines: list[str]) -> YamlProblem:
    """``mapping values are not allowed here``: a ``: `` in a plain value, a key without
    its colon on the line before, or a key nested under one that already has a value."""
    text = lines[line] if line < len(lines) else ""
    first = re.search(r":(\s|$)", text)
    if first is not None and first.start() < column:
        return YamlProblem(
            line + 1,
            column,
            f"line {line + 1} has a second ': ' in a value; put the value in quotes, "
            'e.g. key: "a: b"',
        )
    above = _previous(lines, line)
    if above is None:
        return YamlProblem(line + 1, column, f"check the indentation of line {line + 1}")
    before = _without_comment(lines[above]).rstrip()
    if re.search(r":(\s|$)", before) is None and not before.lstrip().startswith("-"):
        return YamlProblem(
            above + 1,
            len(before),
            f"line {above + 1} has no ':' after its key (write `{before.strip()}:`), so "
            f"line {line + 1} cannot be nested under it",
        )
    return YamlProblem(
        line + 1,
        _indent(text),
        f"check the indentation of line {line + 1}: it is indented under line {above + 1}, "
        f"whose key already has a value; indent it as line {above + 1}, or move that value "
        "onto lines of its own",
    )


def _flow(raw: str, line: int, column: int, context_mark: yaml.Mark) -> YamlProblem:
    """A ``{`` or ``[`` not closed, or a ``: `` inside one: both stop the flow collection."""
    bracket, closing = ("{", "}") if "'}'" in raw else ("[", "]")
    opened = context_mark.line
    if line > opened:
        return YamlProblem(
            opened + 1,
            context_mark.column,
            f"the '{bracket}' opened on line {opened + 1} is not closed: add '{closing}' "
            f"at the end of line {opened + 1}",
        )
    return YamlProblem(
        line + 1,
        column,
        f"line {line + 1} has a ':' inside {bracket}…{closing} where a ',' or '{closing}' "
        "should be; put a value that holds ': ' in quotes",
    )


def _excerpt(lines: list[str], problem: YamlProblem) -> str:
    """The problem's line and the one before it, numbered, with a caret under the column."""
    assert problem.line is not None  # noqa: S101 - only called with a line
    index = min(problem.line, len(lines)) - 1
    if index < 0:
        return ""
    width = len(str(index + 1))
    shown = [
        f"  {n + 1:>{width}} | {lines[n]}" for n in range(max(index - _CONTEXT_LINES, 0), index + 1)
    ]
    caret = " " * min(problem.column, len(lines[index]))
    shown.append(f"  {'':>{width}} | {caret}^")
    return "\n".join(shown)


def _previous(lines: list[str], line: int) -> int | None:
    """The index of the last line before ``line`` that holds more than a comment."""
    for index in range(min(line, len(lines)) - 1, -1, -1):
        if _without_comment(lines[index]).strip():
            return index
    return None


def _without_comment(text: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", text)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _spaces(count: int) -> str:
    return f"{count} space{'' if count == 1 else 's'}"
