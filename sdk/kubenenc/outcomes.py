"""Exceptions across processes: captured in a worker, rebuilt with their type for a caller."""

from __future__ import annotations

import traceback

from kubenenc.decodable import DecodableTypes
from kubenenc.errors import RemoteError
from kubenenc.records import ErrorInfo

_STANDARD = DecodableTypes()


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


def rebuild_error(info: ErrorInfo, types: DecodableTypes | None = None) -> BaseException:
    """The exception described by ``info``, of its own type when ``types`` declares it (see
    :mod:`kubenenc.decodable`: built-in and kubenenc errors always) and it takes one message
    argument; else :class:`RemoteError`. Nothing is imported or looked up in a module. The
    remote traceback is attached as a note."""
    cls = (types or _STANDARD).error(info.type)
    exc: BaseException
    if cls is not None and issubclass(cls, Exception):
        try:
            exc = cls(info.message)
        except Exception:
            exc = RemoteError(f"{info.type}: {info.message}", info.type, info.traceback)
    else:
        exc = RemoteError(f"{info.type}: {info.message}", info.type, info.traceback)
    if info.traceback:
        exc.add_note(f"raised in a worker:\n{info.traceback.rstrip()}")
    return exc
