"""Serializers: every documented type round-trips; errors name the value; no imports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import SerializationError
from kubenenc.serializers import (
    JsonSerializer,
    PickleSerializer,
    canonical,
    compact_json,
    flat_json,
    from_json_tree,
    get_serializer,
    to_json_tree,
)
from pydantic import BaseModel


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Shape:
    name: str
    corners: list[Point]
    color: Color


class Order(BaseModel):
    id: int
    items: list[str]
    placed: dt.datetime


class Outer:
    class Inner(enum.IntEnum):
        ONE = 1


TYPES = DecodableTypes([Shape, Order, Outer.Inner])  # Shape's fields bring Point and Color
JSON = JsonSerializer(TYPES)


def roundtrip(value: Any) -> Any:
    text = JSON.dumps(value)
    assert isinstance(text, str)
    json.loads(text)  # plain, strict JSON
    return JSON.loads(text)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True otherwise)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


UTC2 = dt.timezone(dt.timedelta(hours=2))

VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**70,
    1.5,
    "text ünïcode",
    [],
    {},
    [1, "a", None, [2.5]],
    {"a": 1, "b": [True, None]},
    (1, 2),
    (),
    ((1, (2, 3)), [4, (5,)]),
    [(1, 2), (3, 4)],
    {1, 2, 3},
    frozenset({"a", "b"}),
    set(),
    {1: "one", 2: "two"},
    {(1, 2): "pair", (3, (4, 5)): "nested"},
    {1: {2: (3,)}},
    {"__kn__": "tuple", "v": [1, 2]},
    {"__kn__": "x"},
    {"v": 1, "__kn__": "set", "other": 3},
    {"a": {"__kn__": "bytes", "v": "AAAA"}},
    b"\x00\xffbytes",
    b"",
    dt.datetime(2026, 3, 1, 12, 30, 5, 123456),
    dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 1, 12, 30, tzinfo=UTC2),
    dt.date(2026, 2, 28),
    dt.time(23, 59, 1, 5),
    dt.timedelta(days=2, seconds=3, microseconds=4),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("1.10"),
    decimal.Decimal("-0.000000000000000000000001"),
    Color.RED,
    Color.BLUE,
    Outer.Inner.ONE,
    Point(1, 2.5),
    Shape("tri", [Point(0, 0.0), Point(1, 1.0)], Color.BLUE),
    Order(id=3, items=["a", "b"], placed=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)),
    {"when": [dt.date(2026, 1, 1), {uuid.UUID(int=5)}], 7: (Color.RED, b"x")},
    float("nan"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_json_round_trip_of_every_documented_type(value: Any) -> None:
    back = roundtrip(value)
    assert same(back, value), (value, back)


def test_datetime_keeps_its_time_zone() -> None:
    value = dt.datetime(2026, 3, 1, 12, 30, tzinfo=UTC2)
    back = roundtrip(value)
    assert back.utcoffset() == dt.timedelta(hours=2)
    assert roundtrip(dt.datetime(2026, 3, 1)).tzinfo is None


def test_bytearray_comes_back_as_bytes() -> None:
    assert roundtrip(bytearray(b"ab")) == b"ab"


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), [1.0, float("inf")]])
def test_infinities_round_trip(value: Any) -> None:
    assert roundtrip(value) == value


def test_tree_functions_are_inverse() -> None:
    value = {"a": (1, {2}), 3: Color.RED}
    tree = to_json_tree(value)
    assert same(from_json_tree(json.loads(json.dumps(tree)), TYPES), value)
    with pytest.raises(SerializationError, match="not a type this app declares"):
        from_json_tree(json.loads(json.dumps(tree)))  # no declared types: no class decodes


def test_json_text_is_compact_and_keeps_key_order() -> None:
    assert JSON.dumps({"b": 1, "a": [1, 2]}) == '{"b":1,"a":[1,2]}'


class Opaque:
    pass


def test_unencodable_value_is_named() -> None:
    with pytest.raises(SerializationError) as info:
        JSON.dumps_named({"a": [1, Opaque()]}, "f() argument 'cfg'")
    message = str(info.value)
    assert "f() argument 'cfg'['a'][1]" in message
    assert "Opaque" in message
    assert "pickle" in message  # says how to opt in
    assert isinstance(info.value, TypeError)


def test_unencodable_value_in_a_tuple_and_a_dict_value() -> None:
    with pytest.raises(SerializationError, match=r"value\[1\]\[0\]"):
        JSON.dumps((0, (Opaque(),)))
    with pytest.raises(SerializationError, match=r"value\[5\]"):
        JSON.dumps({5: Opaque()})


def test_decoding_never_imports_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "kn_never_imported.py").write_text(
        "import enum, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('yes')\n"
        "class E(enum.Enum):\n    A = 1\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = json.dumps({"__kn__": "enum", "v": ["kn_never_imported:E", 1]})
    for tag, payload in (
        ("enum", ["kn_never_imported:E", 1]),
        ("dataclass", ["kn_never_imported:E", {}]),
        ("pydantic", ["kn_never_imported:E", {}]),
    ):
        with pytest.raises(SerializationError, match=f"'{tag}'.*not a type this app declares"):
            JSON.loads(json.dumps({"__kn__": tag, "v": payload}))
    assert "kn_never_imported" not in sys.modules
    assert not marker.exists()
    # Imported is not enough (the old rule): only a declared class decodes.
    import kn_never_imported  # type: ignore[import-not-found]

    try:
        with pytest.raises(SerializationError, match="not a type this app declares"):
            JSON.loads(text)
        assert JsonSerializer(DecodableTypes([kn_never_imported.E])).loads(text) is (
            kn_never_imported.E.A
        )
    finally:
        monkeypatch.delitem(sys.modules, "kn_never_imported")


@pytest.mark.parametrize(
    "payload",
    [
        {"__kn__": "enum", "v": [f"{__name__}:Nope", 1]},
        {"__kn__": "dataclass", "v": [f"{__name__}:Color", {}]},  # not a dataclass
        {"__kn__": "pydantic", "v": [f"{__name__}:Point", {}]},  # not a model
        {"__kn__": "enum", "v": [f"{__name__}:Point", 1]},  # declared, but not an enum
        {"__kn__": "enum", "v": [f"{__name__}:same", 1]},  # not a class
        {"__kn__": "enum", "v": [f"{__name__}:Color", "green"]},  # no such member
        {"__kn__": "dataclass", "v": [f"{__name__}:Point", {"x": 1}]},  # a field missing
        {"__kn__": "dataclass", "v": [f"{__name__}:Point", {"x": 1, "y": 2, "z": 3}]},
        {"__kn__": "dataclass", "v": [f"{__name__}:Point", [1, 2]]},
        {"__kn__": "pydantic", "v": [f"{__name__}:Order", {"id": "x"}]},  # validated
        {"__kn__": "enum", "v": f"{__name__}:Color"},
        {"__kn__": "enum", "v": [1, 2]},
        {"__kn__": "mystery", "v": 1},
        {"__kn__": ["list"], "v": 1},
        {"__kn__": "bytes", "v": "not base64!"},
        {"__kn__": "bytes", "v": 5},
        {"__kn__": "datetime", "v": "yesterday"},
        {"__kn__": "decimal", "v": "1.2.3"},
        {"__kn__": "uuid", "v": "xyz"},
        {"__kn__": "timedelta", "v": 1e300},
        {"__kn__": "timedelta", "v": "1"},
        {"__kn__": "tuple", "v": 1},
        {"__kn__": "set", "v": [[1]]},  # unhashable item
        {"__kn__": "dict", "v": [[{"a": 1}, 2]]},  # unhashable key
        {"__kn__": "dict", "v": [1, 2]},
        {"__kn__": "float", "v": "one"},
    ],
    ids=repr,
)
def test_bad_stored_data_raises_serialization_error(payload: dict[str, Any]) -> None:
    with pytest.raises(SerializationError):
        JSON.loads(json.dumps(payload))


@pytest.mark.parametrize("text", ["", "{", "[1,", "nan!", "[" * 100_000 + "]" * 100_000])
def test_text_that_is_not_json_raises_serialization_error(text: str) -> None:
    with pytest.raises(SerializationError):
        JSON.loads(text)


def test_encoding_refuses_a_class_the_reader_could_not_decode() -> None:
    @dataclasses.dataclass
    class Local:
        a: int

    with pytest.raises(SerializationError, match=r"value\[0\]: .*Local is not a type"):
        JSON.dumps([Local(1)])
    assert JsonSerializer(DecodableTypes([Local])).dumps(Local(1)).startswith('{"__kn__"')
    assert JsonSerializer().dumps(Local(1))  # a serializer without types checks nothing


def test_pickle_only_when_chosen() -> None:
    assert get_serializer("json").name == "json"
    assert isinstance(get_serializer("json"), JsonSerializer)
    assert isinstance(get_serializer("pickle"), PickleSerializer)
    with pytest.raises(SerializationError, match="unknown serializer"):
        get_serializer("yaml")
    # The JSON serializer refuses what only pickle could carry, and never writes pickle.
    with pytest.raises(SerializationError):
        JSON.dumps(Opaque())
    text = PickleSerializer().dumps(Point(1, 2.0))
    with pytest.raises(SerializationError, match="not valid JSON"):
        JSON.loads(text)


def test_pickle_round_trip_and_named_errors() -> None:
    p = PickleSerializer()
    value = {"p": Point(1, 2.0), "s": {1, 2}, "o": Outer.Inner.ONE}
    assert p.loads(p.dumps(value)) == value
    with pytest.raises(SerializationError, match="argument 'fn'"):
        p.dumps_named(lambda: 1, "argument 'fn'")


def test_canonical_orders_only_unordered_parts() -> None:
    value = {"s": {"b", "a", "c"}, 2: "x", 1: ["z", "y"], "t": ("q", "p")}
    shuffled = {1: ["z", "y"], "t": ("q", "p"), 2: "x", "s": {"c", "a", "b"}}
    fixed = canonical(to_json_tree(value))
    assert from_json_tree(fixed) == value  # still the same value (dict order aside)
    assert fixed == canonical(to_json_tree(shuffled))
    keys = [pair[0] for pair in fixed["v"]]  # int keys: tagged pairs, now in a fixed order
    assert keys == sorted(keys, key=json.dumps)
    assert canonical([3, 1, 2]) == [3, 1, 2]
    assert canonical({"__kn__": "tuple", "v": [2, 1]}) == {"__kn__": "tuple", "v": [2, 1]}


class _Count(enum.IntEnum):
    ONE = 1


class _Text(str):
    pass


SCALARS: list[Any] = [
    0, -7, 2**100, True, False, None, 0.1, -0.0, 1e300, 5e-324, float("nan"), float("inf"),
    "", "plain", 'q"uote\\', "tab\t nl\n nul\x00", "café ☕ \u2028 😀", _Count.ONE, _Text("sub"),
]  # fmt: skip


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_compact_json_writes_what_json_dumps_writes(value: Any) -> None:
    assert compact_json(value) == json.dumps(value, separators=(",", ":"))


def test_compact_json_of_containers_is_json_dumps_too() -> None:
    for value in ([], [1, "a", None], ("x",), {"b": 1, "a": [2.5]}):
        assert compact_json(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("sort_keys", [False, True])
def test_flat_json_writes_what_json_dumps_writes(sort_keys: bool) -> None:
    finite = [v for v in SCALARS if type(v) in (str, int, bool, float, type(None))]
    finite = [v for v in finite if not (isinstance(v, float) and not math.isfinite(v))]
    mapping = {f"k{i}\u00e9": v for i, v in reversed(list(enumerate(finite)))}
    expected = json.dumps(mapping, separators=(",", ":"), sort_keys=sort_keys)
    assert flat_json(mapping, sort_keys=sort_keys) == expected
    assert flat_json({}, sort_keys=sort_keys) == "{}"


@pytest.mark.parametrize(
    "mapping",
    [
        {"a": [1]},
        {"a": {"b": 1}},
        {"a": float("nan")},
        {"a": _Count.ONE},
        {"a": _Text("x")},
        {1: 2},
    ],
    ids=repr,
)
def test_flat_json_leaves_anything_but_plain_scalars_to_the_encoder(mapping: Any) -> None:
    assert flat_json(mapping) is None
    assert flat_json(mapping, sort_keys=True) is None
