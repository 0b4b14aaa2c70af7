"""TaskDefinition options stored in the backend, and names scoped by namespace."""

from __future__ import annotations

import pytest
from kubenenc import App, ConcurrencyPolicy, ConfigurationError
from kubenenc.backends.memory import MemoryBackend
from kubenenc.records import InvocationRecord
from kubenenc.settings import Settings
from kubenenc.task_defaults import TaskDefaults, scoped_name, task_defaults_name

TASK = "tests.unit.test_task_defaults.charge"


def charge(user: int, amount: int) -> int:
    return amount


def make_app(backend: MemoryBackend, namespace: str | None = None, **options: object) -> App:
    app = App("shop", backend=backend, settings=Settings(namespace=namespace))
    app.task(**options)(charge)
    return app


def submitted(app: App, inv_id: str) -> InvocationRecord:
    rec = app.backend.get(inv_id)  # type: ignore[arg-type]
    assert rec is not None
    return rec


@pytest.fixture(autouse=True)
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the backend at every call (the TTL is tested on its own below)."""
    monkeypatch.setattr("kubenenc.resolver.POLICY_TTL", 0.0)


def test_names_are_scoped_by_namespace() -> None:
    assert scoped_name("per-user", None) == "per-user"
    assert scoped_name("per-user", "shop") == "shop/per-user"
    assert scoped_name("other/per-user", "shop") == "other/per-user"
    assert task_defaults_name("m.f", "shop") == "shop/task:m.f"
    assert task_defaults_name("m.f", None) == "task:m.f"


def test_precedence_call_then_taskdefinition_then_decorator() -> None:
    backend = MemoryBackend()
    app = make_app(backend, retries=1, timeout=5.0, priority=1, pool="p1")
    task = app.tasks[TASK]  # type: ignore[index]
    rec = submitted(app, task(1, 2).id)
    assert (rec.max_retries, rec.timeout, rec.priority, rec.pool) == (1, 5.0, 1, "shop:p1")
    stored = TaskDefaults(retries=4, timeout=30.0, priority=7, pool="p2")
    backend.set_policy(f"task:{TASK}", stored.model_dump_json())
    rec = submitted(app, task(1, 3).id)
    assert (rec.max_retries, rec.timeout, rec.priority, rec.pool) == (4, 30.0, 7, "shop:p2")
    rec = submitted(app, task.with_options(retries=0, timeout=1.0, priority=-1)(1, 4).id)
    assert (rec.max_retries, rec.timeout, rec.priority, rec.pool) == (0, 1.0, -1, "shop:p2")
    # Only what the TaskDefinition sets replaces the decorator's values; removing it restores
    # them.
    backend.set_policy(f"task:{TASK}", TaskDefaults(retries=2).model_dump_json())
    rec = submitted(app, task(1, 5).id)
    assert (rec.max_retries, rec.timeout, rec.priority, rec.pool) == (2, 5.0, 1, "shop:p1")
    backend.set_policy(f"task:{TASK}", None)
    assert submitted(app, task(1, 6).id).max_retries == 1


def test_the_backoff_a_worker_uses_follows_the_taskdefinition() -> None:
    backend = MemoryBackend()
    app = make_app(backend, backoff=1.0, max_backoff=10.0)
    task = app.tasks[TASK]  # type: ignore[index]
    backend.set_policy(f"task:{TASK}", TaskDefaults(backoff=0.25).model_dump_json())
    options = app.task_options(task)
    assert (options.backoff, options.max_backoff) == (0.25, 10.0)
    assert task.options.backoff == 1.0  # the decorator's value is kept apart


def test_a_namespaced_app_reads_its_own_namespace_only() -> None:
    backend = MemoryBackend()
    for ns, limit, retries in (("a", 1, 3), ("b", 5, 6)):
        backend.set_policy(
            f"{ns}/per-user", ConcurrencyPolicy(running_limit=limit).model_dump_json()
        )
        backend.set_policy(f"{ns}/task:{TASK}", TaskDefaults(retries=retries).model_dump_json())
    found = {}
    for ns in ("a", "b"):
        app = make_app(backend, ns, concurrency="per-user")
        rec = submitted(app, app.tasks[TASK](1, 2).id)  # type: ignore[index]
        found[ns] = (rec.running_limit, rec.max_retries)
    assert found == {"a": (1, 3), "b": (5, 6)}
    # Without a namespace, no namespace's names are read: the program must set its own.
    outside = make_app(backend, None, concurrency="per-user")
    with pytest.raises(ConfigurationError, match=r"KUBENENC_NAMESPACE to the workers' namespace"):
        outside.tasks[TASK](1, 2)  # type: ignore[index]
    # A name stored as given is used as is.
    backend.set_policy("per-user", ConcurrencyPolicy(running_limit=9).model_dump_json())
    backend.set_policy(f"task:{TASK}", TaskDefaults(retries=0).model_dump_json())
    rec = submitted(outside, outside.tasks[TASK](1, 2).id)  # type: ignore[index]
    assert (rec.running_limit, rec.max_retries) == (9, 0)


def test_no_name_resolves_in_another_namespace() -> None:
    """Even when only one namespace has a name, a program of no namespace or of another one
    never reads it (no fallback), and naming another namespace outright is refused."""
    backend = MemoryBackend()
    backend.set_policy("shop/per-user", ConcurrencyPolicy(running_limit=2).model_dump_json())
    backend.set_policy(f"shop/task:{TASK}", TaskDefaults(retries=4).model_dump_json())
    for namespace in (None, "other"):
        app = make_app(backend, namespace)
        rec = submitted(app, app.tasks[TASK](1, 2).id)  # type: ignore[index]
        assert (rec.running_limit, rec.max_retries) == (None, 0)
        with pytest.raises(ConfigurationError, match="not stored"):
            make_app(backend, namespace, concurrency="per-user").tasks[TASK](1, 2)  # type: ignore[index]
        with pytest.raises(ConfigurationError, match="names another namespace"):
            make_app(backend, namespace, concurrency="shop/per-user").tasks[TASK](1, 2)  # type: ignore[index]
    app = make_app(backend, "shop", concurrency="shop/per-user")
    assert submitted(app, app.tasks[TASK](1, 2).id).running_limit == 2  # type: ignore[index]


def test_the_taskdefinition_may_name_the_policy() -> None:
    backend = MemoryBackend()
    app = make_app(backend, "a")
    backend.set_policy("a/one", ConcurrencyPolicy(running_limit=1).model_dump_json())
    backend.set_policy(f"a/task:{TASK}", TaskDefaults(concurrency="a/one").model_dump_json())
    rec = submitted(app, app.tasks[TASK](1, 2).id)  # type: ignore[index]
    assert rec.running_limit == 1


def test_missing_policy_says_where_it_was_looked_for() -> None:
    backend = MemoryBackend()
    with pytest.raises(ConfigurationError, match=r"'a/per-user'.*namespace 'a'"):
        make_app(backend, "a", concurrency="per-user").tasks[TASK](1, 2)  # type: ignore[index]
    with pytest.raises(ConfigurationError, match="KUBENENC_NAMESPACE"):
        make_app(backend, None, concurrency="per-user").tasks[TASK](1, 2)  # type: ignore[index]


def test_invalid_stored_options_fail_the_call_with_the_task_named() -> None:
    backend = MemoryBackend()
    app = make_app(backend)
    backend.set_policy(f"task:{TASK}", '{"retries": -1}')
    with pytest.raises(ConfigurationError, match=f"task {TASK}: the options its TaskDefinition"):
        app.tasks[TASK](1, 2)  # type: ignore[index]


def test_the_stored_options_are_cached_for_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubenenc.resolver.POLICY_TTL", 3600.0)
    backend = MemoryBackend()
    app = make_app(backend)
    task = app.tasks[TASK]  # type: ignore[index]
    assert submitted(app, task(1, 2).id).max_retries == 0
    backend.set_policy(f"task:{TASK}", TaskDefaults(retries=5).model_dump_json())
    assert submitted(app, task(1, 3).id).max_retries == 0  # cached
    monkeypatch.setattr("kubenenc.resolver.POLICY_TTL", 0.0)
    assert submitted(app, task(1, 4).id).max_retries == 5


def test_a_worker_schedules_retries_with_the_taskdefinition_backoff() -> None:
    """And with the decorator's when what is stored is invalid (the worker goes on)."""
    from kubenenc.ids import InvocationId, TaskId
    from kubenenc.settings import WorkerSettings
    from kubenenc.status import Status
    from kubenenc_worker.worker import Worker

    backend = MemoryBackend()
    app = make_app(backend, "a", backoff=100.0, max_backoff=100.0)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=1))
    rec = InvocationRecord(
        id=InvocationId("1" * 32), app="shop", task=TaskId(TASK), args="{}", call_key=TASK,
        display="charge()", pool="default", priority=0, status=Status.RUNNING, created_at=1.0,
        updated_at=1.0, attempt=1,
    )  # fmt: skip
    assert 50.0 <= worker._backoff(rec) <= 100.0  # the decorator's, capped at 100 s, jittered
    backend.set_policy(
        f"a/task:{TASK}", TaskDefaults(backoff=0.5, max_backoff=1.0).model_dump_json()
    )
    assert 0.5 <= worker._backoff(rec) <= 1.0
    backend.set_policy(f"a/task:{TASK}", '{"backoff": -1}')
    assert 50.0 <= worker._backoff(rec) <= 100.0
