"""Exceptions across processes: captured in a worker, rebuilt with their type for a caller."""

from __future__ import annotations

import sys
import traceback
from typing import Any

from kubenenc.errors import RemoteError
from kubenenc.records import ErrorInfo


def _message(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], str):
        return args[0]
    try:
        return str(exc) if not isinstance(args, tuple) or len(args) <= 1 else repr(args)
    except BaseException as failure:  # user code: its __str__ (or __repr__) may raise anything
        return f"<unprintable {type(exc).__qualname__}: str() raised {type(failure).__name__}>"


def error_info(exc: BaseException) -> ErrorInfo:
    """Capture ``exc`` (type path, message, formatted traceback). Never raises: an exception
    whose ``__str__`` raises still gives a readable message, so its call can end FAILED."""
    cls = type(exc)
    message = _message(exc)
    try:
        tb = "".join(traceback.format_exception(exc))
    except BaseException as failure:
        tb = f"<traceback unavailable: {type(failure).__name__}>"
    return ErrorInfo(f"{cls.__module__}.{cls.__qualname__}", message, tb)


def _find(path: str) -> Any:
    module_name, _, attr_path = path.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            obj: Any = module
            for part in attr_path.split("."):
                obj = getattr(obj, part, None)
            return obj
        module_name, _, head = module_name.rpartition(".")
        attr_path = f"{head}.{attr_path}"
    return None


def rebuild_error(info: ErrorInfo) -> BaseException:
    """The exception described by ``info``, of its own type when that type is importable here
    (already imported; nothing is imported by this) and takes one message argument; else
    :class:`RemoteError`. The remote traceback is attached as a note."""
    cls = _find(info.type)
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(info.message)
        except Exception:
            exc = RemoteError(f"{info.type}: {info.message}", info.type, info.traceback)
    else:
        exc = RemoteError(f"{info.type}: {info.message}", info.type, info.traceback)
    if info.traceback:
        exc.add_note(f"raised in a worker:\n{info.traceback.rstrip()}")
    return exc
