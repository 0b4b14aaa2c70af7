"""The task decorator and call API: misuse fails early, with a message that says what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubenenc
import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.errors import ConfigurationError, RegistrationRejected, SerializationError
from kubenenc.status import Status


def add(a: int, b: int = 2) -> int:
    return a + b


def pay(customer: int, amount: float) -> None:
    return None


def order(item: str, priority: str = "low", pool: str = "none", timeout: int = 0) -> str:
    return f"{item}:{priority}:{pool}:{timeout}"


def take(value: Any) -> Any:
    return value


def other(x: int) -> int:
    return x


@pytest.fixture
def app() -> Iterator[kubenenc.App]:
    backend = MemoryBackend()
    yield kubenenc.App("t", backend=backend)
    backend.close()


def stored(app: kubenenc.App, inv: kubenenc.Invocation[Any]) -> Any:
    rec = app.backend.get(inv.id)
    assert rec is not None
    return rec


def test_unknown_option_at_decoration_lists_the_known_ones(app: kubenenc.App) -> None:
    with pytest.raises(ConfigurationError) as info:
        app.task(retires=3)
    message = str(info.value)
    assert "retires" in message
    for known in ("retries", "timeout", "priority", "pool", "concurrency", "backoff"):
        assert known in message
    assert app.tasks == {}


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"timeout": 0},
        {"pool": ""},
        {"retry_on": [int]},
        {"concurrency": {"running_limit": 1}},
        {"backoff": -1.0},
    ],
)
def test_bad_option_values_are_refused(app: kubenenc.App, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        app.task(**options)(add)


def test_decorator_with_and_without_options(app: kubenenc.App) -> None:
    plain = app.task(add)
    assert plain.id == f"{__name__}.add"
    tuned = app.task(retries=2, retry_on=ValueError, priority=4)(pay)
    assert tuned.options.retries == 2
    assert tuned.options.retry_on == (ValueError,)
    assert app.tasks == {plain.id: plain, tuned.id: tuned}
    assert plain.run(1, 5) == 6  # still the plain function underneath


def test_function_and_options_together_is_an_error(app: kubenenc.App) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        app.task(add, retries=1)  # type: ignore[call-overload]


def test_task_in_main_is_refused(app: kubenenc.App) -> None:
    def job() -> None: ...

    job.__module__ = "__main__"
    job.__qualname__ = "job"
    with pytest.raises(ConfigurationError, match="__main__") as info:
        app.task(job)
    assert "importable module" in str(info.value)


def test_nested_function_is_refused(app: kubenenc.App) -> None:
    def inner() -> None: ...

    with pytest.raises(ConfigurationError, match="module level"):
        app.task(inner)
    with pytest.raises(ConfigurationError, match="module level"):
        app.task(lambda: None)


def test_same_id_for_another_function_is_refused(app: kubenenc.App) -> None:
    app.task(add)
    app.task(add)  # the same function again is fine

    def impostor(a: int) -> int:
        return a

    impostor.__qualname__ = "add"
    with pytest.raises(ConfigurationError, match="already registered"):
        app.task(impostor)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((1, 2, 3), {}, "too many positional"),
        ((), {}, "missing a required argument: 'a'"),
        ((1,), {"c": 3}, "unexpected keyword argument 'c'"),
        ((1,), {"a": 1}, "multiple values for argument 'a'"),
    ],
)
def test_argument_binding_fails_at_the_call(
    app: kubenenc.App, args: tuple[Any, ...], kwargs: dict[str, Any], words: str
) -> None:
    task = app.task(add)
    with pytest.raises(TypeError, match=words) as info:
        task(*args, **kwargs)
    assert str(info.value).startswith("add()")
    assert app.counts() == {}


def test_unserializable_argument_is_named(app: kubenenc.App) -> None:
    task = app.task(take)
    with pytest.raises(SerializationError) as info:
        task({"ok": 1, "bad": object()})
    assert "take() argument 'value'['bad']" in str(info.value)
    assert app.counts() == {}


def test_concurrency_key_naming_an_unknown_argument_fails_at_decoration(
    app: kubenenc.App,
) -> None:
    policy = ConcurrencyPolicy(running_limit=1, key=("customer", "currency"))
    with pytest.raises(ConfigurationError) as info:
        app.task(concurrency=policy)(pay)
    message = str(info.value)
    assert "currency" in message
    assert "customer, amount" in message  # lists what the function takes
    assert app.tasks == {}


def test_call_registers_a_pending_invocation_with_bound_arguments(app: kubenenc.App) -> None:
    task = app.task(priority=3, pool="math")(add)
    inv = task(1)
    rec = stored(app, inv)
    assert rec.status is Status.PENDING
    assert json.loads(rec.args) == {"a": 1, "b": 2}  # defaults applied
    assert (rec.task, rec.app, rec.priority, rec.pool) == (task.id, "t", 3, "t:math")
    assert rec.display == "add(1, 2)"


def test_same_call_has_the_same_key_whatever_the_argument_form(app: kubenenc.App) -> None:
    task = app.task(add)
    keys = {stored(app, inv).call_key for inv in (task(1, 5), task(1, b=5), task(b=5, a=1))}
    assert len(keys) == 1
    assert stored(app, task(1, 6)).call_key not in keys


def test_with_options_keeps_call_options_apart_from_task_arguments(app: kubenenc.App) -> None:
    task = app.task(order)
    inv = task.with_options(priority=9, pool="fast", timeout=5)(
        "book", priority="high", pool="p", timeout=7
    )
    rec = stored(app, inv)
    assert json.loads(rec.args) == {"item": "book", "priority": "high", "pool": "p", "timeout": 7}
    assert (rec.priority, rec.pool, rec.timeout) == (9, "t:fast", 5)
    plain = stored(app, task("pen", priority="urgent"))
    assert json.loads(plain.args)["priority"] == "urgent"
    assert (plain.priority, plain.pool, plain.timeout) == (0, "t:default", None)


def test_with_options_refuses_unknown_or_bad_call_options(app: kubenenc.App) -> None:
    task = app.task(order)
    with pytest.raises(TypeError):
        task.with_options(priorty=1)  # type: ignore[call-arg]
    bound = task.with_options(priority=1)
    with pytest.raises(ConfigurationError, match="priorty") as info:
        bound.with_options(priorty=2)
    assert "known:" in str(info.value)
    with pytest.raises(ConfigurationError, match="timeout"):
        task.with_options(timeout=0)
    rec = stored(app, bound.with_options(pool="slow")("x"))
    assert (rec.priority, rec.pool) == (1, "t:slow")


def test_depends_on_through_with_options(app: kubenenc.App) -> None:
    first = app.task(add)(1)
    later = app.task(other).with_options(depends_on=[first])(2)
    rec = stored(app, later)
    assert rec.status is Status.WAITING_DEPENDENCIES
    assert rec.depends_on == (first.id,)


def test_policy_keys_reach_the_backend(app: kubenenc.App) -> None:
    policy = ConcurrencyPolicy(running_limit=1, key=("customer",), registration="reject")
    task = app.task(concurrency=policy)(pay)
    first = task(1, 10.0)
    rec = stored(app, first)
    assert rec.running_limit == 1
    assert rec.running_key is not None
    assert rec.registration_key is not None
    with pytest.raises(RegistrationRejected) as info:
        task(1, 99.0)
    assert info.value.existing_id == first.id
    assert stored(app, task(2, 10.0)).running_key != rec.running_key


def test_parallelize_accepts_tuples_mappings_and_single_values(app: kubenenc.App) -> None:
    group = app.task(add).parallelize([(1, 2), {"a": 3}, 4])
    assert len(group) == 3
    args = [json.loads(stored(app, inv).args) for inv in group]
    assert args == [{"a": 1, "b": 2}, {"a": 3, "b": 2}, {"a": 4, "b": 2}]


def test_app_name_is_checked() -> None:
    for bad in ("", "a b", "x/y"):
        with pytest.raises(ConfigurationError):
            kubenenc.App(bad, backend=MemoryBackend())


def test_pickled_results_are_refused_by_a_json_app(app: kubenenc.App) -> None:
    with pytest.raises(ConfigurationError, match="pickle"):
        app.serializer_for("pickle")
    assert app.serializer_for("json") is app.serializer
    pickled = kubenenc.App("p", backend=MemoryBackend(), serializer="pickle")
    assert pickled.serializer_for("pickle").name == "pickle"


def test_named_policy_is_read_from_the_backend_at_the_call(app: kubenenc.App) -> None:
    task = app.task(concurrency="per-customer")(pay)  # not stored yet: fine at decoration
    with pytest.raises(ConfigurationError, match="per-customer"):
        task(1, 2.0)
    assert app.counts() == {}
    spec = ConcurrencyPolicy(running_limit=1, key=("customer",)).model_dump_json()
    app.backend.set_policy("per-customer", spec)
    rec = stored(app, task(1, 2.0))
    assert rec.running_limit == 1
    assert rec.running_key is not None


def test_named_policy_naming_an_unknown_argument_fails_at_the_call(app: kubenenc.App) -> None:
    spec = ConcurrencyPolicy(running_limit=1, key=("user",)).model_dump_json()
    app.backend.set_policy("per-user", spec)
    task = app.task(concurrency="per-user")(pay)
    with pytest.raises(ConfigurationError, match="user"):
        task(1, 2.0)
    assert app.counts() == {}


def test_a_large_parallelize_registers_every_batch_in_call_order(app: kubenenc.App) -> None:
    group = app.task(add).parallelize([(i, 1) for i in range(2500)])
    assert [json.loads(r.args)["a"] for r in app.backend.get_many(group.ids)] == list(range(2500))
    assert len(set(group.ids)) == 2500


def test_a_wrong_argument_late_in_a_large_parallelize_registers_nothing(
    app: kubenenc.App,
) -> None:
    calls: list[Any] = [(i, 1) for i in range(2500)]
    calls[2400] = (1, 2, 3)
    with pytest.raises(TypeError):
        app.task(add).parallelize(calls)
    assert sum(app.backend.counts().values()) == 0


class SecondRegisterFails(MemoryBackend):
    """A memory backend whose second ``register`` call finds the server down."""

    calls = 0

    def register(self, new: Any, now: float) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise kubenenc.errors.BackendUnavailable("down")
        return super().register(new, now)


def test_a_large_parallelize_stops_at_the_first_failed_batch() -> None:
    backend = SecondRegisterFails()
    app = kubenenc.App("t", backend=backend)
    with pytest.raises(kubenenc.errors.BackendUnavailable):
        app.task(add).parallelize([(i, 1) for i in range(5000)])
    assert backend.calls == 2  # batches go one after another: none is sent after the failed one
    assert sum(backend.counts().values()) == 1000
