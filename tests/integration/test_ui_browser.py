"""The run-history page in a real browser: Debian's Chromium, headless, driven by Playwright.

``ladle ui`` is started as a subprocess on a free port for a pipeline with a succeeded
run (which quarantined records) and a failed run. The test reads the page as a user
would, then fixes the pipeline file and presses Replay. Screenshots are written to
``tests/artifacts/`` (ignored by git). Without Chromium the test fails with what to
install; ``make test`` installs it. It is never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from ladle import Pipeline, RunOptions
from ladle.destinations import connect
from ladle.quarantine import QUARANTINE

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHROMIUM_HINT = (
    "the browser test needs Chromium: `make test` installs Debian's package when run as root "
    "(apt-get install -y chromium); otherwise install it yourself (Debian/Ubuntu: "
    "sudo apt-get install chromium; macOS: brew install --cask chromium) or point "
    "LADLE_TEST_CHROMIUM at a Chromium or Chrome binary"
)
PIPELINE = """\
pipeline: shop
destination: duckdb:///{database}
resources:
  orders:
    source: {{type: file, path: orders.jsonl}}
    primary_key: [order_id]
    write: merge
    columns:
      order_id: {{type: bigint}}
      status: {{type: text, in: {statuses}}}
  refunds:
    source: {{type: file, path: refunds/*.jsonl}}
"""
ORDERS = [
    '{"order_id": 1, "status": "open"}',
    '{"order_id": 2, "status": "shipped"}',
    '{"order_id": 3, "status": "<b>refunded</b>"}',
    '{"order_id": 4, "status": ',
]


def _chromium() -> str:
    configured = os.environ.get("LADLE_TEST_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        pytest.fail(CHROMIUM_HINT, pytrace=False)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, str, str]:
    """A pipeline file, a succeeded run that quarantined 3 orders, and a failed run."""
    (tmp_path / "orders.jsonl").write_text("\n".join(ORDERS) + "\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.format(database=tmp_path / "shop.duckdb", statuses="[open, paid]"))
    pipeline = Pipeline.from_yaml(path)
    good = pipeline.run(RunOptions(resources=("orders",)))
    assert good.ok
    assert good.resources[0].counts.quarantined == 3
    bad = pipeline.run(RunOptions(resources=("refunds",)))
    assert not bad.ok
    return path, good.run_id, bad.run_id


@pytest.fixture
def ui(shop: tuple[Path, str, str]) -> Iterator[str]:
    """`ladle ui` on a free port for the shop pipeline; its base URL."""
    path = shop[0]
    port = _free_port()
    ladle = Path(sys.executable).with_name("ladle")
    process = subprocess.Popen(
        [str(ladle), "ui", str(path), "--port", str(port)],
        cwd=path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"`ladle ui` did not start: {stderr}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def page() -> Iterator[Page]:
    """A page in Debian's Chromium, headless (without the sandbox when run as root)."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_run_history_page_in_chromium(ui: str, shop: tuple[Path, str, str], page: Page) -> None:
    """The page lists the runs with the failed run's error and a chart; the quarantine
    browser shows the records; after the pipeline is fixed, Replay loads them."""
    path, good_run, bad_run = shop
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(ui)

    # The runs, with status, counts and the failed run's error, and the chart.
    assert page.locator("#runs tr.run-row").count() == 2
    good = page.locator(f'tr[data-run="{good_run}"]')
    assert good.get_attribute("data-status") == "succeeded"
    failed = page.locator(f'tr[data-run="{bad_run}"]')
    assert failed.get_attribute("data-status") == "failed"
    assert "no file matches 'refunds/*.jsonl'" in failed.inner_text()
    assert page.locator("#runs-chart svg rect.bar").count() == 2
    assert page.locator("#runs-chart svg rect.bar-failed").count() == 1
    page.screenshot(path=str(ARTIFACTS / "ui-runs-before-replay.png"), full_page=True)

    # The failed run's detail shows the whole error.
    page.click(f'tr[data-run="{bad_run}"] a')
    page.wait_for_url(f"**/runs/{bad_run}")
    assert "no file matches 'refunds/*.jsonl'" in page.inner_text("pre.run-error")

    _quarantine_then_replay(page, ui, path, good_run)

    page.goto(ui)
    assert page.locator("#runs tr.run-row").count() == 3
    assert page.locator("#runs-chart svg rect.bar").count() == 3
    screenshot = ARTIFACTS / "ui-runs.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")


def _quarantine_then_replay(page: Page, ui: str, path: Path, run_id: str) -> None:
    """The quarantine browser shows the run's records; Replay after the fix loads two."""
    page.goto(f"{ui}quarantine?run={run_id}&resource=orders")
    records = page.locator("tr.quarantined-record")
    assert records.count() == 3
    positions = page.locator("code.position").all_inner_texts()
    assert positions == ["orders.jsonl:2", "orders.jsonl:3", "orders.jsonl:4"]
    assert "status [in]" in records.nth(0).inner_text()
    assert '"status": "<b>refunded</b>"' in records.nth(1).inner_text()
    assert page.locator("#quarantine b").count() == 0  # shown as text, not markup
    page.screenshot(path=str(ARTIFACTS / "ui-quarantine.png"), full_page=True)

    statuses = "[open, paid, shipped, '<b>refunded</b>']"
    path.write_text(PIPELINE.format(database=path.parent / "shop.duckdb", statuses=statuses))
    page.click("#replay")
    page.wait_for_url("**/runs/*")
    result = page.inner_text("#replay-result")
    assert f"replayed the quarantined records of run {run_id}" in result
    assert "orders: 3 replayed, 2 loaded, 1 still quarantined" in result
    page.goto(f"{ui}quarantine?run={run_id}&resource=orders")
    assert page.locator("#no-records").count() == 1

    dest = connect(f"duckdb:///{path.parent / 'shop.duckdb'}")
    try:
        orders = dest.read("orders", {}, order_by=["order_id"]).get_column("order_id").to_list()
        left = dest.read(QUARANTINE.name, {"run_id": run_id})
    finally:
        dest.close()
    assert orders == [1, 2, 3]
    assert left.height == 0
