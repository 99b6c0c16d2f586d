"""The servicedesk example's generator and API server over real HTTP: what is served matches the
manifest, record for record, in full and incremental fetches, through ties, 401s and 503s."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.examples import EXAMPLES, load_example

EXAMPLE = EXAMPLES / "servicedesk"
TOKEN = "test-token"  # noqa: S105 - a token the test server is started with
SIZE = 200
SEED = 5
PAGE = 7  # small pages, so that groups of tied records straddle page boundaries
KEYS = {
    "tickets": ("ticket_id",),
    "comments": ("comment_id",),
    "timesheets": ("user", "date", "time_from", "ticket_id"),
}
Record = dict[str, Any]


generator = load_example("servicedesk", "generate")
server = load_example("servicedesk", "server")


def _write_round(data_dir: Path, round_number: int) -> dict[str, Any]:
    data, manifest = generator.generate(SIZE, SEED, round_number)
    generator.write(data_dir, data, manifest)
    return dict(manifest)


def _file(data_dir: Path, endpoint: str) -> list[Record]:
    records: list[Record] = json.loads((data_dir / f"{endpoint}.json").read_text())
    return records


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Round 1 of the example's data, small."""
    _write_round(tmp_path / "data", 1)
    return tmp_path / "data"


@pytest.fixture
def desk(data_dir: Path) -> Iterator[str]:
    """The API over ``data_dir`` on a free port; yields its base URL."""
    with server.ServiceDeskServer(data_dir, token=TOKEN) as running:
        yield str(running.url)


