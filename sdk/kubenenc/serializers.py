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

Decoding runs no code that the data chooses. Classes (enums, dataclasses, pydantic models)
are stored by ``module:qualname`` but decoded only to classes the App *declares* (see
:mod:`kubenenc.decodable`: the types named in task signatures, plus
``App(..., allowed_types=[...])``), and only under their own tag: ``enum`` to an
``enum.Enum``, ``dataclass`` to a dataclass (its declared fields only), ``pydantic`` to a
``BaseModel`` (validated). Any other path fails with :class:`SerializationError` naming the
tag; data never causes an import or an attribute walk on a module. Encoding refuses a class
the reader could not decode, so the error reaches the caller, not a worker. Every failure to
decode (bad JSON, a malformed tag, a value its type refuses) is a :class:`SerializationError`.

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
import uuid
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Protocol, cast

from pydantic import BaseModel

from kubenenc.decodable import DecodableTypes, Kind, class_path
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


def _tag(tag: str, value: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value}


def _declared(obj: Any, where: str, types: DecodableTypes | None) -> str:
    """The class path of ``obj``, after checking that a reader would decode it."""
    cls = type(obj)
    if types is not None and not types.allows(cls):
        raise SerializationError(
            f"{where}: {class_path(cls)} is not a type this app may decode; name it in a "
            "task's signature or return annotation, or pass it to App(..., allowed_types=[...])"
        )
    return class_path(cls)


def _encode(  # noqa: C901, PLR0911, PLR0912 - one flat type switch
    obj: Any, where: str, types: DecodableTypes | None = None
) -> Any:
    if isinstance(obj, _SCALARS) and not isinstance(obj, enum.Enum):
        if isinstance(obj, float) and not math.isfinite(obj):  # NaN, +-inf are not JSON
            return _tag("float", repr(obj))
        return obj
    if isinstance(obj, list):
        return [_encode(x, f"{where}[{i}]", types) for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj) and _TAG not in obj:
            return {k: _encode(v, f"{where}[{k!r}]", types) for k, v in obj.items()}
        return _tag(
            "dict",
            [
                [_encode(k, where, types), _encode(v, f"{where}[{k!r}]", types)]
                for k, v in obj.items()
            ],
        )
    if isinstance(obj, tuple):
        return _tag("tuple", [_encode(x, f"{where}[{i}]", types) for i, x in enumerate(obj)])
    if isinstance(obj, set | frozenset):
        tag = "frozenset" if isinstance(obj, frozenset) else "set"
        return _tag(tag, [_encode(x, where, types) for x in obj])
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
        return _tag("enum", [_declared(obj, where, types), _encode(obj.value, where, types)])
    if isinstance(obj, BaseModel):
        return _tag("pydantic", [_declared(obj, where, types), obj.model_dump(mode="json")])
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        path = _declared(obj, where, types)
        fields = {
            f.name: _encode(getattr(obj, f.name), where, types) for f in dataclasses.fields(obj)
        }
        return _tag("dataclass", [path, fields])
    raise SerializationError(
        f"{where}: cannot encode a value of type {type(obj).__qualname__} as JSON; "
        "pass JSON types, datetime, UUID, Decimal, bytes, enums, dataclasses or pydantic "
        'models, or opt in to pickle with App(..., serializer="pickle")'
    )


def _expect(v: Any, kind: type | tuple[type, ...], tag: str) -> None:
    if not isinstance(v, kind):
        raise SerializationError(f"stored {tag!r} value is malformed: got {type(v).__name__}")


def _declared_class(v: Any, kind: Kind, types: DecodableTypes | None) -> tuple[type, Any]:
    """The declared class a class tag names, and its payload; never imports or walks."""
    if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)):
        raise SerializationError(f"stored {kind!r} value is malformed: expected [path, value]")
    cls = None if types is None else types.lookup(v[0], kind)
    if cls is None:
        raise SerializationError(
            f"cannot decode a stored {kind!r} value of {v[0][:200]!r}: not a type this app "
            "declares (name it in a task's signature or App(..., allowed_types=[...]))"
        )
    return cls, v[1]


def _dataclass(cls: type, fields: Any) -> Any:
    _expect(fields, dict, "dataclass")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in fields if k not in known]
    if unknown:
        raise SerializationError(
            f"cannot decode a stored 'dataclass' value of {class_path(cls)}: unknown fields "
            f"{', '.join(repr(k)[:80] for k in unknown[:5])}"
        )
    return cls(**fields)


def _decode_tagged(  # noqa: C901, PLR0911, PLR0912 - one flat switch
    tag: Any, v: Any, types: DecodableTypes | None
) -> Any:
    if tag in ("tuple", "set", "frozenset", "dict"):
        _expect(v, list, tag)
        if tag == "tuple":
            return tuple(v)
        if tag == "set":
            return set(v)
        if tag == "frozenset":
            return frozenset(v)
        return {_hashable(pair[0]): pair[1] for pair in v if _pair(pair)}
    if tag in ("bytes", "datetime", "date", "time", "uuid", "decimal", "float"):
        _expect(v, str, tag)
        if tag == "bytes":
            return base64.b64decode(v, validate=True)
        if tag == "datetime":
            return dt.datetime.fromisoformat(v)
        if tag == "date":
            return dt.date.fromisoformat(v)
        if tag == "time":
            return dt.time.fromisoformat(v)
        if tag == "uuid":
            return uuid.UUID(hex=v)
        if tag == "decimal":
            return decimal.Decimal(v)
        return float(v)
    if tag == "timedelta":
        _expect(v, (int, float), tag)
        return dt.timedelta(seconds=v)
    if tag == "enum":
        cls, value = _declared_class(v, "enum", types)
        return cls(value)
    if tag == "pydantic":
        cls, value = _declared_class(v, "pydantic", types)
        _expect(value, dict, tag)
        return cast("type[BaseModel]", cls).model_validate(value)
    if tag == "dataclass":
        cls, value = _declared_class(v, "dataclass", types)
        return _dataclass(cls, value)
    raise SerializationError(f"unknown tag {repr(tag)[:80]} in stored data")


