"""Turning arguments and results into text that every backend can store.

The default :class:`JsonSerializer` writes plain JSON plus a documented set of tagged types,
each encoded as ``{"__kn__": tag, "v": value}``:

==============  =============================================================
Python type     stored as
==============  =============================================================
tuple           list of items (decoded back to a tuple)
set, frozenset  list of items
dict, non-str   list of ``[key, value]`` pairs (also any dict holding ``__kn__``)
keys
bytes           base64 text
datetime,       ISO 8601 text (time zone kept)
date, time
timedelta       seconds (float)
UUID            hex text
Decimal         text (exact)
Enum            class path + value
dataclass       class path + fields
pydantic model  class path + ``model_dump(mode="json")``
==============  =============================================================

Classes (enums, dataclasses, pydantic models) are looked up by ``module:qualname`` among the
modules *already imported* by the decoding process; data never causes an import, so the
store cannot make a worker load code. A worker imports the task's module, which imports the
types its signature uses, so this holds in practice.

:class:`PickleSerializer` accepts any picklable value. Unpickling runs code chosen by whoever
wrote the bytes: anyone who can write to the backend can then run code in every worker. It is
used only when an App opts in with ``serializer="pickle"``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import pickle
import sys
import uuid
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Protocol

from pydantic import BaseModel

from kubenenc.errors import SerializationError

_TAG = "__kn__"
_SCALARS = (str, int, float, bool, type(None))


class Serializer(Protocol):
    """Encodes values to text and back. ``name`` is stored so a reader knows the format."""

    name: str

    def dumps(self, value: Any) -> str:
        """Encode ``value``; raise :class:`SerializationError` naming what could not be encoded."""
        ...

    def loads(self, text: str) -> Any:
        """Decode text written by :meth:`dumps`."""
        ...


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _find_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise SerializationError(
            f"cannot decode {path}: module {module_name!r} is not imported in this process"
        )
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise SerializationError(f"cannot decode {path}: no such class")
    if not isinstance(obj, type):
        raise SerializationError(f"cannot decode {path}: not a class")
    return obj


def _tag(tag: str, value: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value}


def _encode(obj: Any, where: str) -> Any:  # noqa: C901, PLR0911, PLR0912 - one flat type switch
    if isinstance(obj, _SCALARS) and not isinstance(obj, enum.Enum):
        if isinstance(obj, float) and not math.isfinite(obj):  # NaN, +-inf are not JSON
            return _tag("float", repr(obj))
        return obj
    if isinstance(obj, list):
        return [_encode(x, f"{where}[{i}]") for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj) and _TAG not in obj:
            return {k: _encode(v, f"{where}[{k!r}]") for k, v in obj.items()}
        return _tag(
            "dict",
            [[_encode(k, where), _encode(v, f"{where}[{k!r}]")] for k, v in obj.items()],
        )
    if isinstance(obj, tuple):
        return _tag("tuple", [_encode(x, f"{where}[{i}]") for i, x in enumerate(obj)])
    if isinstance(obj, set | frozenset):
        tag = "frozenset" if isinstance(obj, frozenset) else "set"
        return _tag(tag, [_encode(x, where) for x in obj])
    if isinstance(obj, bytes | bytearray):
        return _tag("bytes", base64.b64encode(bytes(obj)).decode("ascii"))
    if isinstance(obj, dt.datetime):
        return _tag("datetime", obj.isoformat())
    if isinstance(obj, dt.date):
        return _tag("date", obj.isoformat())
    if isinstance(obj, dt.time):
        return _tag("time", obj.isoformat())
    if isinstance(obj, dt.timedelta):
        return _tag("timedelta", obj.total_seconds())
    if isinstance(obj, uuid.UUID):
        return _tag("uuid", obj.hex)
    if isinstance(obj, decimal.Decimal):
        return _tag("decimal", str(obj))
    if isinstance(obj, enum.Enum):
        return _tag("enum", [_class_path(type(obj)), _encode(obj.value, where)])
    if isinstance(obj, BaseModel):
        return _tag("pydantic", [_class_path(type(obj)), obj.model_dump(mode="json")])
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _encode(getattr(obj, f.name), where) for f in dataclasses.fields(obj)}
        return _tag("dataclass", [_class_path(type(obj)), fields])
    raise SerializationError(
        f"{where}: cannot encode a value of type {type(obj).__qualname__} as JSON; "
        "pass JSON types, datetime, UUID, Decimal, bytes, enums, dataclasses or pydantic "
        'models, or opt in to pickle with App(..., serializer="pickle")'
    )


def _decode_tagged(tag: str, v: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one flat switch
    if tag == "tuple":
        return tuple(v)
    if tag == "set":
        return set(v)
    if tag == "frozenset":
        return frozenset(v)
    if tag == "dict":
        return {_hashable(k): val for k, val in v}
    if tag == "bytes":
        return base64.b64decode(v)
    if tag == "datetime":
        return dt.datetime.fromisoformat(v)
    if tag == "date":
        return dt.date.fromisoformat(v)
    if tag == "time":
        return dt.time.fromisoformat(v)
    if tag == "timedelta":
        return dt.timedelta(seconds=v)
    if tag == "uuid":
        return uuid.UUID(hex=v)
    if tag == "decimal":
        return decimal.Decimal(v)
    if tag == "float":
        return float(v)
    if tag == "enum":
        return _find_class(v[0])(v[1])
    if tag == "pydantic":
        cls = _find_class(v[0])
        if not issubclass(cls, BaseModel):
            raise SerializationError(f"cannot decode {v[0]}: not a pydantic model")
        return cls.model_validate(v[1])
    if tag == "dataclass":
        cls = _find_class(v[0])
        if not dataclasses.is_dataclass(cls):
            raise SerializationError(f"cannot decode {v[0]}: not a dataclass")
        return cls(**v[1])
    raise SerializationError(f"unknown tag {tag!r} in stored data")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _object_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None or len(obj) != 2 or "v" not in obj:
        return obj
    return _decode_tagged(tag, obj["v"])


def to_json_tree(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (tagged types applied); names ``where`` in errors."""
    return _encode(value, where)


