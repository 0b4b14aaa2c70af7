"""How the Redis backend encodes outcomes and commands and turns the read and claim scripts'
rows into records (no server)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from typing import Any

import pytest
import redis
from kubenenc.ids import InvocationId, TaskId
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    NewInvocation,
    Outcome,
    OutcomeKind,
    Transition,
)
from kubenenc.status import Status
from kubenenc_redis.link import bulk, command, pack
from kubenenc_redis.rows import (
    claimed,
    finish_flags,
    full_record,
    outcome_arg,
    read_rows,
    register_texts,
    serializer_of,
)


def test_outcomes_are_the_json_of_seven_strings_each() -> None:
    err = ErrorInfo("m.Err", 'bad "é"\n\u2028', "tb")
    outcomes = [
        Outcome(InvocationId('a"1'), OutcomeKind.SUCCESS, '{"x":1}'),
        Outcome(InvocationId("b"), OutcomeKind.SUCCESS),
        Outcome(
            InvocationId("c"),
            OutcomeKind.RETRY,
            error=err,
            retry_at=1764415000.123456789,
            reason="Err",
        ),
        Outcome(InvocationId("d"), OutcomeKind.FAILED, error=err, reason="Err"),
        Outcome(InvocationId("e"), OutcomeKind.HANDED_BACK, reason="drain"),
    ]
    text = outcome_arg(outcomes)
    assert text.isascii()
    assert json.loads(text) == [
        ["a\"1", "success", "1", '{"x":1}', "", "0.0", ""],
        ["b", "success", "0", "", "", "0.0", ""],
        ["c", "retry", "0", "", json.dumps(["m.Err", 'bad "é"\n\u2028', "tb"],
         separators=(",", ":")), "1764415000.1234567", "Err"],
        ["d", "failed", "0", "", json.dumps(["m.Err", 'bad "é"\n\u2028', "tb"],
         separators=(",", ":")), "0.0", "Err"],
        ["e", "handed_back", "0", "", "", "0.0", "drain"],
    ]  # fmt: skip
    assert json.loads(outcome_arg([])) == []


def test_finish_flags_read_from_a_string() -> None:
    assert finish_flags("1011") == [True, False, True, True]
    assert finish_flags("") == []


def _d(i: int) -> dict[str, Any]:
    return {
        "id": f"{i:032x}", "app": "app", "task": "m.t", "args": f'{{"i":{i}}}',
        "call_key": f"m.t#{i}", "display": f"t(i={i})", "pool": "p", "priority": 3,
        "max_retries": 2, "timeout": 1.5, "running_key": "k", "running_limit": 4,
        "registration_key": None, "depends_on": ["a" * 32], "parent": None,
        "serializer": "json", "created_at": 100.25,
    }  # fmt: skip


def _rest(i: int) -> list[Any]:
    err = json.dumps(["builtins.ValueError", "bad", "tb"])
    return [0, "RETRY", "101.5", "1", "2", f"w{i}", "3", "102.75", False, err]


def _c(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _claim_texts(*ids: int) -> tuple[str, str]:
    return _c([_d(i) for i in ids]), _c([_rest(i) for i in ids])


def _read(*ids: int | None) -> list[InvocationRecord | None]:
    """Records as the read script answers for ``ids`` (None: a missing record)."""
    ds = "\x1e".join("" if i is None else _c(_d(i)) for i in ids)
    rows = _c([False if i is None else _rest(i) for i in ids])
    return read_rows((ds, rows), [f"{i or 0:032x}" for i in ids])


def _full(i: int) -> InvocationRecord:
    return full_record([_d(i), *_rest(i)[1:]])


def _has_slot(rec: InvocationRecord, name: str) -> bool:
    try:
        object.__getattribute__(rec, name)
    except AttributeError:
        return False
    return True


def _unset(rec: InvocationRecord | None) -> set[str]:
    assert rec is not None
    return {f for f in InvocationRecord.__slots__ if f != "__weakref__" and not _has_slot(rec, f)}


def test_rows_become_records_equal_to_fully_built_ones_both_ways() -> None:
    got = claimed(_claim_texts(1, 2))
    read = _read(1, None, 2)
    assert read[1] is None
    for i, rec in ((1, got[0]), (2, got[1]), (1, read[0]), (2, read[2])):
        assert rec is not None
        assert isinstance(rec, InvocationRecord)
        assert rec == _full(i) and _full(i) == rec
        assert rec != _full(3)
        assert rec.attempt == 1 and rec.lost == 2 and rec.waiters == 3
        assert rec.worker == f"w{i}" and rec.not_before == 102.75 and rec.updated_at == 101.5
        assert rec.error == ErrorInfo("builtins.ValueError", "bad", "tb")
        assert rec.depends_on == ("a" * 32,) and rec.running_limit == 4
        assert rec.history == []


def test_a_claimed_record_has_what_a_run_reads_and_the_rest_on_first_use() -> None:
    rec = claimed(_claim_texts(7))[0]
    unset = _unset(rec)
    assert {"id", "task", "args", "serializer", "timeout", "status", "result"}.isdisjoint(unset)
    assert "display" in unset and "error" in unset
    assert rec.status is Status.RETRY and rec.result is None and rec.timeout == 1.5
    assert rec.display == "t(i=7)"  # fills every field
    assert not _unset(rec)


def test_a_read_record_keeps_its_registration_json_unparsed_until_needed() -> None:
    rec = _read(8)[0]
    unset = _unset(rec)
    assert {"id", "serializer", "status", "result"}.isdisjoint(unset)
    assert {"task", "args", "timeout", "display"} <= unset
    assert rec is not None
    assert rec.id == f"{8:032x}" and rec.serializer == "json" and rec.status is Status.RETRY
    assert rec.task == "m.t"  # parses and fills every field
    assert not _unset(rec) and rec == _full(8)


def test_the_serializer_is_read_from_the_registration_text_or_else_parsed() -> None:
    new = NewInvocation(
        id=InvocationId("b" * 32), app="app", task=TaskId("m.t"),
        args=_c({"text": '"serializer":"json"'}), call_key="m.t#1", display="t()",
        pool="p", serializer="pickle",
    )  # fmt: skip
    d = register_texts([new], 5.0)[1][0]
    assert d.count('"serializer":"') == 1  # the quotes in the argument are escaped
    assert serializer_of(d) == "pickle"
    odd = d.replace('"serializer":"pickle"', '"serializer":"a\\"b"')
    assert json.loads(odd)["serializer"] == 'a"b'
    assert serializer_of(odd) is None
    rest = _c([0, "SUCCESS", "6.0", "0", "0", False, "0", "0", "1", False])
    for text, serializer in ((d, "pickle"), (odd, 'a"b')):
        rec = read_rows((text, f"[{rest}]"), ["b" * 32])[0]
        assert rec is not None
        assert rec.serializer == serializer and rec.result == "1"
        assert rec.args == new.args


def test_a_lazy_record_copies_pickles_and_replaces_like_a_record() -> None:
    rec = _read(9)[0]
    assert rec is not None
    full = _full(9)
    assert pickle.loads(pickle.dumps(rec)) == full
    assert copy.deepcopy(rec) == full
    assert dataclasses.asdict(rec) == dataclasses.asdict(full)
    moved = dataclasses.replace(rec, status=Status.PENDING)
    assert moved.status is Status.PENDING and moved.display == full.display


def test_a_field_set_before_the_others_are_filled_is_kept() -> None:
    rec = _read(5)[0]
    assert rec is not None
    rec.history = [Transition(Status.PENDING, 1.0, None, None)]  # still a mutable record
    rec.timeout = 9.0
    assert rec.display == "t(i=5)"  # fills the others
    assert rec.history == [Transition(Status.PENDING, 1.0, None, None)]
    assert rec.timeout == 9.0


def test_a_command_encoded_ahead_is_what_redis_py_would_send() -> None:
    conn: Any = redis.Redis().connection_pool.make_connection()  # not connected: packs only
    ids = ["a" * 32, "é1", ""]
    expected = b"".join(conn.pack_command("EVALSHA", "abc", 1, "{p}", "0", "0", "", *ids))
    head = b"".join(bulk(x) for x in ("EVALSHA", "abc", "1", "{p}", "0", "0", ""))
    assert command(head, 7, [bulk(i) for i in ids]) == expected


def test_a_command_packed_here_is_what_redis_py_would_send() -> None:
    conn: Any = redis.Redis().connection_pool.make_connection()  # not connected: packs only
    big = "x" * 10_000  # redis-py sends values this large as separate buffers
    for args in (
        ("FCALL", "f", 1, "{p}", "0", "0.5", "", "é", b"\x00\xff", big),
        ("BLMOVE", "a", "a", "RIGHT", "LEFT", 0.25),
        ("BLPOP", "k", 5.0),
        ("SET", "n", -17),
        ("HSET", "h", Status.RUNNING, "x"),  # a str enum: its value
    ):
        assert pack(args) == b"".join(conn.pack_command(*args)), args
    with pytest.raises(TypeError):
        pack(("SET", "k", None))
    with pytest.raises(TypeError):
        pack(("SET", "k", True))
