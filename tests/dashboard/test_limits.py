"""The running limits on the Workers page: keys holding slots, their policy and holders."""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubenenc import App, ConcurrencyPolicy, Settings
from kubenenc.backends.contract import Backend
from kubenenc.backends.memory import MemoryBackend
from kubenenc.backends.roles import roles_of
from kubenenc.testing.helpers import W1
from kubenenc_dashboard import DashboardSettings, create_app
from kubenenc_dashboard.cluster import ClusterState, Resource
from kubenenc_dashboard.limits import running_limits, with_running_now
from starlette.testclient import TestClient

NS = "dash"


def charge(customer: str, amount: int) -> int:
    return amount


def report(day: int) -> int:
    return day


@pytest.fixture
def shop() -> tuple[MemoryBackend, dict[str, Any]]:
    """Two charges of ann (one runs, one waits for her key), one of bob, two reports (a
    limit of 2 on the whole task, given in code): all claimed that can be."""
    backend = MemoryBackend()
    # As the operator stores a ConcurrencyPolicy and a TaskDefinition naming it.
    backend.set_policy(f"{NS}/one-per-customer", '{"running_limit":1,"key":["customer"]}')
    task_id = f"{__name__}.charge"
    backend.set_policy(f"{NS}/task:{task_id}", '{"concurrency":"one-per-customer"}')
    app = App("shop", backend=backend, settings=Settings(namespace=NS))
    charges = app.task(concurrency="one-per-customer")(charge)
    reports = app.task(concurrency=ConcurrencyPolicy(running_limit=2))(report)
    calls = {
        "ann": charges("ann", 1), "bob": charges("bob", 2), "ann2": charges("ann", 3),
        "r1": reports(1), "r2": reports(2),
    }  # fmt: skip
    claimed = {r.id for r in backend.claim(app.queue("default"), W1, 10, 1e9)}
    assert claimed == {calls[k].id for k in ("ann", "bob", "r1", "r2")}
    return backend, calls


def test_keys_show_their_policy_argument_values_and_holders(
    shop: tuple[MemoryBackend, dict[str, Any]],
) -> None:
    backend, calls = shop
    limits = running_limits(roles_of(backend), None)
    assert limits.supported and not limits.more
    rows = {(r.task.rpartition(".")[2], r.label): r for r in limits.rows}
    assert set(rows) == {
        ("charge", 'customer="ann"'), ("charge", 'customer="bob"'),
        ("report", "every call of the task"),
    }  # fmt: skip
    ann = rows[("charge", 'customer="ann"')]
    assert (ann.policy, ann.running, ann.limit, ann.scope) == (f"{NS}/one-per-customer", 1, 1,
                                                               f"{NS}/shop")  # fmt: skip
    assert [i for i, _ in ann.holders] == [calls["ann"].id]  # not ann's waiting charge
    whole = rows[("report", "every call of the task")]
    assert (whole.policy, whole.running, whole.limit) == (None, 2, 2)
    assert running_limits(roles_of(backend), "another-app").rows == []
    page = TestClient(create_app(backend, DashboardSettings())).get("/workers")
    assert page.status_code == 200
    assert 'id="running-keys"' in page.text
    assert "customer=&#34;ann&#34;" in page.text and "in code" in page.text
    assert f'href="/invocations/{calls["ann"].id}"' in page.text


def test_policies_on_kubernetes_say_what_runs_under_them(
    shop: tuple[MemoryBackend, dict[str, Any]],
) -> None:
    backend, _ = shop
    policy = Resource("ConcurrencyPolicy", NS, "one-per-customer", [("key", "customer")], [])
    other = Resource("ConcurrencyPolicy", "elsewhere", "one-per-customer", [("key", "c")], [])
    state = ClusterState(resources={"concurrencypolicies": [policy, other]})
    shown = with_running_now(state, running_limits(roles_of(backend), None))
    mine, theirs = shown.resources["concurrencypolicies"]
    assert dict(mine.fields)["running now"] == 'customer="ann" 1/1; customer="bob" 1/1'
    assert dict(theirs.fields)["running now"] == "none"


def test_a_backend_without_key_usage_says_so() -> None:
    class NoKeys(MemoryBackend):
        running_keys = None  # type: ignore[assignment]

    assert not running_limits(roles_of(cast(Backend, NoKeys())), None).supported
    page = TestClient(create_app(NoKeys(), DashboardSettings())).get("/workers")
    assert 'id="limits-unsupported"' in page.text


def test_a_key_of_a_policy_given_in_code_is_named_by_its_arguments() -> None:
    backend = MemoryBackend()
    app = App("shop", backend=backend)
    policy = ConcurrencyPolicy(running_limit=1, key=("amount", "customer"))
    task = app.task(concurrency=policy)(charge)
    call = task("ann", 7)
    assert [r.id for r in backend.claim(app.queue("default"), W1, 10, 1e9)] == [call.id]
    [row] = running_limits(roles_of(backend), None).rows
    assert (row.label, row.policy, row.limit) == ('amount=7, customer="ann"', None, 1)