def canonical(tree: Any) -> Any:
    """``tree`` (from :func:`to_json_tree`) with its unordered parts in one fixed order.

    A set's items come out in hash order, which differs between processes for strings, and a
    dict with non-string keys keeps its insertion order; keys computed from the tree (see
    :mod:`kubenenc.concurrency`) must not depend on either, so equal calls match everywhere.
    """
    if isinstance(tree, list):
        return [canonical(x) for x in tree]
    if not isinstance(tree, dict):
        return tree
    out = {k: canonical(v) for k, v in tree.items()}
    if len(out) == 2 and out.get(_TAG) in ("set", "frozenset", "dict") and "v" in out:
        out["v"] = sorted(out["v"], key=lambda x: json.dumps(x, sort_keys=True))
    return out


def from_json_tree(tree: Any) -> Any:
    """Inverse of :func:`to_json_tree` for data already parsed by ``json.loads``."""
    if isinstance(tree, dict):
        decoded = {k: from_json_tree(v) for k, v in tree.items()}
        return _object_hook(decoded)
    if isinstance(tree, list):
        return [from_json_tree(x) for x in tree]
    return tree


json_string = encode_basestring_ascii
"""``json.dumps`` of one ``str`` (ASCII-escaped, quoted), without building an encoder."""

_compact = json.JSONEncoder(separators=(",", ":")).encode
_compact_sorted = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_compact_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
"""``json.dumps(..., separators=(",", ":"), allow_nan=False)`` without building an encoder
per call (which cost more than encoding a small value: it runs once per task result)."""


def _plain(value: Any) -> str | None:
    """``value`` as JSON if it is a plain scalar of an exact built-in type, else None."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return None


def compact_json(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"))``, the same text, faster for scalars.

    ``json.dumps`` builds an encoder on every call, which costs more than encoding a number
    or a short string; the SDK encodes several such values per call it registers.
    """
    text = _plain(value)
    return _compact(value) if text is None else text


def flat_json(mapping: Mapping[str, Any], *, sort_keys: bool = False) -> str | None:
    """``json.dumps(dict(mapping), separators=(",", ":"), sort_keys=sort_keys)`` when every
    key is a ``str`` and every value a plain scalar (the same text, built without an
    encoder); None otherwise, for the caller to take the general path."""
    items: Iterable[tuple[Any, Any]] = mapping.items()
    if sort_keys:
        if not all(type(key) is str for key in mapping):
            return None
        items = sorted(items)
    parts = []
    for key, value in items:
        text = _plain(value)
        if text is None or type(key) is not str:
            return None
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def sorted_json(tree: Any) -> str:
    """``json.dumps(tree, separators=(",", ":"), sort_keys=True)`` with a reused encoder."""
    return _compact_sorted(tree)


class JsonSerializer:
    """JSON with the tagged types listed in the module docstring. The default."""

    name = "json"

    def dumps(self, value: Any) -> str:
        """Encode ``value`` to compact JSON (keys kept in the caller's order)."""
        return _compact_strict(_encode(value, "value"))

    def dumps_named(self, value: Any, where: str) -> str:
        """Like :meth:`dumps`, naming ``where`` (e.g. an argument) in any error."""
        return _compact_strict(_encode(value, where))

    def loads(self, text: str) -> Any:
        """Decode JSON written by :meth:`dumps`."""
        return json.loads(text, object_hook=_object_hook)


class PickleSerializer:
    """Pickle, base64-wrapped. Unsafe with an untrusted store: see the module docstring."""

    name = "pickle"

    def dumps(self, value: Any) -> str:
        """Pickle ``value`` and wrap it in base64 text."""
        try:
            return base64.b64encode(pickle.dumps(value, protocol=5)).decode("ascii")
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(value).__qualname__}: {exc}") from exc

    def dumps_named(self, value: Any, where: str) -> str:
        """Like :meth:`dumps`, naming ``where`` in any error."""
        try:
            return self.dumps(value)
        except SerializationError as exc:
            raise SerializationError(f"{where}: {exc}") from exc

    def loads(self, text: str) -> Any:
        """Unpickle: runs code chosen by whoever wrote ``text``."""
        return pickle.loads(base64.b64decode(text))  # noqa: S301 - explicit opt-in only


def get_serializer(name: str) -> JsonSerializer | PickleSerializer:
    """Return the serializer called ``name`` (``json`` or ``pickle``)."""
    if name == "json":
        return JsonSerializer()
    if name == "pickle":
        return PickleSerializer()
    raise SerializationError(f"unknown serializer {name!r}; use 'json' or 'pickle'")
