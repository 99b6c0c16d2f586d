"""Redaction: the one function that hides secrets in any text ladle shows or stores.

Every URL, error message, log event, ledger error, page and response body passes
through :func:`mask` before it leaves ladle. It imports nothing of ladle, so that any
module (even ``config``) can use it. It errs towards hiding: an ``@`` in a URL's path
may hide a little more than the password, never less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

HIDDEN = "***"
"""What a secret is replaced with."""

SECRET_KEYS = (
    "password",
    "sslpassword",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "refresh_token",
    "auth_token",
    "api_key",
    "apikey",
    "secret",
    "client_secret",
    "secret_key",
)
"""Query parameters (``?password=``) and conninfo keys (``password=``) whose value is hidden."""

# scheme://[user]:password@host — the user may be empty (redis://:pw@host); the password
# runs to the *last* @ of the word, so that one holding @, : or / is hidden whole.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:\s/]*:)[^\s]+(?=@)")
_KEYS = "(?:" + "|".join(SECRET_KEYS) + ")"
# A query's ?password=…& (the value ends at & or #), and libpq's conninfo
# password=secret or password='it\\'s' (the value ends at whitespace).
_QUERY = re.compile(rf"(?P<head>(?<=[?&;]){_KEYS}=)[^\s&#]+", re.IGNORECASE)
_CONNINFO = re.compile(
    rf"(?P<head>(?<![\w.\-?&;]){_KEYS}\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE
)
# Authorization: Basic dTpwdw== / Bearer eyJ… (token68 of RFC 7235). A short lowercase
# word is prose ("Basic authentication"), not a credential.
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Basic|Bearer)\s+)(?P<token>[A-Za-z0-9\-._~+/]{4,}=*)")
_PROSE = re.compile(r"[a-z]{4,15}")


def mask(text: str, *, known: Iterable[str] = ()) -> str:
    """``text`` with every password, token and secret replaced by ``***``.

    Hides a URL's password (any scheme, empty user, unencoded ``@ : /`` in it), secret
    query parameters and conninfo keys (case-insensitive), Basic and Bearer credentials,
    and each of the ``known`` secret values, raw or percent-encoded.
    """
    for secret in known:
        if secret:
            text = text.replace(secret, HIDDEN).replace(quote(secret, safe=""), HIDDEN)
    if "://" in text:
        text = _USERINFO.sub(rf"\g<head>{HIDDEN}", text)
    if "=" in text:
        text = _QUERY.sub(rf"\g<head>{HIDDEN}", text)
        text = _CONNINFO.sub(rf"\g<head>{HIDDEN}", text)
    return _AUTH_HEADER.sub(_credentials, text)


def _credentials(match: re.Match[str]) -> str:
    if _PROSE.fullmatch(match["token"]):
        return match[0]
    return match["head"] + HIDDEN


def is_secret_key(key: str) -> bool:
    """Whether a setting or log key names a secret (``password``, ``api_key``…)."""
    return key.lower() in SECRET_KEYS
