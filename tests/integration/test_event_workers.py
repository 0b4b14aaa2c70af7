"""Events are durable: emitted while no worker runs, handled once one starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_event_emitted_with_no_worker_is_handled_when_one_starts(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app = app_on(shared_url)
    paid = app.emit("order.paid", {"order": 7, "amount": 12.5, "currency": "EUR"})
    other = app.emit("order.paid", {"order": 8, "amount": 1.0, "currency": "USD"})
    assert len(paid) == 2 and len(other) == 1
    assert all(i.status is Status.PENDING for i in paid + other)
    spawn_worker(shared_url, "--mode", "thread", "--concurrency", "2")
    assert sorted(i.result(timeout=60) for i in paid) == ["invoiced 7: 12.5", "shipped 7"]
    assert other[0].result(timeout=60) == "shipped 8"
    assert app.counts() == {Status.SUCCESS: 3}
