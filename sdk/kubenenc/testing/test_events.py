"""Events: ``app.emit`` calls every subscribed task once, in one backend step."""

from __future__ import annotations

from typing import Any

import pytest

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.errors import ConfigurationError
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, claim_ids, nonzero


def ship(order: int) -> str:
    return f"ship {order}"


def invoice(order: int, amount: float, **rest: Any) -> str:
    return f"invoice {order}: {amount} {sorted(rest)}"


def refund(order: int) -> str:
    return f"refund {order}"


def test_an_event_with_two_subscribers(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    shipper = app.task(on_event="order.paid", pool="ship")(ship)
    invoicer = app.task(on_event="order.paid")(invoice)
    app.task(on_event="order.refunded")(refund)
    calls = app.emit("order.paid", {"order": 7, "amount": 12.5, "currency": "EUR"})
    assert sorted(i.record().task for i in calls) == sorted([shipper.id, invoicer.id])
    assert all(i.status is Status.PENDING for i in calls)
    by_task = {i.record().task: app.serializer.loads(i.record().args) for i in calls}
    assert by_task[shipper.id] == {"order": 7}
    assert by_task[invoicer.id] == {"order": 7, "amount": 12.5, "rest": {"currency": "EUR"}}
    assert nonzero(app.counts()) == {Status.PENDING: 2}
    # Each is an ordinary call, claimed from its pool.
    shipping = next(i.id for i in calls if i.record().task == shipper.id)
    assert claim_ids(backend, W1, 10, 1e10, app.queue("ship")) == [shipping]


def test_an_event_nobody_subscribes_to_calls_nothing(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    app.task(on_event="order.paid")(ship)
    assert app.emit("order.lost", {"order": 1}) == []
    assert nonzero(app.counts()) == {}


def test_the_filter_picks_subscribers(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    app.task(on_event="order.paid", event_filter={"currency": "EUR"})(ship)
    app.task(on_event="order.paid")(refund)
    usd = app.emit("order.paid", {"order": 1, "currency": "USD"})
    assert [i.record().task for i in usd] == ["kubenenc.testing.test_events.refund"]
    eur = app.emit("order.paid", {"order": 2, "currency": "EUR"})
    assert len(eur) == 2


def test_a_payload_missing_an_argument_registers_nothing(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    app.task(on_event="order.paid")(ship)
    app.task(on_event="order.paid")(invoice)
    with pytest.raises(TypeError, match="amount"):
        app.emit("order.paid", {"order": 3})
    assert nonzero(app.counts()) == {}


def test_event_options_are_checked(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    with pytest.raises(ConfigurationError, match="event_filter needs on_event"):
        app.task(event_filter={"a": 1})(ship)
    with pytest.raises(ConfigurationError, match="non-empty event name"):
        app.task(on_event="")(ship)
