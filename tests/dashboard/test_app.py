"""The dashboard's pages and guarded actions, over the memory backend, with Starlette's
test client (the browser tests in test_browser.py drive the real thing)."""

from __future__ import annotations

import re

import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.errors import CycleDetectedError
from kubenenc.ids import InvocationId
from kubenenc.scope import queue_name, scope
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, beat, pause, running
from kubenenc.waitgraph import format_loop
from kubenenc_dashboard import DashboardSettings, create_app
from kubenenc_dashboard.graph import loop_lines
from starlette.testclient import TestClient

CYCLE = f"{CycleDetectedError.__module__}.{CycleDetectedError.__qualname__}"


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


def _client(backend: MemoryBackend, token: str | None = None) -> TestClient:
    return TestClient(create_app(backend, DashboardSettings(token=token)))


def test_overview_counts_tasks_and_workers(backend: MemoryBackend) -> None:
    add(backend, 1.0, "a", "1", app="shop")
    add(backend, 2.0, "a", "2", app="shop")
    running(backend, 3.0, "b", app="shop")
    beat(backend, W1, 1e12)
    page = _client(backend).get("/")
    assert page.status_code == 200
    assert 'data-status="PENDING">2<' in page.text
    assert 'data-status="RUNNING">1<' in page.text
    assert 'data-status="TOTAL">3<' in page.text
    assert "tests.a" in page.text
    assert "Content-Security-Policy" in page.headers
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    workers = _client(backend).get("/workers")
    assert W1 in workers.text


