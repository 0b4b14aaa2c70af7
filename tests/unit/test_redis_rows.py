"""How the Redis backend encodes outcomes for the finish scripts and turns the read and claim
scripts' rows into records (no server)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from typing import Any

from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, InvocationRecord, Outcome, OutcomeKind, Transition
from kubenenc.status import Status
from kubenenc_redis.backend import _flags, _outcome_arg, _record, _records


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
    text = _outcome_arg(outcomes)
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
    assert json.loads(_outcome_arg([])) == []


def test_finish_flags_read_from_a_string_or_an_earlier_versions_list() -> None:
    assert _flags("1011") == [True, False, True, True]
    assert _flags([1, 0]) == [True, False]
    assert _flags("") == []


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


def _texts(*rows: tuple[dict[str, Any] | None, list[Any] | bool]) -> tuple[str, str]:
    return json.dumps([d for d, _ in rows]), json.dumps([r for _, r in rows])


def test_rows_become_records_equal_to_fully_built_ones_both_ways() -> None:
    found = _records(_texts((_d(1), _rest(1)), (None, False), (_d(2), _rest(2))))
    assert found[1] is None
    for i, rec in ((1, found[0]), (2, found[2])):
        assert rec is not None
        full = _record([_d(i), *_rest(i)[1:]])
        assert isinstance(rec, InvocationRecord)
        assert rec == full and full == rec
        assert rec != _record([_d(3), *_rest(3)[1:]])
        assert rec.attempt == 1 and rec.lost == 2 and rec.waiters == 3
        assert rec.worker == f"w{i}" and rec.not_before == 102.75 and rec.updated_at == 101.5
        assert rec.error == ErrorInfo("builtins.ValueError", "bad", "tb")
        assert rec.depends_on == ("a" * 32,) and rec.running_limit == 4
        assert rec.history == []


def test_the_fields_a_run_reads_are_set_at_once_and_the_rest_on_first_use() -> None:
    rec = _records(_texts((_d(7), _rest(7))))[0]
    assert rec is not None
    slots = InvocationRecord.__slots__
    unset = {f for f in slots if f != "__weakref__" and not _has_slot(rec, f)}
    assert {"id", "task", "args", "serializer", "timeout", "status", "result"}.isdisjoint(unset)
    assert "display" in unset and "error" in unset
    assert rec.status is Status.RETRY and rec.result is None and rec.timeout == 1.5
    assert rec.display == "t(i=7)"  # fills every field
    assert all(_has_slot(rec, f) for f in unset)


def _has_slot(rec: InvocationRecord, name: str) -> bool:
    try:
        object.__getattribute__(rec, name)
    except AttributeError:
        return False
    return True


def test_a_lazy_record_copies_pickles_and_replaces_like_a_record() -> None:
    rec = _records(_texts((_d(9), _rest(9))))[0]
    assert rec is not None
    full = _record([_d(9), *_rest(9)[1:]])
    assert pickle.loads(pickle.dumps(rec)) == full
    assert copy.deepcopy(rec) == full
    assert dataclasses.asdict(rec) == dataclasses.asdict(full)
    moved = dataclasses.replace(rec, status=Status.PENDING)
    assert moved.status is Status.PENDING and moved.display == full.display


def test_a_field_set_before_the_others_are_filled_is_kept() -> None:
    rec = _records(_texts((_d(5), _rest(5))))[0]
    assert rec is not None
    rec.history = [Transition(Status.PENDING, 1.0, None, None)]  # still a mutable record
    rec.timeout = 9.0
    assert rec.display == "t(i=5)"  # fills the others
    assert rec.history == [Transition(Status.PENDING, 1.0, None, None)]
    assert rec.timeout == 9.0