@pytest.fixture
def client(desk: str) -> Iterator[httpx.Client]:
    """An HTTP client with the right token, closed before the server stops."""
    with httpx.Client(base_url=desk, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


# ---------------------------------------------------------------- paging, as a client would


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _tickets(client: httpx.Client, query: dict[str, str]) -> list[Record]:
    """Follow ``Link: rel="next"`` until there is none."""
    records: list[Record] = []
    response = client.get("/api/tickets", params={**query, "per_page": PAGE})
    while True:
        assert response.status_code == 200, response.text
        records += response.json()["data"]
        if "next" not in response.links:
            return records
        response = client.get(response.links["next"]["url"])


def _comments(client: httpx.Client, query: dict[str, str]) -> list[Record]:
    """Follow ``meta.next_cursor`` until it is null; later requests send only the cursor."""
    body = _get(client, "/api/comments", {**query, "limit": PAGE})
    records: list[Record] = body["data"]
    while body["meta"]["next_cursor"] is not None:
        body = _get(client, "/api/comments", {"cursor": body["meta"]["next_cursor"], "limit": PAGE})
        records += body["data"]
    return records


def _timesheets(client: httpx.Client, query: dict[str, str]) -> list[Record]:
    """Move the offset on until a page is shorter than the limit."""
    records: list[Record] = []
    while True:
        params = {**query, "offset": len(records), "limit": PAGE}
        page = _get(client, "/api/timesheets", params)["records"]
        records += page
        if len(page) < PAGE:
            return records


def _fetch(client: httpx.Client, endpoint: str, since: str | None = None) -> list[Record]:
    query = {} if since is None else {"updated_since": since}
    fetchers = {"tickets": _tickets, "comments": _comments, "timesheets": _timesheets}
    return fetchers[endpoint](client, query)


# ---------------------------------------------------------------- counting, independently


def _key(endpoint: str, record: Record) -> tuple[Any, ...]:
    return tuple(record[k] for k in KEYS[endpoint])


def _counts(endpoint: str, records: list[Record]) -> dict[str, int]:
    keys = {_key(endpoint, r) for r in records}
    distinct = {json.dumps(r, sort_keys=True) for r in records}
    return {
        "records": len(records),
        "keys": len(keys),
        "duplicates": len(records) - len(distinct),
        "corrections": len(distinct) - len(keys),
    }


def _multiset(records: list[Record]) -> Counter[str]:
    return Counter(json.dumps(r, sort_keys=True) for r in records)


def _tied_stamps(records: list[Record]) -> list[str]:
    counts = Counter(r["updated_at"] for r in records)
    return sorted(stamp for stamp, n in counts.items() if n > 1)


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """The same seed and size write byte-identical files in both rounds; another seed does not."""
    for name in ("a", "b"):
        generator.write(tmp_path / name / "1", *generator.generate(SIZE, SEED, 1))
        generator.write(tmp_path / name / "2", *generator.generate(SIZE, SEED, 2))
    generator.write(tmp_path / "other", *generator.generate(SIZE, SEED + 1, 1))
    files = ["tickets.json", "comments.json", "timesheets.json", "manifest.json"]
    for round_dir in ("1", "2"):
        for name in files:
            first = (tmp_path / "a" / round_dir / name).read_bytes()
            assert first == (tmp_path / "b" / round_dir / name).read_bytes()
    assert (tmp_path / "a/1/tickets.json").read_bytes() != (
        tmp_path / "other/tickets.json"
    ).read_bytes()


def test_corrections_are_later_than_what_they_correct(data_dir: Path) -> None:
    """Each timesheet key sent in several versions has exactly one latest ``updated_at``."""
    versions: dict[tuple[Any, ...], set[tuple[str, str]]] = {}
    for row in _file(data_dir, "timesheets"):
        content = json.dumps(row, sort_keys=True)
        versions.setdefault(_key("timesheets", row), set()).add((row["updated_at"], content))
    corrected = [v for v in versions.values() if len(v) > 1]
    assert corrected
    for rows in corrected:
        stamps = sorted(stamp for stamp, _ in rows)
        assert stamps[-1] > stamps[-2]


def test_cli_refuses_round_two_with_other_options(tmp_path: Path) -> None:
    """Round 2 over a round 1 written with another seed stops with what to do."""
    script, out = str(EXAMPLE / "generate.py"), tmp_path / "data"
    first = [sys.executable, script, "--out", str(out), "--tickets", "30", "--seed", "3"]
    done = subprocess.run(first, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == generator.generate(30, 3, 1)[1]
    again = [sys.executable, script, "--out", str(out), "--tickets", "30", "--round", "2"]
    refused = subprocess.run(again, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"generate.py: error: {out / 'manifest.json'} was written with --seed 3 --tickets 30; "
        "run round 2 with the same options"
    )


# ---------------------------------------------------------------- server


def test_full_fetch_serves_every_record_once(client: httpx.Client, data_dir: Path) -> None:
    """Paging through each endpoint returns each exported record once, as the manifest counts."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    for endpoint in KEYS:
        served, exported = _fetch(client, endpoint), _file(data_dir, endpoint)
        assert _multiset(served) == _multiset(exported)
        expected = manifest["full"][endpoint]
        assert _counts(endpoint, served) == {k: expected[k] for k in _counts(endpoint, [])}
        order = [(r["updated_at"], *_key(endpoint, r)) for r in served]
        assert order == sorted(order)
        assert served[-1]["updated_at"] == expected["max_updated_at"]
        if endpoint != "timesheets":  # the latest three tie, as after a bulk update
            assert served[-3]["updated_at"] == expected["max_updated_at"]
        tied = sum(n for n in Counter(r["updated_at"] for r in served).values() if n > 1)
        assert tied == expected["tied"] > 0
        boundaries = range(PAGE, len(served), PAGE)
        assert any(served[i - 1]["updated_at"] == served[i]["updated_at"] for i in boundaries)
    assert manifest["full"]["timesheets"]["duplicates"] > 0
    assert manifest["full"]["timesheets"]["corrections"] > 0


def test_updated_since_excludes_ties_at_the_boundary(client: httpx.Client, data_dir: Path) -> None:
    """``updated_since=T`` returns every record after T and none at T; one second earlier, all."""
    for endpoint in KEYS:
        exported = _file(data_dir, endpoint)
        stamps = _tied_stamps(exported)
        boundary = stamps[len(stamps) // 2]
        after = [r for r in exported if r["updated_at"] > boundary]
        assert _fetch(client, endpoint, boundary) == after
        earlier = datetime.fromisoformat(boundary) - timedelta(seconds=1)
        from_boundary = [r for r in exported if r["updated_at"] >= boundary]
        assert _fetch(client, endpoint, earlier.isoformat()) == from_boundary
        assert len(from_boundary) - len(after) > 1
    latest = _file(data_dir, "tickets")[-1]["updated_at"]
    assert _fetch(client, "tickets", latest) == []
    assert _fetch(client, "tickets", latest.replace("Z", "")) == []  # naive means UTC
    unencoded = client.get(f"/api/tickets?updated_since={latest.replace('Z', '+00:00')}")
    assert unencoded.json() == {"data": []}  # the '+' arrives as a space and is put back


def test_round_two_matches_the_incremental_manifest(tmp_path: Path) -> None:
    """After round 2 is written, fetching past round 1's maxima returns the manifest's numbers."""
    data_dir = tmp_path / "data"
    _write_round(data_dir, 1)
    with (
        server.ServiceDeskServer(data_dir, token=TOKEN) as desk,
        httpx.Client(base_url=desk.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        first = {endpoint: _fetch(client, endpoint) for endpoint in KEYS}
        manifest = _write_round(data_dir, 2)  # the running server sees the new files
        for endpoint, before in first.items():
            since = max(r["updated_at"] for r in before)
            window = _fetch(client, endpoint, since)
            old = {_key(endpoint, r) for r in before}
            keys = {_key(endpoint, r) for r in window}
            changes = {"new": len(keys - old), "changed": len(keys & old)}
            got = {"since": since, **_counts(endpoint, window), **changes}
            assert got == manifest["incremental"][endpoint]
            assert got["new"] > 0
            assert got["changed"] > 0
            served = _fetch(client, endpoint)
            assert _multiset(served) == _multiset(_file(data_dir, endpoint))
            full = manifest["full"][endpoint]
            assert _counts(endpoint, served) == {k: full[k] for k in _counts(endpoint, [])}


def test_token_is_required(desk: str) -> None:
    """A request without the bearer token, or with a wrong one, is a 401 with a JSON error."""
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
    ]
    with httpx.Client(base_url=desk) as client:
        for header in headers:
            response = client.get("/api/tickets", headers=header)
            assert response.status_code == 401
            assert response.json() == {"error": "missing or wrong bearer token"}
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="servicedesk"'


def test_fail_every_answers_503_with_retry_after(data_dir: Path) -> None:
    """With ``fail_every=3`` every third request is a 503 with ``Retry-After: 0``."""
    with (
        server.ServiceDeskServer(data_dir, token=TOKEN, fail_every=3) as desk,
        httpx.Client(base_url=desk.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        responses = [client.get("/api/timesheets", params={"limit": 1}) for _ in range(7)]
    assert [r.status_code for r in responses] == [200, 200, 503, 200, 200, 503, 200]
    assert responses[2].headers["Retry-After"] == "0"
    assert responses[2].json() == {"error": "service temporarily unavailable; retry"}


def test_bad_parameters_are_400_with_what_to_do(client: httpx.Client) -> None:
    """Parameters the API cannot use are answered with 400 and a message naming them."""
    cases = {
        "/api/tickets?per_page=0": "per_page must be an integer from 1 to 1000, not '0'",
        "/api/timesheets?offset=-1": "offset must be an integer from 0 to 1000000000, not '-1'",
        "/api/comments?updated_since=yesterday": (
            "updated_since='yesterday' is not an ISO 8601 timestamp (e.g. 2026-03-01T00:00:00Z)"
        ),
        "/api/comments?cursor=abc": (
            "cursor='abc' is not one this API issued; start again without it"
        ),
    }
    for path, message in cases.items():
        response = client.get(path)
        assert (response.status_code, response.json()) == (400, {"error": message})
    assert client.get("/api/users").json() == {
        "error": "no endpoint /api/users; try one of /api/tickets, /api/comments, /api/timesheets"
    }


def test_requests_are_logged_without_the_token(data_dir: Path) -> None:
    """One line per request (method, path with query, status); the token never appears."""
    log = io.StringIO()
    with (
        server.ServiceDeskServer(data_dir, token=TOKEN, log=log) as desk,
        httpx.Client(base_url=desk.url) as client,
    ):
        client.get("/api/tickets?per_page=1", headers={"Authorization": f"Bearer {TOKEN}"})
        client.get("/api/comments")
    assert log.getvalue().splitlines() == [
        "GET /api/tickets?per_page=1 200",
        "GET /api/comments 401",
    ]


def test_missing_data_is_refused_with_what_to_run(tmp_path: Path) -> None:
    """A server over a directory without the exports says which file is missing and what to run."""
    with pytest.raises(FileNotFoundError) as info:
        server.ServiceDeskServer(tmp_path, token=TOKEN)
    assert str(info.value) == (
        f"{tmp_path / 'tickets.json'} not found: run generate.py --out {tmp_path} first"
    )
