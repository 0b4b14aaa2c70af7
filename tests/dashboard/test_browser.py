"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against a real worker process and the dashboard process on SQLite, Redis and MongoDB
(FerretDB).

Screenshots of every page go to ``tests/dashboard/artifacts/`` (git-ignored), kept as CI
artifacts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc.app import App
from kubenenc.errors import CycleDetectedError
from kubenenc.status import Status

from tests.support import free_port, require, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-test-token"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(params=["sqlite", "redis", "mongodb"])
def url(request: pytest.FixtureRequest) -> Any:
    fixtures = {"sqlite": "sqlite_url", "redis": "redis_url", "mongodb": "mongodb_url"}
    return request.getfixturevalue(fixtures[request.param])


@pytest.fixture
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), "no chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "no playwright (pip install playwright)")
        raise
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _spawn(args: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBENENC_BACKEND": url, "PYTHONPATH": str(ROOT),
           "DASHBOARD_TEST_GATE": str(log.parent / "gate")}  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kubenenc_cli", *args], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def system(url: str, tmp_path: Path) -> Iterator[tuple[str, App, Path]]:
    """A worker process and a dashboard process (with a token) on ``url``; the app bound."""
    from tests.dashboard import browser_app

    browser_app.app.configure(url)
    port = free_port()
    procs = [
        _spawn(["worker", "--app", "tests.dashboard.browser_app:app", "--mode", "thread",
                "--concurrency", "6"], url, tmp_path / "worker.log"),
        _spawn(["dashboard", "--port", str(port), "--token", TOKEN], url,
               tmp_path / "dashboard.log"),
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_until("the dashboard to answer", up, timeout=30)
        yield base, browser_app.app, tmp_path
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        browser_app.app.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_dashboard_in_a_browser(system: tuple[str, App, Path], browser: Any, url: str) -> None:
    from playwright.sync_api import expect

    from tests.dashboard import browser_app as t

    base, app, tmp = system
    kind = url.split(":", 1)[0]
    gate = tmp / "gate"
    done = [t.quick(i) for i in range(6)]
    bad = t.broken(1)
    loop = t.recommend("lamp")
    held = t.order(1, ["book", "pen", "mug"])
    parked = t.parked(7)
    for inv in done:
        assert inv.result(timeout=60) in range(0, 12, 2)
    with pytest.raises(CycleDetectedError):
        loop.result(timeout=60)
    wait_until("the broken call to fail", lambda: bad.status is Status.FAILED, timeout=60)
    wait_until("the order to pause", lambda: held.status is Status.PAUSED, timeout=60)

    page = browser.new_page(viewport={"width": 1000, "height": 900})
    # Overview: the counts shown are the backend's.
    page.goto(base + "/")
    counts = app.backend.counts(app=app.name)
    for status in (Status.SUCCESS, Status.FAILED, Status.PAUSED, Status.PENDING):
        shown = page.locator(f'[data-status="{status.value}"]').inner_text()
        assert int(shown) == counts.get(status, 0), (status, shown, counts)
    assert int(page.locator('[data-status="TOTAL"]').inner_text()) == sum(counts.values())
    _shot(page, f"{kind}-overview")

    # Filter to FAILED: the refused loop is there; open it and see the loop drawn.
    page.goto(base + "/invocations")
    page.select_option("#status-filter", "FAILED")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=FAILED"))
    rows = page.locator("#invocations tbody tr[data-id]")
    assert rows.count() >= 2
    ids = {rows.nth(i).get_attribute("data-id") for i in range(rows.count())}
    assert loop.id in ids
    assert bad.id in ids
    _shot(page, f"{kind}-failed")
    page.click(f'tr[data-id="{loop.id}"] a')
    page.wait_for_selector("#loop svg")
    assert page.locator("#loop svg .e-refused").count() == 1
    assert 'recommend("lamp")' in page.locator("#loop").inner_text()
    assert "CycleDetectedError" in page.locator("#error").inner_text()
    _shot(page, f"{kind}-loop")

    # A paused parent whose children run: it resumes live, without a reload.
    page.goto(f"{base}/invocations/{held.id}")
    assert page.locator("#status").inner_text() == "PAUSED"
    assert page.locator("#graph svg a.node").count() == 4  # itself and three children
    page.wait_for_selector("#live.on")
    page.evaluate("window.__sameDocument = true")
    _shot(page, f"{kind}-paused")
    # Running limits: ann's first charge and bob's hold their keys, ann's second waits.
    charges = [t.charge("ann", 1), t.charge("bob", 2), t.charge("ann", 3)]
    wait_until("two charges to run", lambda: [c.status for c in charges]
               == [Status.RUNNING, Status.RUNNING, Status.PENDING], timeout=60)  # fmt: skip
    limits = browser.new_page(viewport={"width": 1000, "height": 900})
    limits.goto(base + "/workers")
    keys = limits.locator("#running-keys tbody tr[data-key]")
    assert keys.count() == 2
    shown = {keys.nth(i).locator("td").nth(1).inner_text(): keys.nth(i) for i in range(2)}
    assert set(shown) == {'customer="ann"', 'customer="bob"'}
    ann = shown['customer="ann"']
    assert ann.locator("td.num").inner_text().replace(" ", "") == "1/1"
    assert ann.locator(f'a[href="/invocations/{charges[0].id}"]').count() == 1
    assert ann.locator(f'a[href="/invocations/{charges[2].id}"]').count() == 0
    assert "in code" in ann.inner_text()
    _shot(limits, f"{kind}-limits")
    limits.screenshot(
        path=str(ARTIFACTS / f"{kind}-limits-readme.png"),
        clip={"x": 0, "y": 0, "width": 1000, "height": 480},
    )  # docs/ has one
    limits.close()
    page.screenshot(
        path=str(ARTIFACTS / f"{kind}-readme.png"),
        clip={
            "x": 0,
            "y": 0,
            "width": 1000,
            "height": 640,
        },
    )  # the README's picture (docs/dashboard.png is one of these)
    gate.touch()
    expect(page.locator("#status")).to_have_text("SUCCESS", timeout=60_000)
    assert page.evaluate("window.__sameDocument === true")  # updated in place
    assert held.result(timeout=10) == 10
    assert [c.result(timeout=60) for c in charges] == [1, 2, 3]
    _shot(page, f"{kind}-resumed")

    # Cancel a pending call: refused without the token, done with it.
    page.goto(f"{base}/invocations/{parked.id}")
    assert page.locator("#cancel").count() == 0  # not signed in: no form
    refused = page.request.post(f"{base}/act/cancel/{parked.id}", form={"csrf": "guess"})
    assert refused.status == 403
    assert parked.status is Status.PENDING
    page.goto(base + "/login")
    page.fill("#token", "wrong")
    page.click("#sign-in")
    assert page.locator("#refused").count() == 1
    page.fill("#token", TOKEN)
    page.click("#sign-in")
    page.goto(f"{base}/invocations/{parked.id}")
    page.click("#cancel")
    page.wait_for_selector("#message")
    assert page.locator("#message").inner_text() == "cancelled"
    assert parked.status is Status.CANCELLED
    page.goto(base + "/workers")
    assert page.locator("#workers tbody tr").count() >= 1
    _shot(page, f"{kind}-workers")
    page.close()
