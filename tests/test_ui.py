"""The run-history pages over HTTP: what they show, escaping, the token, the replay form."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ladle import Pipeline, RunOptions
from ladle.metrics import Metrics
from ladle.serve import create_app
from ladle.ui import create_ui_app, ui_token_from_env
from ladle.ui.chart import RunPoint, build_chart

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 in its test client; ladle depends on httpx, which works.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", UserWarning)
    from fastapi.testclient import TestClient

PIPELINE = """\
pipeline: shop
destination: {destination}
resources:
  orders:
    source: {{type: file, path: orders.jsonl}}
    columns:
      status: {{type: text, in: {statuses}}}
"""


@pytest.fixture
def shop(tmp_path: Path, duckdb_url: str, write_pipeline: Callable[[str], Path]) -> Pipeline:
    """A pipeline whose one run quarantined a record with markup in it."""
    (tmp_path / "orders.jsonl").write_text(
        '{"id": 1, "status": "open"}\n{"id": 2, "status": "<script>x()</script>"}\n'
    )
    pipeline = Pipeline.from_yaml(
        write_pipeline(PIPELINE.format(destination=duckdb_url, statuses="[open]"))
    )
    assert pipeline.run(RunOptions()).ok
    return pipeline


@pytest.fixture
def client(shop: Pipeline) -> Iterator[TestClient]:
    """The pages of ``shop``, without a token."""
    with TestClient(create_ui_app(shop)) as client:
        yield client


def _run_id(client: TestClient) -> str:
    found = re.search(r'data-run="([0-9a-f]+)"', client.get("/").text)
    assert found is not None
    return found.group(1)


def test_pages_show_runs_details_and_records(client: TestClient) -> None:
    """Runs, a run's detail and its quarantined records render; unknown runs are 404."""
    run_id = _run_id(client)
    runs = client.get("/")
    assert runs.status_code == 200
    assert 'id="runs-chart"' in runs.text
    detail = client.get(f"/runs/{run_id}")
    assert detail.status_code == 200
    assert "1 quarantined records</a> left." in detail.text
    records = client.get("/quarantine", params={"run": run_id})
    assert "orders.jsonl:2" in records.text
    assert client.get("/runs/nope").status_code == 404


def test_values_are_escaped(client: TestClient) -> None:
    """Markup in a quarantined record is shown as text, never run."""
    page = client.get("/quarantine", params={"run": _run_id(client)}).text
    assert "<script>x()</script>" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "script-src" not in client.get("/").headers["content-security-policy"]


def test_replay_needs_the_form_secret(client: TestClient) -> None:
    """A replay posted without the page's secret (another site's form) is refused."""
    run_id = _run_id(client)
    response = client.post(f"/runs/{run_id}/replay", data={"csrf": "guess"})
    assert response.status_code == 403
    assert "orders.jsonl:2" in client.get("/quarantine", params={"run": run_id}).text


def test_replay_button_loads_and_redirects(
    client: TestClient, shop: Pipeline, duckdb_url: str
) -> None:
    """The form replays with the file as it is now and redirects to the replay's run."""
    run_id = _run_id(client)
    page = client.get("/quarantine", params={"run": run_id}).text
    secret = re.search(r'name="csrf" value="([^"]+)"', page)
    assert secret is not None
    text = PIPELINE.format(destination=duckdb_url, statuses="[open, '<script>x()</script>']")
    shop.config.path.write_text(text)

    response = client.post(
        f"/runs/{run_id}/replay", data={"csrf": secret.group(1)}, follow_redirects=False
    )

    assert response.status_code == 303
    replayed = client.get(response.headers["location"])
    assert "orders: 1 replayed, 1 loaded, 0 still quarantined" in replayed.text
    again = client.post(f"/runs/{run_id}/replay", data={"csrf": secret.group(1)})
    assert again.status_code == 409
    assert f"run &#39;{run_id}&#39; has no quarantined records (left)" in again.text


def test_token_protects_every_page(shop: Pipeline) -> None:
    """With a token, pages need it as the Basic auth password (any user) or a bearer."""
    with TestClient(create_ui_app(shop, token="t0ken")) as client:  # noqa: S106 - test token
        refused = client.get("/")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="ladle", charset="UTF-8"'
        basic = base64.b64encode(b"anyone:t0ken").decode()
        assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert client.get("/", headers={"Authorization": "Bearer t0ken"}).status_code == 200
        wrong = base64.b64encode(b"anyone:nope").decode()
        assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert ui_token_from_env({"LADLE_UI_TOKEN": " "}) is None
    assert ui_token_from_env({"LADLE_UI_TOKEN": "abc"}) == "abc"


def test_serve_mounts_the_pages_behind_its_token(shop: Pipeline) -> None:
    """`ladle serve` has the pages under /ui, behind the ingest token."""
    app = create_app(shop, token="ingest", metrics=Metrics())  # noqa: S106 - test token
    with TestClient(app) as client:
        assert client.get("/ui/").status_code == 401
        page = client.get("/ui/", headers={"Authorization": "Bearer ingest"})
        assert page.status_code == 200
        assert 'href="http://testserver/ui/quarantine"' in page.text


def test_duckdb_file_held_by_another_process(client: TestClient, shop: Pipeline) -> None:
    """While another process holds the DuckDB file, the page says so instead of failing."""
    path = shop.destination_url().split(":///", 1)[1]
    hold = f"import duckdb, time; c = duckdb.connect({path!r}); print(1, flush=True); time.sleep(9)"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"1"
        response = client.get("/")
    finally:
        holder.terminate()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    assert response.status_code == 503
    assert "another ladle process may hold it" in response.text
    assert client.get("/").status_code == 200


def test_chart_layout() -> None:
    """Bars grow with rows loaded, a run with none still shows, the line skips running runs."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2024, 5, 1, tzinfo=UTC)
    chart = build_chart(
        [
            RunPoint("b", start + timedelta(hours=1), 0, 0.5, "failed"),
            RunPoint("a", start, 300, 2.0, "succeeded"),
            RunPoint("c", start + timedelta(hours=2), 150, None, "running"),
        ]
    )
    assert [b.run_id for b in chart.bars] == ["a", "b", "c"]
    assert chart.bars[0].height == 2 * chart.bars[2].height
    assert chart.bars[1].height == 2.0
    assert len(chart.line.split()) == 2
    assert [t.text for t in chart.left_ticks] == ["0", "100", "200", "300", "400"]
    assert chart.bars[0].title == (
        "run a (succeeded), 2024-05-01 00:00:00 UTC: 300 rows loaded, 2.00 s"
    )