def test_list_filters_and_pages_with_cursors(backend: MemoryBackend) -> None:
    ids = [add(backend, float(i), "f", f"n{i}") for i in range(120)]
    client = _client(backend)
    first = client.get("/invocations")
    shown = re.findall(r'data-id="([0-9a-f]{32})"', first.text)
    assert shown == ids[::-1][:50]
    nxt = re.search(r'href="([^"]+)" id="next"', first.text)
    assert nxt is not None
    second = client.get(nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-id="([0-9a-f]{32})"', second.text) == ids[::-1][50:100]
    one = client.get("/invocations", params={"text": "N7)"})
    assert re.findall(r'data-id="([0-9a-f]{32})"', one.text) == [ids[7]]
    none = client.get("/invocations", params={"status": "FAILED"})
    assert "none on this page" in none.text


def test_a_refused_loop_is_drawn_from_the_error(backend: MemoryBackend) -> None:
    lines = ["related('lamp')", "recommend('lamp')", "related('lamp')"]
    id = add(backend, 1.0, "recommend")
    assert backend.fail(id, CYCLE, format_loop(lines), 2.0)
    assert loop_lines(format_loop(lines)) == lines
    page = _client(backend).get(f"/invocations/{id}")
    assert page.status_code == 200
    assert 'aria-label="refused loop"' in page.text
    assert "e-refused" in page.text
    assert "recommend(&#39;lamp&#39;)" in page.text


def test_graph_shows_children_and_waits(backend: MemoryBackend) -> None:
    parent = running(backend, 1.0, "parent")
    kids = [add(backend, 2.0, "kid", str(i), parent=parent) for i in range(2)]
    pause(backend, parent, kids, now=3.0)
    page = _client(backend).get(f"/invocations/{parent}")
    assert page.text.count('class="node"') == 3
    assert "e-wait" in page.text
    assert "PAUSED" in page.text
    kid = _client(backend).get(f"/invocations/{kids[0]}")
    assert parent in kid.text
    assert _client(backend).get(f"/invocations/{'0' * 32}").status_code == 404


def test_actions_are_off_without_a_token(backend: MemoryBackend) -> None:
    id = add(backend)
    refused = _client(backend).post(f"/act/cancel/{id}", data={"csrf": "x"})
    assert refused.status_code == 403
    assert backend.get(id).status is Status.PENDING  # type: ignore[union-attr]


def test_actions_need_the_session_and_its_csrf_value(backend: MemoryBackend) -> None:
    id = add(backend)
    client = _client(backend, token="s3cret")
    assert client.post(f"/act/cancel/{id}", data={}).status_code == 403
    assert client.post("/login", data={"token": "wrong"}).status_code == 403
    signed = client.post("/login", data={"token": "s3cret"}, follow_redirects=False)
    assert signed.status_code == 303
    assert client.post(f"/act/cancel/{id}", data={"csrf": "forged"}).status_code == 403
    assert backend.get(id).status is Status.PENDING  # type: ignore[union-attr]
    page = client.get(f"/invocations/{id}")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf is not None
    done = client.post(f"/act/cancel/{id}", data={"csrf": csrf.group(1)})
    assert done.status_code == 200
    assert backend.get(id).status is Status.CANCELLED  # type: ignore[union-attr]


def test_bearer_token_acts_and_retry_submits_again(backend: MemoryBackend) -> None:
    id = add(backend)
    client = _client(backend, token="s3cret")
    bad = client.post(f"/act/cancel/{id}", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = client.post(f"/act/cancel/{id}", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    again = client.post(
        f"/act/retry/{id}", headers={"Authorization": "Bearer s3cret"}, follow_redirects=False
    )
    assert again.status_code == 303
    new = InvocationId(again.headers["location"].rsplit("/", 1)[1])
    rec = backend.get(new)
    assert rec is not None
    assert (rec.status, rec.task, rec.args) == (Status.PENDING, "tests.f", '{"x":""}')


def test_cancel_all_pending_of_a_task(backend: MemoryBackend) -> None:
    ids = [add(backend, float(i), "g", str(i)) for i in range(5)]
    other = add(backend, 9.0, "h")
    client = _client(backend, token="t")
    done = client.post("/act/cancel-pending/tests.g", headers={"Authorization": "Bearer t"})
    assert "cancelled 5 pending calls" in done.text
    assert {backend.get(i).status for i in ids} == {Status.CANCELLED}  # type: ignore[union-attr]
    assert backend.get(other).status is Status.PENDING  # type: ignore[union-attr]


def test_fragments_hold_only_the_live_parts(backend: MemoryBackend) -> None:
    add(backend)
    page = _client(backend).get("/", headers={"X-Fragment": "1"})
    assert "<nav>" not in page.text
    assert "data-live" in page.text
    assert _client(backend).get("/static/dashboard.js").status_code == 200


def test_requests_from_another_origin_are_refused(backend: MemoryBackend) -> None:
    id = add(backend)
    client = _client(backend, token="t")
    evil = {"Authorization": "Bearer t", "Origin": "https://evil.example"}
    assert client.post(f"/act/cancel/{id}", headers=evil).status_code == 403
    assert client.post("/login", data={"token": "t"}, headers={"Origin": "null"}).status_code == 403
    assert backend.get(id).status is Status.PENDING  # type: ignore[union-attr]
    same = {"Authorization": "Bearer t", "Origin": "http://testserver"}
    assert client.post(f"/act/cancel/{id}", headers=same).status_code == 200


def test_text_from_the_backend_is_escaped_everywhere(backend: MemoryBackend) -> None:
    evil = "<script>alert(1)</script>"
    parent = running(backend, 1.0, "p", evil)
    add(backend, 2.0, "k", evil, parent=parent)
    for path in ("/invocations", f"/invocations/{parent}", f"/invocations?text={evil}"):
        page = _client(backend).get(path)
        assert "<script>alert" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


def test_pools_table_shows_the_app_and_the_pool_name_users_gave(backend: MemoryBackend) -> None:
    queue = queue_name(scope("shop", "prod"), "fast")  # stored as "prod/shop:fast"
    add(backend, 1.0, "a", "1", app="shop", pool=queue)
    beat(backend, W1, 1e12, pool=queue)
    for path in ("/", "/workers"):
        page = _client(backend).get(path).text
        table = re.search(r'<table id="pools">.*?</table>', page, re.S)
        assert table is not None, path
        cells = re.findall(r"<td[^>]*>(?:<a [^>]*>)?([^<]*)", table.group(0))
        assert cells[:3] == ["prod/shop", "fast", "1"], path  # app, pool, workers
        assert f'href="/invocations?pool={queue}"' in table.group(0)  # filters the stored one


def _cells(page: str, table_id: str) -> list[str]:
    """The text of each cell of the table ``table_id``, its tags taken out."""
    table = re.search(rf'<table id="{table_id}">.*?</table>', page, re.S)
    assert table is not None, table_id
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table.group(0), re.S)
    return [re.sub(r"<[^>]*>", "", c).strip() for c in cells]


def test_workers_and_calls_show_the_app_and_pool_name_like_the_pools_table(
    backend: MemoryBackend,
) -> None:
    queue = queue_name(scope("shop", "prod"), "fast")  # stored as "prod/shop:fast"
    id = add(backend, 1.0, "a", "1", app="shop", pool=queue)
    beat(backend, W1, 1e12, pool=queue)
    client = _client(backend)
    workers = client.get("/workers").text
    assert _cells(workers, "workers")[:4] == [W1, "host", "prod/shop", "fast"]
    assert f'href="/invocations?pool={queue}"' in workers
    listed = _cells(client.get("/invocations").text, "invocations")
    assert listed[1:4] == ["PENDING", "prod/shop", "fast"]  # status, app, pool
    one = client.get(f"/invocations/{id}").text
    assert re.search(r"<th>app / pool</th><td>prod/shop / <a [^>]*>fast</a>", one)
    assert queue not in re.sub(r'href="[^"]*"', "", workers + one)  # only in filter links
