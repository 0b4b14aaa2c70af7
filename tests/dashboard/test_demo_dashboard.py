"""The newcomer's path: ``kubenenc demo``, then the ``kubenenc dashboard`` command it prints,
shows the demo's shop — over HTTP, and in a real browser (screenshots in artifacts/).

The demo keeps its SQLite file (in a temporary folder, here the test's) and ends by printing
the dashboard command for it; the test runs exactly that command, on a free port.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import open_backend
from kubenenc.status import Status

from tests.dashboard.test_browser import ARTIFACTS, browser  # noqa: F401 (a fixture)
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode("utf-8"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Backend]]:
    """The demo run to its end, then the dashboard command it printed, serving; yields the
    dashboard's address and the demo's backend."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "COLUMNS": "250", "TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-m", "kubenenc_worker", "demo"], cwd=tmp, env=env,
        capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    printed = re.search(r"browse it:\s+(kubenenc dashboard --backend \S+)", out.stdout)
    assert printed is not None, out.stdout
    command = shlex.split(printed.group(1))
    url = command[command.index("--backend") + 1]
    assert Path(url.removeprefix("sqlite:///")).is_relative_to(tmp)  # the demo's own file
    port = free_port()
    log = (tmp / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubenenc_cli", *command[1:], "--port", str(port)],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return _get(base + "/healthz").strip() == "ok"
        except OSError:
            return False

    backend = open_backend(url)
    try:
        wait_until("the dashboard to answer", up, timeout=30)
        yield base, backend
    finally:
        backend.close()
        proc.terminate()
        proc.wait(15)
        log.close()


def test_the_dashboard_shows_the_demos_shop(demo: tuple[str, Backend]) -> None:
    base, backend = demo
    counts = {s: n for s, n in backend.counts().items() if n}
    assert counts.get(Status.SUCCESS, 0) > 12  # twelve orders and what they called
    page = _get(base + "/")
    for status, n in counts.items():
        assert f'data-status="{status.value}">{n}<' in page, status
    assert f'data-status="TOTAL">{sum(counts.values())}<' in page
    for task in backend.counts_by_task():
        assert task in page  # the shop's tasks, by name
    failed = _get(base + "/invocations?status=FAILED")
    assert "recommend(&#34;lamp&#34;)" in failed  # the refused loop
    loops = [r for r in backend.query(status=Status.FAILED, limit=50) if "recommend" in r.task]
    assert loops  # the call the demo made, and the one inside the loop it refused
    for loop in loops:
        assert "CycleDetected" in _get(f"{base}/invocations/{loop.id}")


def test_the_demos_shop_in_a_browser(demo: tuple[str, Backend], browser: Any) -> None:  # noqa: F811
    base, backend = demo
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(base + "/")
    total = sum(backend.counts().values())
    assert int(page.locator('[data-status="TOTAL"]').inner_text()) == total
    assert page.locator("#by-task tbody tr").count() == len(backend.counts_by_task())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-overview.png"), full_page=True)
    page.click('a.card[href="/invocations?status=FAILED"]')
    page.wait_for_url(re.compile(r"status=FAILED"))
    row = page.locator("#invocations tbody tr[data-id]", has_text='recommend("lamp")')
    assert row.count() >= 1
    row.first.locator("a").click()
    page.wait_for_selector("#loop svg")
    page.screenshot(path=str(ARTIFACTS / "demo-loop.png"), full_page=True)
    page.goto(base + "/workers")
    assert page.locator("#running-keys").count() == 1  # the demo's workers have stopped
    page.screenshot(path=str(ARTIFACTS / "demo-workers.png"), full_page=True)
    page.close()
