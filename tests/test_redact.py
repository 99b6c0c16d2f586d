"""The one masking function: no password form survives it, the rest of the text does."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ladle.redact import SECRET_KEYS, mask

SCHEMES = ("postgresql", "postgres", "redis", "rediss", "mysql+pymysql", "http", "https", "amqp")
# Anything but whitespace: @ : / % ' # ? & = all belong in a password.
passwords = st.text(
    st.characters(codec="utf-8", exclude_categories=("Z", "C")), min_size=4, max_size=24
)
users = st.from_regex(r"[a-z0-9_.%-]{0,8}", fullmatch=True)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?(:[0-9]{2,5})?", fullmatch=True)
paths = st.from_regex(r"(/[a-z0-9_]{0,8}(\?sslmode=require&application_name=x)?)?", fullmatch=True)
around = st.sampled_from([("", ""), ("error: ", " failed"), ("'", "'"), ('url "', '": refused')])


@given(
    scheme=st.sampled_from(SCHEMES),
    user=users,
    password=passwords,
    host=hosts,
    path=paths,
    encode=st.booleans(),
    text=around,
)
def test_url_password_never_survives(
    *,
    scheme: str,
    user: str,
    password: str,
    host: str,
    path: str,
    encode: bool,
    text: tuple[str, str],
) -> None:
    """A URL's password (raw or percent-encoded, any user) is hidden; the rest is intact."""
    written = quote(password, safe="") if encode else password
    before, after = text
    expected = f"{before}{scheme}://{user}:***@{host}{path}{after}"
    assume(password not in expected and written not in expected)
    assert mask(f"{before}{scheme}://{user}:{written}@{host}{path}{after}") == expected


@given(
    key=st.sampled_from(SECRET_KEYS).flatmap(lambda k: st.sampled_from([k, k.upper(), k.title()])),
    password=passwords,
    host=hosts,
    first=st.booleans(),
)
def test_query_secret_never_survives(*, key: str, password: str, host: str, first: bool) -> None:
    """A secret query parameter's value is hidden whatever its case; other parameters stay."""
    value = quote(password, safe="")
    query = f"{key}=***&sslmode=require" if first else f"sslmode=require&{key}=***"
    expected = f"postgresql://app@{host}/db?{query}"
    assume(password not in expected and value not in expected)
    assert mask(expected.replace("***", value)) == expected


@given(password=passwords.filter(lambda p: "'" not in p and "\\" not in p), quoted=st.booleans())
def test_conninfo_password_never_survives(*, password: str, quoted: bool) -> None:
    """libpq's key=value conninfo hides ``password=``, quoted or not."""
    assume(" " not in password)
    written = f"'{password}'" if quoted else password
    expected = "host=db port=5432 user=app password=*** dbname=shop"
    assume(password not in expected)
    assert mask(expected.replace("***", written)) == expected


@given(user=users, password=passwords)
def test_basic_credentials_never_survive(*, user: str, password: str) -> None:
    """An Authorization header's Basic credentials are hidden (they decode to the password)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert mask(f"Authorization: Basic {token}") == "Authorization: Basic ***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@127.0.0.1:6390/0", "redis://:***@127.0.0.1:6390/0"),
        ("postgresql://:hunter2@db/x", "postgresql://:***@db/x"),
        ("postgresql://app:hunter2@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://u:p@ss:w/rd@db/x?Password=y", "postgresql://u:***@db/x?Password=***"),
        ("host=db password='it\\'s' user=u", "host=db password=*** user=u"),
        ("duckdb:///x.duckdb", "duckdb:///x.duckdb"),
        ("http://api:8080/v1/items?page=2", "http://api:8080/v1/items?page=2"),
        ("fell back to Basic authentication", "fell back to Basic authentication"),
    ],
)
def test_examples(text: str, expected: str) -> None:
    """Each form, and text that holds no secret, as it is shown."""
    assert mask(text) == expected


def test_known_secrets_hidden_raw_and_encoded() -> None:
    """A secret known by value is hidden wherever it appears, also percent-encoded."""
    text = "password for 'p@ss w' rejected (p%40ss%20w)"
    assert mask(text, known=["p@ss w"]) == "password for '***' rejected (***)"
