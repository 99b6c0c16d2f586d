"""What a file holds, told from its first bytes before any record is read.

A file that is not what its name says (an HTML page saved as ``tickets.csv`` by a
download that was redirected, a zip archive, a PDF, binary data) would otherwise load
as a table of nonsense, or as nothing; :func:`refusal` names what it looks like instead.
:func:`detect_encoding` serves ``encoding: auto``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE = 1 << 16
"""Bytes of content read to detect an encoding (its first 8 KiB tell the kind of file)."""
HEAD = 1 << 13
_SNIPPET = 40

_LABELS = {"csv": "CSV", "json": "JSON", "jsonl": "JSON Lines", "parquet": "Parquet"}
_EXTRACT = (
    "extract it and point `path:` at the files inside (ladle decompresses gzip, bz2, xz and "
    "zstd itself)"
)
_EXPORT = "export it as CSV"
_CHECK = "check where the file came from"
_HTML = re.compile(rb"<(!doctype\s+html|html|head|body)[\s>/]")
_HTML_PART = re.compile(rb"<(meta|title|script|link|div)[\s>/]")
"""Tags that start an HTML fragment; in line-based formats, only with a closing tag after."""
_CLOSING = re.compile(rb"</(title|script|head|body|html|div)>")
_TAG = re.compile(rb"<[a-z_][\w:.-]*[\s>/]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
"""C0 controls that text does not hold (tab, line breaks, form feed and escape do occur)."""
_EQUALS = 0.05
"""charset-normalizer's "chaos" (share of odd characters) within which two readings tie."""
_BINARY_SHARE = 0.05
_BINARY_LEAST = 4


@dataclass(frozen=True)
class _Magic:
    """A kind of file ladle does not read, by the bytes it starts with."""

    test: Callable[[bytes], bool]
    what: str
    advice: str


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(prefixes)


def _zip(head: bytes) -> bool:
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"))


_MAGIC = (
    _Magic(lambda h: _zip(h) and b"xl/" in h, "an Excel workbook (xlsx)", _EXPORT),
    _Magic(_zip, "a zip archive", _EXTRACT),
    _Magic(_starts(b"7z\xbc\xaf\x27\x1c"), "a 7z archive", _EXTRACT),
    _Magic(_starts(b"Rar!\x1a\x07"), "a RAR archive", _EXTRACT),
    _Magic(lambda h: h[257:262] == b"ustar", "a tar archive", _EXTRACT),
    _Magic(_starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"), "an Office document (xls, doc)", _EXPORT),
    _Magic(_starts(b"%PDF-"), "a PDF document", _CHECK),
    _Magic(_starts(b"\x89PNG\r\n\x1a\n"), "a PNG image", _CHECK),
    _Magic(_starts(b"\xff\xd8\xff"), "a JPEG image", _CHECK),
    _Magic(_starts(b"GIF87a", b"GIF89a"), "a GIF image", _CHECK),
    _Magic(lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "a WebP image", _CHECK),
    _Magic(_starts(b"II*\x00", b"MM\x00*"), "a TIFF image", _CHECK),
    _Magic(_starts(b"SQLite format 3\x00"), "an SQLite database", _CHECK),
    _Magic(_starts(b"PAR1"), "a Parquet file", "set `format: parquet`"),
)


def refusal(head: bytes, fmt: str, *, encoding: str) -> str | None:
    """Why a file whose content starts with ``head`` cannot be read as ``fmt``; None if it may.

    ``head`` is the content (decompressed), not the file on disk. For Parquet only the kinds
    with a signature are named (the Parquet reader has its own error for the rest).
    """
    label = _LABELS[fmt]
    for magic in _MAGIC:
        if magic.test(head) and not (fmt == "parquet" and head.startswith(b"PAR1")):
            return f"looks like {magic.what}, not {label}; {magic.advice}"
    if fmt == "parquet":
        return _markup(head, strict=True, label=label)
    # One line of CSV or JSON Lines may be anything (it is quarantined); a JSON document
    # that starts with "<" is never JSON.
    return _markup(head, strict=fmt != "json", label=label) or _binary(head, label, encoding)


def bom_encoding(head: bytes) -> str | None:
    """The Unicode encoding a byte order mark at the start of ``head`` names, if any."""
    return next((name for bom, name in _BOMS if head.startswith(bom)), None)


def detect_encoding(sample: bytes, *, whole: bool) -> str | None:
    """The encoding of text that starts with ``sample`` (``whole``: the sample is the file).

    A byte order mark decides; then text that is valid UTF-8 (ASCII included) is UTF-8;
    otherwise charset-normalizer chooses, and among the single-byte encodings it finds
    equally good, cp1252 (what Windows and Excel write) wins. None: no encoding fits.
    """
    if (named := bom_encoding(sample)) is not None:
        return named
    if not whole:  # a multi-byte character may be cut at the end: end at a line break
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        return None
    best = matches[0]
    near = any(
        codecs.lookup(match.encoding).name == "cp1252" and match.chaos <= best.chaos + _EQUALS
        for match in matches
    )
    if near or _same_text(sample, "cp1252", best.encoding):
        return "cp1252"
    return codecs.lookup(best.encoding).name


def _same_text(sample: bytes, one: str, other: str) -> bool:
    try:
        return sample.decode(one) == sample.decode(other)
    except UnicodeDecodeError:
        return False


def _markup(head: bytes, *, strict: bool, label: str) -> str | None:
    """An HTML page or an XML document; ``strict``: only by an unmistakable start (a header
    ``<id>,<name>`` is CSV, whose angle brackets are data)."""
    for bom, _ in _BOMS:
        head = head.removeprefix(bom)
    text = head.lstrip()
    lower = text.lower()
    if not lower.startswith(b"<"):
        return None
    shown = _snippet(text)
    xml_start = lower.startswith((b"<?xml", b"<!doctype"))
    fragment = _HTML_PART.match(lower) and (not strict or _CLOSING.search(lower))
    if (
        _HTML.match(lower)
        or fragment
        or ((xml_start or lower.startswith(b"<!--")) and b"<html" in lower)
    ):
        return (
            f"looks like an HTML page, not {label} (it starts with {shown}); a download that "
            "was redirected to a login or error page saves one: fetch the file again"
        )
    lines = [line for line in lower.splitlines() if line.strip()]
    generic = _TAG.match(lower) is not None and (
        not strict or (len(lines) > 1 and lines[1].lstrip().startswith(b"<"))
    )
    if xml_start or generic:
        return (
            f"looks like an XML document, not {label} (it starts with {shown}); ladle reads "
            "CSV, JSON, JSON Lines and Parquet"
        )
    return None


def _binary(head: bytes, label: str, encoding: str) -> str | None:
    """Binary data: many control bytes (NUL above all) where text has next to none."""
    if encoding.startswith(("utf-16", "utf-32")) or bom_encoding(head) in ("utf-16", "utf-32"):
        return None
    controls = len(_CONTROL.findall(head))
    if controls < max(_BINARY_LEAST, len(head) * _BINARY_SHARE):
        return None
    evens, odds = head[0::2], head[1::2]
    for half, order in ((odds, "le"), (evens, "be")):
        if half and half.count(0) > len(half) * 0.9:
            return (
                f"looks like UTF-16 text without a byte order mark, not {label}; "
                f"set `encoding: utf-16-{order}`"
            )
    return (
        f"looks like binary data, not {label} ({controls} of its first {len(head)} bytes are "
        f"control characters such as NUL); {_CHECK}"
    )


def _snippet(text: bytes) -> str:
    line = text.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    return repr(line if len(line) <= _SNIPPET else line[:_SNIPPET] + "...")
