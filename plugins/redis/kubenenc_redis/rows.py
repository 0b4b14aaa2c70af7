"""The scripts' wire format: the arguments the Python side encodes for them and the rows
they answer with, turned into records.

Every function here is pure (no server), so tests check the encodings against ``json`` and
the records against fully built ones (tests/unit/test_redis_rows.py). The texts are built
by hand where an encoder call per item cost more than the item; each such place says so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from kubenenc.backends.codec import decode_headers
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    NewInvocation,
    Outcome,
    RegisterKind,
    Transition,
)
from kubenenc.serializers import compact_json, json_string
from kubenenc.status import Status

from kubenenc_redis.keys import RS, US


def time_arg(now: float) -> str:
    """A time as the scripts take it: Python's ``repr``, stored unchanged, so it reads back
    exactly."""
    return repr(float(now))


_compact = json.JSONEncoder(separators=(",", ":")).encode
KINDS = {kind.value: kind for kind in RegisterKind}
_q = json_string


def _opt(text: str | None) -> str:
    return "null" if text is None else _q(text)


def _due(not_before: float) -> str:
    """``not_before`` as the script reads it: ``0`` for at once (most calls), else the
    shortest text that reads back as the same float."""
    return "0" if not_before <= 0 else repr(float(not_before))


def register_texts(
    new: Sequence[NewInvocation], now: float, floors: Sequence[int] | None = None
) -> tuple[str, list[str]]:
    """The register script's arguments for ``new``: the JSON list of the fields the script
    reads, and per invocation the JSON of the fields fixed at registration (stored as the
    record's ``d`` field). ``floors``: each item's least sequence number (a 17th field).

    Speed: one format string per invocation instead of an encoder call per item (the
    encoder's set-up cost more than encoding these short fields); the same text
    ``json.dumps(..., separators=(",", ":"))`` writes for the lists and dicts these once were.
    """
    created = compact_json(float(now))
    items: list[str] = []
    static: list[str] = []
    for k, n in enumerate(new):
        floor = "" if floors is None else f',"{floors[k]}"'
        deps = compact_json(list(n.depends_on)) if n.depends_on else "[]"
        id, pool, app, call = _q(n.id), _q(n.pool), _q(n.app), _q(n.call_key)
        display = _q(n.display)
        rkey, reg, parent = _opt(n.running_key), _opt(n.registration_key), _opt(n.parent)
        limit = "" if n.running_limit is None else str(n.running_limit)
        items.append(
            f"[{id},{_q(n.registration_key or '')},{_q(n.registration)},{pool},"
            f"{_q(str(n.priority))},{app},{_q(n.running_key or '')},{_q(limit)},{call},"
            f"{display},{_q(n.parent or '')},{deps},{_q(_due(n.not_before))},"
            f"{_q(n.rate_key or '')},{_q(n.rate or '')},{_q(n.callbacks or '')}{floor}]"
        )
        static.append(
            f'{{"id":{id},"app":{app},"task":{_q(n.task)},"args":{_q(n.args)},'
            f'"call_key":{call},"display":{display},"pool":{pool},'
            f'"priority":{compact_json(n.priority)},"max_retries":{compact_json(n.max_retries)},'
            f'"timeout":{compact_json(n.timeout)},"running_key":{rkey},'
            f'"running_limit":{compact_json(n.running_limit)},"registration_key":{reg},'
            f'"depends_on":{deps},"parent":{parent},'
            + (f'"headers":{_compact(dict(n.headers))},' if n.headers else "")  # before serializer
            + f'"serializer":{_q(n.serializer)},"created_at":{created}'
            + ("" if n.rate is None else f',"rate_key":{_opt(n.rate_key)},"rate":{_q(n.rate)}')
            + ("}" if n.callbacks is None else f',"callbacks":{_q(n.callbacks)}}}')
        )
    return f"[{','.join(items)}]", static


_STATUS = {status.value: status for status in Status}


_FIELDS = tuple(f.name for f in dataclasses.fields(InvocationRecord))


class LazyRecord(InvocationRecord):
    """An :class:`InvocationRecord` read from a script's row, with the fields that running
    or collecting a call reads set at once and the others filled in from the row on first
    use of any of them.

    Speed: a worker and ``results()`` pay only for the handful of fields they read. Building
    a whole record (two dozen fields, conversions, the history) costs more than a worker
    spends on a no-op task's run, and so does parsing the JSON of the fields fixed at
    registration (``d``). A claimed record has id, task, args, serializer, timeout,
    status and result set (``d`` parsed: a run needs most of it); a record read by
    ``get``/``get_many`` has id, serializer, status and result set, and its ``d`` is parsed
    only when another field is read. A field not set yet is an empty slot, whose read falls
    through to :meth:`__getattr__`, which fills every field not set yet; after that it is
    an ordinary record. Equal to an :class:`InvocationRecord` with the same fields."""

    __slots__ = ("_row",)
    _row: list[Any]

    def __getattr__(self, name: str) -> Any:
        if name not in _FIELDS:
            raise AttributeError(name)
        row = self._row
        if isinstance(row[0], str):
            row[0] = json.loads(row[0])
        full = full_record(row)
        for field in _FIELDS:
            try:
                object.__getattribute__(self, field)  # set already (maybe changed): kept
            except AttributeError:
                object.__setattr__(self, field, getattr(full, field))
        return object.__getattribute__(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvocationRecord):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as InvocationRecord


def _shell(row: list[Any], id: str, serializer: str) -> LazyRecord:
    """A :class:`LazyRecord` of ``row`` with id, serializer, status and result set."""
    rec = object.__new__(LazyRecord)
    rec._row = row
    rec.id = InvocationId(id)
    rec.serializer = serializer
    rec.status = _STATUS[row[1]]
    rec.result = row[8] if row[8] is not False else None
    return rec


def _lazy(row: list[Any]) -> InvocationRecord:
    """A :class:`LazyRecord` of a row as :func:`full_record` takes it (``d`` parsed), with
    what a run needs set too."""
    d: dict[str, Any] = row[0]
    rec = _shell(row, d["id"], d.get("serializer", "json"))
    rec.task = d["task"]
    rec.args = d["args"]
    rec.timeout = d.get("timeout")
    rec.attempt = int(row[3])  # a run's log fields and trace context read these two
    rec.headers = decode_headers(d.get("headers"))
    return rec


def claimed(texts: Sequence[str]) -> list[InvocationRecord]:
    """The records of a claim: two JSON texts, the records' ``d`` objects and the rest of
    their rows with 0 in the place of ``d`` (see ``rows_json`` in ``lua/lib_claim.lua``).
    Speed: two JSON parses per claim instead of one per record."""
    out: list[InvocationRecord] = []
    for d, row in zip(json.loads(texts[0]), json.loads(texts[1]), strict=True):
        row[0] = d
        out.append(_lazy(row))
    return out


_SERIALIZER = '"serializer":"'


def serializer_of(d: str) -> str | None:
    """The ``serializer`` of a record's ``d`` JSON text, found without parsing it, or None
    when it cannot be read so (then parse). Speed: a record read to collect a result is
    decoded without its ``d`` ever being parsed. The text is compact JSON of one flat object
    (see :func:`register_texts`), whose string values escape every quote, so the key with
    its quotes occurs once, as the key."""
    at = d.rfind(_SERIALIZER)
    if at < 0:
        return None
    start = at + len(_SERIALIZER)
    end = d.find('"', start)
    value = d[start:end]
    return None if end < 0 or "\\" in value else value


def read_rows(texts: Sequence[str], ids: Sequence[str]) -> list[InvocationRecord | None]:
    """The records of a reply of the read script for ``ids``: the records' ``d`` texts
    joined by RS (which JSON text cannot hold unescaped; empty for a missing record), and
    the JSON of the rest of their rows with 0 in the place of ``d`` (false for a missing
    record). Each ``d`` stays text until a field other than id, serializer, status and
    result is read (see :class:`LazyRecord`)."""
    out: list[InvocationRecord | None] = []
    rows = json.loads(texts[1])
    for id, d, row in zip(ids, texts[0].split(RS), rows, strict=True):
        if row is False:
            out.append(None)
            continue
        row[0] = d
        serializer = serializer_of(d)
        if serializer is None:
            row[0] = json.loads(d)
            out.append(_lazy(row))
            continue
        out.append(_shell(row, id, serializer))
    return out


def full_record(row: Sequence[Any]) -> InvocationRecord:
    """A record from a row of the read or claim scripts: ``[d, s, u, at, lo, w, wt, nb, r,
    e]`` plus the history text when read (``false``: a field not set; ``d`` parsed).
    Speed: built by one constructor call, no intermediate dict (it runs once per record
    whose fields are all read)."""
    d: dict[str, Any] = row[0]
    err = json.loads(row[9]) if row[9] else None
    get = d.get
    return InvocationRecord(
        id=d["id"], app=d["app"], task=d["task"], args=d["args"], call_key=d["call_key"],
        display=d["display"], pool=d["pool"], priority=d["priority"],
        status=_STATUS[row[1]], created_at=d["created_at"], updated_at=float(row[2]),
        max_retries=get("max_retries", 0), timeout=get("timeout"),
        running_key=get("running_key"), running_limit=get("running_limit"),
        registration_key=get("registration_key"),
        depends_on=tuple(get("depends_on", ())), parent=get("parent") or None,
        headers=decode_headers(get("headers")),
        serializer=get("serializer", "json"), attempt=int(row[3]), lost=int(row[4]),
        worker=row[5] or None, waiters=int(row[6]), not_before=float(row[7]),
        rate_key=get("rate_key"), rate=get("rate"), callbacks=get("callbacks"),
        result=row[8] if row[8] is not False else None,
        error=ErrorInfo(err[0], err[1], err[2]) if err else None,
        history=[
            Transition(_STATUS[status], float(at), WorkerId(worker) if worker else None,
                       reason or None)
            for status, at, worker, reason in (
                e.split(US, 3) for e in (row[10] or "").split(RS) if e
            )
        ]
        if len(row) > 10
        else [],
    )  # fmt: skip


def outcome_arg(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as the finish scripts read them: one JSON array (one argument, parsed
    once by the script) of seven strings each: id, kind, ``"1"`` when there is a result
    (else ``"0"``), the result, the error as the JSON of ``[type, message, traceback]`` (or
    ``""``), retry_at (see :func:`time_arg`), reason. One encoder call: a text built by hand
    bought too little here (bench/redis_tricks.py)."""
    return _compact([
        [o.id, o.kind.value, "0" if o.result is None else "1", o.result or "",
         "" if o.error is None else _compact([o.error.type, o.error.message, o.error.traceback]),
         time_arg(o.retry_at), o.reason or ""]
        for o in outcomes
    ])  # fmt: skip


def finish_flags(done: str) -> list[bool]:
    """The finish scripts' answer per outcome: a string of '1'/'0'."""
    return [x == "1" for x in done]
