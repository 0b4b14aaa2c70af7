"""Two apps sharing one backend, with the same pool and task names, never touch each other.

Apps ``alpha`` and ``beta`` register the very same functions (so the same task ids), in the
same pool ``default``, with the same policies. Their calls are driven through the App objects
and real in-process workers (thread mode): neither app's worker claims the other's calls, a
dedupe never hands one app the other's invocation or result, a running limit never counts the
other's runs, a cancel never frees the other's dedupe key, and a wait never sees a cycle
through the other's equal call (see :mod:`kubenenc.scope`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kubenenc_worker.worker import Worker

import kubenenc
from kubenenc import ConcurrencyPolicy
from kubenenc.backends.contract import Backend
from kubenenc.records import PauseKind
from kubenenc.settings import Settings, WorkerSettings
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, claim_ids

DEDUPE = ConcurrencyPolicy(registration="dedupe")
ONE_AT_A_TIME = ConcurrencyPolicy(running_limit=1)


def work(x: int) -> str:
    return f"done {x}"


def two_apps(backend: Backend, **options: object) -> tuple[kubenenc.App, kubenenc.App]:
    """Apps alpha and beta on ``backend``, each with ``work`` registered with ``options``."""
    apps = kubenenc.App("alpha", backend=backend), kubenenc.App("beta", backend=backend)
    for app in apps:
        app.task(**options)(work)
    return apps


@contextmanager
def running(app: kubenenc.App) -> Iterator[Worker]:
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=0.01))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(grace=5)


def ran_by(inv: kubenenc.Invocation[object]) -> set[str]:
    """The workers that held ``inv`` at some point of its history."""
    return {t.worker for t in inv.record().history if t.worker}


def test_a_worker_claims_only_its_own_apps_calls(backend: Backend) -> None:
    alpha, beta = two_apps(backend)
    theirs = beta.tasks[next(iter(beta.tasks))](1)  # submitted first: a shared queue's head
    mine = alpha.tasks[next(iter(alpha.tasks))](1)
    with running(alpha) as alpha_worker:
        assert mine.result(timeout=20) == "done 1"
        assert alpha_worker.queue != beta.queue("default")
    assert theirs.status is Status.PENDING  # alpha's worker never took it
    assert alpha_worker.id in ran_by(mine)
    with running(beta) as beta_worker:
        assert theirs.result(timeout=20) == "done 1"
    assert ran_by(theirs) == {beta_worker.id}
    assert (mine.status, theirs.status) == (Status.SUCCESS, Status.SUCCESS)


def test_a_dedupe_never_hands_one_app_the_others_invocation(backend: Backend) -> None:
    alpha, beta = two_apps(backend, concurrency=DEDUPE)
    [a_work], [b_work] = alpha.tasks.values(), beta.tasks.values()
    first = a_work(7)
    assert a_work(7).id == first.id  # the policy works within one app
    theirs = b_work(7)
    assert theirs.id != first.id
    assert b_work(7).id == theirs.id
    # A cancel frees only its own app's key: beta's call stays, and still dedupes.
    assert first.cancel()
    assert a_work(7).id not in (first.id, theirs.id)
    assert theirs.status is Status.PENDING and b_work(7).id == theirs.id
    with running(beta):
        assert theirs.result(timeout=20) == "done 7"
    assert alpha.counts()[Status.CANCELLED] == 1 and alpha.counts()[Status.PENDING] == 1


def test_a_running_limit_never_counts_the_other_apps_runs(backend: Backend) -> None:
    alpha, beta = two_apps(backend, concurrency=ONE_AT_A_TIME)
    [a_work], [b_work] = alpha.tasks.values(), beta.tasks.values()
    a1, a2, b1 = a_work(1), a_work(2), b_work(1)
    assert claim_ids(backend, W1, 10, 10.0, pool=alpha.queue("default")) == [a1.id]
    # alpha's one slot is taken; beta's limit is its own.
    assert claim_ids(backend, W2, 10, 10.0, pool=beta.queue("default")) == [b1.id]
    assert a2.status is Status.PENDING


def test_an_equal_call_of_the_other_app_is_no_cycle(backend: Backend) -> None:
    alpha, beta = two_apps(backend)
    [a_work], [b_work] = alpha.tasks.values(), beta.tasks.values()
    mine = a_work(5)
    assert claim_ids(backend, W1, 1, 10.0, pool=alpha.queue("default")) == [mine.id]
    theirs = b_work(5)  # the same task and arguments, in another app: another call
    assert backend.pause(mine.id, W1, [theirs.id], 11.0).kind is PauseKind.PAUSED


def test_namespaces_isolate_one_app_name(backend: Backend) -> None:
    """The same App name in two Kubernetes namespaces: two tenants."""
    prod = kubenenc.App("shop", backend=backend, settings=Settings(namespace="prod"))
    test = kubenenc.App("shop", backend=backend, settings=Settings(namespace="test"))
    for app in (prod, test):
        app.task(concurrency=DEDUPE)(work)
    [p_work], [t_work] = prod.tasks.values(), test.tasks.values()
    ours, theirs = p_work(3), t_work(3)
    assert ours.id != theirs.id
    assert prod.queue("default") == "prod/shop:default" != test.queue("default")
    with running(test):
        assert theirs.result(timeout=20) == "done 3"
    assert ours.status is Status.PENDING


def test_pool_names_that_could_leave_their_scope_are_refused(backend: Backend) -> None:
    app = kubenenc.App("alpha", backend=backend)
    for bad in ("beta:default", "a/b", "", "x y"):
        with pytest.raises(kubenenc.ConfigurationError, match="pool"):
            app.task(pool=bad)(work)
    task = app.task(work)
    with pytest.raises(kubenenc.ConfigurationError, match="pool"):
        task.with_options(pool="beta:default")
    assert sum(app.counts().values()) == 0
