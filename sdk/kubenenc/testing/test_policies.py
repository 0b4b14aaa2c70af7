"""Named concurrency policies stored in the backend (the operator writes them)."""

from __future__ import annotations

from kubenenc import Backend, ConcurrencyPolicy


def test_set_get_replace_delete_policies(backend: Backend) -> None:
    assert backend.get_policy("one-per-user") is None
    assert backend.policies() == {}
    spec = ConcurrencyPolicy(running_limit=1, key=("user",)).model_dump_json()
    backend.set_policy("one-per-user", spec)
    assert backend.get_policy("one-per-user") == spec
    other = ConcurrencyPolicy(registration="dedupe").model_dump_json()
    backend.set_policy("dedupe", other)
    assert backend.policies() == {"one-per-user": spec, "dedupe": other}
    changed = ConcurrencyPolicy(running_limit=2, key=("user",)).model_dump_json()
    backend.set_policy("one-per-user", changed)
    assert backend.get_policy("one-per-user") == changed
    backend.set_policy("one-per-user", None)
    assert backend.get_policy("one-per-user") is None
    assert backend.policies() == {"dedupe": other}
    backend.set_policy("never-stored", None)  # deleting a missing policy is no error
