"""Log lines that say which run they come from, as text or as one JSON object per line.

Every line logged while a task runs carries the invocation id, the task, the attempt and
the worker id, whatever logger the task uses: the worker binds a :class:`RunFields` to a
context variable around each run (:func:`bound`), and :class:`RunFieldsFilter`, installed on
the handler by :func:`configure`, copies it onto each record. A context variable (not a
thread-local) is what makes this hold in every execution mode: each thread of the thread
pool, each asyncio task of the async pool (a task copies the context it was created in) and
each child process of the process pool (which configures its own handler) sees only its own
run.

``configure(fmt="json")`` is what ``kubenenc worker --log-format json`` and
``kubenenc operator --log-format json`` call: one object per line with ``time``, ``level``,
``logger``, ``message``, the run fields when inside a run, ``exc`` for a traceback, and any
``extra={...}`` fields a caller passed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, NamedTuple

__all__ = ["LogFormat", "RunFields", "RunFieldsFilter", "JsonFormatter", "bound", "configure"]

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(run)s: %(message)s"


class RunFields(NamedTuple):
    """What identifies one run of one invocation in a log line (a named tuple: one is
    built per run, and it builds several times faster than a frozen dataclass)."""

    invocation_id: str
    task: str
    attempt: int
    worker_id: str


_current: ContextVar[RunFields | None] = ContextVar("kubenenc_run_fields", default=None)


@contextlib.contextmanager
def bound(fields: RunFields) -> Iterator[None]:
    """Log lines inside the block (in this context) carry ``fields``."""
    token = _current.set(fields)
    try:
        yield
    finally:
        _current.reset(token)


def bind(fields: RunFields) -> Any:
    """Like :func:`bound` without a block; pass the returned token to :func:`unbind`."""
    return _current.set(fields)


def unbind(token: Any) -> None:
    """End what :func:`bind` started."""
    _current.reset(token)


def current() -> RunFields | None:
    """The run this context logs for, if any."""
    return _current.get()


_RUN_KEYS = ("invocation_id", "task", "attempt", "worker_id")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "run"}


class RunFieldsFilter(logging.Filter):
    """Adds the bound run's fields to every record (``None`` outside a run) and ``run``, a
    short text form for the text format (empty outside a run). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _current.get()
        if fields is None:
            for key in _RUN_KEYS:
                if not hasattr(record, key):
                    setattr(record, key, None)
            record.run = ""
            return True
        for key, value in fields._asdict().items():
            setattr(record, key, value)
        record.run = (
            f" [{fields.task} {fields.invocation_id} attempt={fields.attempt} "
            f"worker={fields.worker_id}]"
        )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key in _RUN_KEYS and value is None:
                continue
            out[key] = value if _is_json(value) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def configure(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Send the root logger's lines to stderr in ``fmt``, with the run fields.

    Replaces the root logger's handlers (so calling it again switches the format)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RunFieldsFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