def _pair(pair: Any) -> bool:
    if not (isinstance(pair, list) and len(pair) == 2):
        raise SerializationError("stored 'dict' value is malformed: expected [key, value] pairs")
    return True


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _safe_text(exc: BaseException) -> str:
    """``type: message`` of ``exc``, even when its ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:  # a hostile or broken __str__
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text[:300]}"


def _hook_for(types: DecodableTypes | None) -> Callable[[dict[str, Any]], Any]:
    """The ``object_hook`` that decodes tags to ``types`` only; every failure is a
    :class:`SerializationError` naming the tag."""

    def hook(obj: dict[str, Any]) -> Any:
        tag = obj.get(_TAG)
        if tag is None or len(obj) != 2 or "v" not in obj:
            return obj
        try:
            return _decode_tagged(tag, obj["v"], types)
        except SerializationError:
            raise
        except Exception as exc:  # whatever a value's own type refuses
            raise SerializationError(
                f"cannot decode a stored {repr(tag)[:80]} value: {_safe_text(exc)}"
            ) from None

    return hook


_untyped_hook = _hook_for(None)


def to_json_tree(value: Any, where: str = "value", types: DecodableTypes | None = None) -> Any:
    """``value`` as plain JSON data (tagged types applied); names ``where`` in errors. With
    ``types``, a class outside them is refused (a reader could not decode it)."""
    return _encode(value, where, types)


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


def from_json_tree(tree: Any, types: DecodableTypes | None = None) -> Any:
    """Inverse of :func:`to_json_tree` for data already parsed by ``json.loads``; classes
    decode only to ``types`` (none without it)."""
    return _from_tree(tree, _untyped_hook if types is None else _hook_for(types))


def _from_tree(tree: Any, hook: Callable[[dict[str, Any]], Any]) -> Any:
    if isinstance(tree, dict):
        return hook({k: _from_tree(v, hook) for k, v in tree.items()})
    if isinstance(tree, list):
        return [_from_tree(x, hook) for x in tree]
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
    """JSON with the tagged types listed in the module docstring. The default.

    ``types`` are the classes it may decode (see :mod:`kubenenc.decodable`); without them it
    decodes no class at all, only the built-in tags.
    """

    name = "json"

    def __init__(self, types: DecodableTypes | None = None) -> None:
        self.types = types
        self._hook = _untyped_hook if types is None else _hook_for(types)

    def dumps(self, value: Any) -> str:
        """Encode ``value`` to compact JSON (keys kept in the caller's order)."""
        return self.dumps_named(value, "value")

    def dumps_named(self, value: Any, where: str) -> str:
        """Like :meth:`dumps`, naming ``where`` (e.g. an argument) in any error."""
        try:
            return _compact_strict(_encode(value, where, self.types))
        except SerializationError:
            raise
        except (ValueError, RecursionError) as exc:  # an int past 4,300 digits, deep nesting
            raise SerializationError(
                f"{where} cannot be encoded as JSON: {_safe_text(exc)}"
            ) from None

    def loads(self, text: str) -> Any:
        """Decode JSON written by :meth:`dumps`; anything else raises SerializationError."""
        try:
            return json.loads(text, object_hook=self._hook)
        except SerializationError:
            raise
        except (ValueError, RecursionError) as exc:
            raise SerializationError(f"stored value is not valid JSON: {_safe_text(exc)}") from None

    def loads_arguments(self, text: str) -> dict[str, Any]:
        """Decode a call's stored arguments: a JSON object of names (never itself a tag, as
        :meth:`~kubenenc.task.Task` writes it) to encoded values."""
        try:
            tree = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SerializationError(
                f"stored arguments are not valid JSON: {_safe_text(exc)}"
            ) from None
        if not isinstance(tree, dict):
            raise SerializationError(
                f"stored arguments are a {type(tree).__name__}, not an object of names to values"
            )
        hook = self._hook
        try:
            return {k: _from_tree(v, hook) for k, v in tree.items()}
        except RecursionError:
            raise SerializationError("stored arguments are nested too deeply") from None


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


def get_serializer(
    name: str, types: DecodableTypes | None = None
) -> JsonSerializer | PickleSerializer:
    """Return the serializer called ``name`` (``json`` or ``pickle``); ``types`` are the
    classes JSON may decode."""
    if name == "json":
        return JsonSerializer(types)
    if name == "pickle":
        return PickleSerializer()
    raise SerializationError(f"unknown serializer {name!r}; use 'json' or 'pickle'")
