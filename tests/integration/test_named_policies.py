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
