"""What the SDK hands a backend for each call: fresh ids, and (Redis) the register texts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubenenc.ids import InvocationId, TaskId, new_invocation_id, new_invocation_ids
from kubenenc.records import NewInvocation
from kubenenc_redis.rows import register_texts


def test_new_invocation_ids_are_fresh_32_hex_ids() -> None:
    ids = new_invocation_ids(5000)
    assert len(ids) == 5000
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids) | {new_invocation_id()} | set(new_invocation_ids(5000))) == 10001
    assert new_invocation_ids(0) == []


def _new(**fields: Any) -> NewInvocation:
    base: dict[str, Any] = {
        "id": InvocationId("0" * 32),
        "app": "app",
        "task": TaskId("m.t"),
        "args": '{"x":"é\\"q"}',
        "call_key": "m.t#ab",
        "display": 't("é\u2028")',
    }
    return NewInvocation(**{**base, **fields})


NEW = [
    _new(),
    _new(
        pool="p", priority=5, max_retries=3, timeout=1.5, running_key="rk", running_limit=2,
        registration_key="gk", registration="dedupe", depends_on=(InvocationId("d1"),),
        parent=InvocationId("par"), serializer="pickle",
    ),
    _new(priority=-1, timeout=float("inf"), depends_on=(InvocationId("a"), InvocationId("b"))),
    _new(not_before=1765000000.123456, rate_key="m.t#k", rate="20/1/5"),
    _new(callbacks='{"success":{"task":"m.cb"}}'),
]  # fmt: skip


def test_redis_register_texts_are_the_stored_json_format() -> None:
    """The ``d`` field of every stored record and the script's item list, as JSON: readers of
    records written by earlier versions (and the script) expect exactly these fields."""
    items, static = register_texts(NEW, 12.25)
    assert all(n.headers is None for n in NEW)
    assert items == json.dumps(
        [
            [
                n.id, n.registration_key or "", n.registration, n.pool, str(n.priority), n.app,
                n.running_key or "", "" if n.running_limit is None else str(n.running_limit),
                n.call_key, n.display, n.parent or "", list(n.depends_on),
                "0" if n.not_before <= 0 else repr(n.not_before), n.rate_key or "", n.rate or "",
                n.callbacks or "",
            ]
            for n in NEW
        ],
        separators=(",", ":"),
    )  # fmt: skip
    assert static == [
        json.dumps(
            {
                **{
                    k: v
                    for k, v in n._asdict().items()
                    if k
                    not in (
                        "registration",
                        "not_before",
                        "rate_key",
                        "rate",
                        "callbacks",
                        "headers",
                    )
                },
                "depends_on": list(n.depends_on),
                "created_at": 12.25,
                **({} if n.rate is None else {"rate_key": n.rate_key, "rate": n.rate}),
                **({} if n.callbacks is None else {"callbacks": n.callbacks}),
            },
            separators=(",", ":"),
        )
        for n in NEW
    ]


def test_redis_register_texts_carry_headers_before_the_serializer() -> None:
    """Headers are stored only when there are some, before ``serializer``, which the reader
    finds from the end of the text (so a header named like it cannot fool it)."""
    n = NEW[0]._replace(headers={"serializer": "x", "traceparent": "00-a-b-01"})
    _, (static,) = register_texts([n], 12.25)
    assert json.loads(static)["headers"] == {"serializer": "x", "traceparent": "00-a-b-01"}
    assert static.index('"headers"') < static.rindex('"serializer":"')
    assert json.loads(static)["serializer"] == n.serializer


def test_invocations_built_on_first_read_read_as_a_list_would() -> None:
    from kubenenc.task import _Built

    built: list[int] = []

    def build(part: Any) -> list[NewInvocation]:
        built.append(len(part))
        return [_new(args=text) for _, text in part]

    encoded = [({}, str(i)) for i in range(1203)]
    lazy = _Built(encoded, build)
    assert len(lazy) == 1203 and built == []  # nothing built before it is read
    assert [n.args for n in lazy[0:3]] == ["0", "1", "2"]
    assert sum(built) == 3
    first = lazy[1]
    assert lazy[-1].args == "1202" and lazy[1202] is lazy[-1]
    assert [n.args for n in lazy] == [str(i) for i in range(1203)]
    assert [n.args for n in lazy[1000:]] == [str(i) for i in range(1000, 1203)]
    assert lazy[1] is first and sum(built) == 1203  # each built once, the same object again
    assert len({n.id for n in lazy}) == 1  # (_new's fixed id): items are what build made
    with pytest.raises(IndexError):
        lazy[1203]
