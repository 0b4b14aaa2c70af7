"""Tasks that name a policy stored in the backend follow it, and follow changes to it."""

from __future__ import annotations

import time

import pytest
from kubenenc import App, ConcurrencyPolicy, ConfigurationError, RegistrationRejected
from kubenenc.backends.memory import MemoryBackend

from tests.integration import named_policy_app as m


def test_named_policy_is_read_from_the_backend_and_changes_apply() -> None:
    backend = MemoryBackend()
    m.app.configure(backend)
    with pytest.raises(ConfigurationError, match="'per-user' is not stored"):
        m.charge(1, 5)
    backend.set_policy(
        "per-user", ConcurrencyPolicy(key=("user",), registration="reject").model_dump_json()
    )
    first = m.charge(1, 5)
    with pytest.raises(RegistrationRejected):
        m.charge(1, 6)
    assert m.charge(2, 6) != first  # another key
    backend.set_policy(
        "per-user", ConcurrencyPolicy(key=("user",), registration="dedupe").model_dump_json()
    )
    time.sleep(2.1)  # the SDK rereads a named policy every POLICY_TTL seconds
    assert m.charge(1, 7) == first


def test_named_policy_key_must_name_arguments() -> None:
    backend = MemoryBackend()
    m.app.configure(backend)
    backend.set_policy(
        "per-user", ConcurrencyPolicy(key=("customer",), running_limit=1).model_dump_json()
    )
    with pytest.raises(ConfigurationError, match="customer"):
        m.charge(1, 5)


def test_app_accepts_a_backend_object() -> None:
    app = App("x", backend=MemoryBackend())
    assert app.counts() == {}


def test_call_options_are_validated() -> None:
    m.app.configure(MemoryBackend())
    with pytest.raises(ConfigurationError, match="retries"):
        m.charge.with_options(retries=-3)
    with pytest.raises(ConfigurationError, match="timeout"):
        m.charge.with_options(timeout=-5)
    with pytest.raises(ConfigurationError, match="pool"):
        m.charge.with_options(pool="")
    with pytest.raises(ConfigurationError, match="timeout"):
        m.charge.with_options(priority=1).with_options(timeout=0)


def test_parallelize_reject_keeps_the_accepted_handles() -> None:
    from tests.integration import taskapp

    taskapp.app.configure(MemoryBackend())
    with pytest.raises(RegistrationRejected) as info:
        taskapp.rejecting.parallelize(["a", "b", "a", "c"])
    accepted = info.value.accepted
    assert [inv.record().args for inv in accepted] == ['{"k":"a"}', '{"k":"b"}', '{"k":"c"}']
    taskapp.app.close()
