"""Task signatures: what a worker publishes, and how a call's keyword arguments are checked
against it by those who cannot import the task (the operator)."""

from __future__ import annotations

from typing import Any

from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.settings import Settings, WorkerSettings
from kubenenc.signatures import Signature, argument_problems, describe, signature_name
from kubenenc_worker.worker import Worker

from tests.support import wait_until


def charge(customer: int, amount: float = 0.0) -> str:
    return f"{customer}:{amount}"


def flexible(a: int, /, b: int, *args: int, c: int = 1, **extra: Any) -> int:
    return a + b + c


def test_describe_names_required_and_optional_parameters() -> None:
    sig = describe(charge)
    assert [(p.name, p.required) for p in sig.parameters] == [
        ("customer", True),
        ("amount", False),
    ]
    assert not sig.any_keyword and sig.by_position == ()
    other = describe(flexible)
    assert [p.name for p in other.parameters] == ["b", "c"]
    assert other.any_keyword and other.by_position == ("a",)
    assert Signature.model_validate_json(sig.model_dump_json()) == sig


def test_argument_problems_say_what_is_wrong_and_what_the_task_takes() -> None:
    sig = describe(charge)
    assert argument_problems(sig, {"customer": 1}) == []
    assert argument_problems(sig, {"customer": 1, "amount": 2.5}) == []
    problems = argument_problems(sig, {"amount": 2, "colour": "red"})
    assert problems == [
        "unknown argument(s) colour",
        "missing required argument(s) customer",
        "the task takes (customer, amount=...)",
    ]
    assert argument_problems(describe(flexible), {"b": 1, "zzz": 2})[0].startswith(
        "positional-only parameter(s) a"
    )


def test_a_worker_publishes_its_tasks_signatures_in_its_namespace() -> None:
    backend = MemoryBackend()
    app = App("sig", backend=backend, settings=Settings(namespace="shop"))
    app.task(charge)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=1)).start()
    try:
        name = signature_name(f"{__name__}.charge", "shop")
        assert name == f"shop/signature:{__name__}.charge"
        text = wait_until("the signature", lambda: backend.get_policy(name), timeout=10)
        assert Signature.model_validate_json(text) == describe(charge)
    finally:
        worker.stop(grace=5)
