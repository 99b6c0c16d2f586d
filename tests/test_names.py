"""Name normalization: snake_case, transliteration, and the 63-byte limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladle.pipeline import ColumnNames
from ladle.schema import MAX_NAME_BYTES, fit_name, normalize_name, snake_case


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TKT-Ticket ID", "tkt_ticket_id"),
        ("createdAt", "created_at"),
        ("parent__Child Name", "parent__child_name"),
        ("Unità", "unita"),
        ("città", "citta"),
        ("Straße", "strasse"),
        ("Ærø Łódź", "aero_lodz"),
        ("ﬁle", "file"),
        ("x\u0301y", "xy"),
        ("Ⅻ m²", "xii_m2"),
        ("名前", "名前"),
        ("Имя Фамилия", "имя_фамилия"),
        ("2024 total", "_2024_total"),
        ("", "column_e3b0c4"),
        ("#", "column_334359"),
        ("foo\u0000bar", "foo_bar"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    """Accents go, letters of other scripts stay, a name with nothing usable is generated."""
    assert normalize_name(name) == expected


def test_long_name_is_a_prefix_and_a_hash() -> None:
    """A name over 63 bytes keeps 56 bytes of itself, then ``_`` and six hex digits."""
    name = "numero_medio_annuo_di_addetti_delle_unita_locali_delle_imprese_attive"
    assert fit_name(name) == "numero_medio_annuo_di_addetti_delle_unita_locali_delle_i_a74c2f"
    assert fit_name(name[:63]) == name[:63]


def test_a_cut_never_splits_a_character() -> None:
    """Multi-byte characters are cut whole: the result is valid UTF-8 within the limit."""
    assert fit_name("名" * 30) == "名" * 18 + "_" + fit_name("名" * 30)[-6:]


@given(st.text())
def test_any_name_is_short_stable_and_free_of_nul(name: str) -> None:
    """Every name becomes a non-empty one of at most 63 bytes, without NUL, that
    normalizing again leaves as it is."""
    normalized = normalize_name(name)
    assert 0 < len(normalized.encode()) <= MAX_NAME_BYTES
    assert "\x00" not in normalized
    assert normalize_name(normalized) == normalized


@given(st.text(min_size=64), st.text(min_size=64))
def test_long_names_stay_apart(first: str, second: str) -> None:
    """Two different long names are shortened to two different names."""
    if snake_case(first) != snake_case(second):
        assert normalize_name(first) != normalize_name(second)


def test_column_names_are_fixed_across_batches() -> None:
    """A clash is numbered once; a later batch with only one of the two keeps its number."""
    notices: list[str] = []
    names = ColumnNames(notices)
    assert names(["a b", "a_b"]) == {"a b": "a_b", "a_b": "a_b_2"}
    assert names(["a_b"]) == {"a_b": "a_b_2"}
    assert names(["A-B", "a b"]) == {"A-B": "a_b_3", "a b": "a_b"}
    assert notices == [
        "column 2 'a_b' is stored as 'a_b_2' ('a_b' is the name of an earlier column)",
        "column 1 'A-B' is stored as 'a_b_3' ('a_b' is the name of an earlier column)",
    ]


def test_names_made_by_steps_are_fitted() -> None:
    """A column a step named with more than 63 bytes is renamed, with a notice."""
    names = ColumnNames()
    long = "x" * 70
    assert names.fit(["id", long]) == {long: fit_name(long)}
    assert names.notices == [
        f"column '{long}' is stored as '{fit_name(long)}' (names are at most 63 bytes)"
    ]
