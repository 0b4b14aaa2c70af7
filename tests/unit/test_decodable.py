"""What an App may decode: the classes its tasks' annotations name, and ``allowed_types``."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any, Literal

import pytest
from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.decodable import DecodableTypes, class_path
from kubenenc.errors import SerializationError
from pydantic import BaseModel


class Size(enum.Enum):
    S = "s"
    L = "l"


@dataclasses.dataclass
class Line:
    item: str
    size: Size


class Address(BaseModel):
    city: str


@dataclasses.dataclass
class Cart:
    lines: list[Line]
    ship_to: Address | None


class Animal(BaseModel):
    name: str


class Dog(Animal):
    barks: bool = True


class Receipt(BaseModel):
    total: int


class NeverNamed(enum.Enum):
    X = 1


def checkout(cart: Cart, express: bool = False) -> Receipt:
    return Receipt(total=len(cart.lines))


def test_annotations_of_tasks_declare_their_classes_and_fields_recursively() -> None:
    app = App("shop", backend=MemoryBackend())
    app.task(checkout)
    names = set(app.types.names())
    assert {class_path(c) for c in (Cart, Line, Size, Address, Receipt)} <= names
    assert class_path(NeverNamed) not in names
    cart = Cart([Line("pen", Size.L)], Address(city="Lyon"))
    assert app.serializer.loads(app.serializer.dumps(cart)) == cart
    with pytest.raises(SerializationError, match="NeverNamed is not a type this app may decode"):
        app.serializer.dumps(NeverNamed.X)


def test_generic_optional_annotated_and_literal_hints_are_walked() -> None:
    types = DecodableTypes()

    def f(
        a: dict[str, tuple[Size, ...]],
        b: Annotated[Line | None, "meta"],
        c: Literal["x"],
        d: Any,
    ) -> list[set[Size]]:
        raise NotImplementedError

    types.add_annotations_of(f)
    assert types.lookup(class_path(Size), "enum") is Size
    assert types.lookup(class_path(Line), "dataclass") is Line


def test_a_forward_reference_resolves_once_the_class_exists() -> None:
    types = DecodableTypes()

    def f(x: LaterDefined) -> None:  # noqa: F821 - defined below, as in a user's module
        raise NotImplementedError

    types.add_annotations_of(f)
    path = f"{__name__}:LaterDefined"
    assert types.lookup(path, "enum") is None  # the name does not exist yet: kept for later
    globals()["LaterDefined"] = enum.Enum("LaterDefined", {"A": 1}, module=__name__)
    try:
        globals()["LaterDefined"].__qualname__ = "LaterDefined"
        assert types.lookup(path, "enum") is globals()["LaterDefined"]
    finally:
        del globals()["LaterDefined"]


def test_subclasses_of_a_declared_class_decode_and_nothing_else() -> None:
    types = DecodableTypes([Animal])
    assert types.lookup(class_path(Dog), "pydantic") is Dog
    assert types.lookup(class_path(Dog), "dataclass") is None  # the tag must match the kind
    assert types.lookup("builtins:object", "pydantic") is None
    assert types.allows(Dog) and not types.allows(Receipt)


def test_allowed_types_refuses_what_needs_no_declaration() -> None:
    with pytest.raises(TypeError, match="not an Enum, a dataclass, a pydantic model or an"):
        DecodableTypes([dict])
    app = App("x", backend=MemoryBackend(), allowed_types=[NeverNamed])
    assert app.serializer.loads(app.serializer.dumps(NeverNamed.X)) is NeverNamed.X


def test_get_task_looks_only_among_registered_tasks() -> None:
    app = App("x", backend=MemoryBackend())
    for name in ("os.system", "subprocess.Popen", "json.decoder.JSONDecoder", "builtins.eval"):
        with pytest.raises(LookupError, match="not registered"):
            app.get_task(name)
