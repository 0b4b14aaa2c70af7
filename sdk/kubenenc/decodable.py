"""The classes stored data may be decoded to: an allowlist per App.

The JSON serializer stores enums, dataclasses and pydantic models by class path
(``module:qualname``). Decoding such a value calls code of that class (an enum lookup, a
dataclass ``__init__``/``__post_init__``, a model's validators), so the path must never be
what picks the code to run: anyone who can write one record to the backend would choose it.

Instead the App *declares* what may be decoded:

- every enum, dataclass and pydantic model named in a task's parameter or return annotations
  (also inside ``list[...]``, ``X | None``, ``dict[str, X]``, ``Annotated[X, ...]`` and the
  fields of a declared dataclass), collected when first needed so that annotations naming
  classes defined later in the module resolve;
- the classes passed as ``App(..., allowed_types=[...])``;
- subclasses of those classes (a task declared ``-> Animal`` may return a ``Dog``).

A failed call's error is stored as a type path and a message; the caller rebuilds it with
its own type only for built-in exceptions, kubenenc's own, the ``retry_on`` types of the
app's tasks and exception classes passed in ``allowed_types`` (exactly those: a subclass
walk from ``Exception`` would reach every class). Any other error arrives as
:class:`~kubenenc.errors.RemoteError` carrying the type's name.

Nothing else is ever constructed: a class path outside the list fails with
:class:`~kubenenc.errors.SerializationError`, whatever module happens to be imported. The
lookup walks only the declared classes and their subclasses, never a module's attributes.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import threading
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel

from kubenenc import errors

Kind = Literal["enum", "dataclass", "pydantic"]
"""The serializer tag a class is stored under."""


def class_path(cls: type) -> str:
    """``module:qualname``, the name a class is stored under."""
    return f"{cls.__module__}:{cls.__qualname__}"


def error_path(cls: type) -> str:
    """``module.qualname``, the name an exception type is stored under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _standard_errors() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in (builtins, errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException):
                found[error_path(value)] = value
    return found


_STANDARD_ERRORS = _standard_errors()


def kind_of(cls: object) -> Kind | None:
    """The tag ``cls`` is stored under, or None if it is not a storable class."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, enum.Enum):
        return "enum"
    if issubclass(cls, BaseModel):
        return "pydantic"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    return None


class DecodableTypes:
    """An allowlist of storable classes, looked up by class path and tag.

    Thread-safe. ``add_annotations_of(func)`` records a function whose annotations are read
    on the next miss (a failed resolution is retried on later misses, so a task defined
    before the classes it names still works once they exist).
    """

    def __init__(self, classes: Iterable[type] = ()) -> None:
        self._by_path: dict[str, type] = {}
        self._errors: dict[str, type[BaseException]] = dict(_STANDARD_ERRORS)
        self._pending: list[Callable[..., Any]] = []
        self._lock = threading.Lock()
        for cls in classes:
            self.add(cls)

    def add(self, cls: type) -> None:
        """Allow ``cls``: a storable class (and those its dataclass fields name), or an
        exception type a caller may rebuild."""
        if isinstance(cls, type) and issubclass(cls, BaseException):
            self.add_error(cls)
            return
        if kind_of(cls) is None:
            raise TypeError(
                f"allowed_types: {cls!r} is not an Enum, a dataclass, a pydantic model or an "
                "exception class; other types are stored as plain JSON and need no declaration"
            )
        with self._lock:
            self._collect(cls)

    def add_error(self, cls: type[BaseException]) -> None:
        """Let a caller rebuild a stored error of exactly type ``cls``."""
        self._errors[error_path(cls)] = cls

    def error(self, path: str) -> type[BaseException] | None:
        """The declared exception type stored as ``path``, else None."""
        return self._errors.get(path)

    def add_annotations_of(self, func: Callable[..., Any]) -> None:
        """Allow the storable classes ``func``'s annotations name (resolved lazily)."""
        with self._lock:
            self._pending.append(func)

    def lookup(self, path: str, kind: Kind) -> type | None:
        """The declared class stored as ``path`` under tag ``kind``, else None."""
        cls = self._by_path.get(path)
        if cls is None:
            with self._lock:
                self._resolve_pending()
                cls = self._by_path.get(path) or self._subclass(path)
        return cls if cls is not None and kind_of(cls) == kind else None

    def allows(self, cls: type) -> bool:
        """Whether a value of class ``cls`` would decode back to ``cls``."""
        kind = kind_of(cls)
        return kind is not None and self.lookup(class_path(cls), kind) is cls

    def names(self) -> list[str]:
        """The declared class paths (for error messages and ``kubenenc config``)."""
        with self._lock:
            self._resolve_pending()
            return sorted(self._by_path)

    def _subclass(self, path: str) -> type | None:
        seen: set[type] = set()
        stack = list(self._by_path.values())
        while stack:
            cls = stack.pop()
            if cls in seen:
                continue
            seen.add(cls)
            subs: list[type] = cls.__subclasses__()
            for sub in subs:
                if class_path(sub) == path:
                    return sub
                stack.append(sub)
        return None

    def _resolve_pending(self) -> None:
        still: list[Callable[..., Any]] = []
        for func in self._pending:
            try:
                hints = typing.get_type_hints(func)
            except Exception:  # a name not defined yet: try again later
                still.append(func)
                continue
            for hint in hints.values():
                self._collect_hint(hint)
        self._pending = still

    def _collect(self, cls: type) -> None:
        path = class_path(cls)
        if path in self._by_path:
            return
        self._by_path[path] = cls
        if kind_of(cls) == "dataclass":
            try:
                hints = typing.get_type_hints(cls)
            except Exception:  # unresolvable field annotations add nothing
                return
            for hint in hints.values():
                self._collect_hint(hint)

    def _collect_hint(self, hint: Any) -> None:
        stack = [hint]
        while stack:
            item = stack.pop()
            if isinstance(item, type) and kind_of(item) is not None:
                self._collect(item)
            origin = typing.get_origin(item)
            if origin is Literal:
                continue
            if origin is not None or isinstance(item, types.UnionType):
                stack.extend(typing.get_args(item))
