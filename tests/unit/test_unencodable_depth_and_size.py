"""Values JSON cannot encode for reasons other than their type (an int past Python's 4,300
digit limit for int-to-text, nesting past the recursion limit) fail with SerializationError
naming where, as any other unencodable value does, not with a bare ValueError or
RecursionError (found by the chaos suite's bad-input flood, tests/chaos/test_bad_input.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubenenc import App, SerializationError
from kubenenc.backends.memory import MemoryBackend
from kubenenc.serializers import JsonSerializer

app = App("unencodable", backend=MemoryBackend())


@app.task
def echo(value: Any) -> Any:
    return value


def deep() -> list[Any]:
    tree: list[Any] = []
    for _ in range(100_000):
        tree = [tree]
    return tree


@pytest.mark.parametrize("value", [10**5000, [10**5000], deep()], ids=["int", "list", "deep"])
def test_an_argument_json_cannot_encode_is_a_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError, match="echo"):
        echo(value)


@pytest.mark.parametrize("value", [10**5000, {"a": 10**5000}, deep()], ids=["int", "dict", "deep"])
def test_a_result_json_cannot_encode_is_a_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError, match="echo\\(\\) result"):
        JsonSerializer().dumps_named(value, "echo() result")
