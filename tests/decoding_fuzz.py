"""Hostile stored text for the JSON decoders, shared by the fuzz test and bench/fuzz_decoders.py.

Trees are arbitrary nested JSON in which objects are often tags (``{"__kn__": tag, "v": ...}``)
with real tag names, class paths that would run code if trusted (``subprocess:Popen``,
``os:system``, ``builtins:eval``, a class with side effects) or that are declared, and payloads
of any shape. The property: decoding returns a value or raises ``SerializationError``; nothing
else escapes, and no side effect happens.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from hypothesis import strategies as st
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import SerializationError
from kubenenc.serializers import JsonSerializer, from_json_tree

TRIPPED: list[str] = []
"""Appended to by any side effect a hostile payload manages to trigger."""


class FuzzColor(enum.Enum):
    RED = "red"
    ONE = 1


@dataclasses.dataclass
class FuzzBox:
    size: int
    color: FuzzColor | None = None


@dataclasses.dataclass
class Tripwire:
    """Not declared: constructing it is the side effect the fuzzer must never cause."""

    a: Any = None

    def __post_init__(self) -> None:
        TRIPPED.append("Tripwire")


TAGS = ["tuple", "set", "frozenset", "dict", "bytes", "datetime", "date", "time", "timedelta",
        "uuid", "decimal", "float", "enum", "dataclass", "pydantic", "nope"]  # fmt: skip
PATHS = [
    "subprocess:Popen", "os:system", "builtins:eval", "builtins:exec", "pathlib:Path",
    f"{__name__}:Tripwire", f"{__name__}:FuzzColor", f"{__name__}:FuzzBox",
    f"{__name__}:TRIPPED", f"{__name__}:FuzzBox.size", "", ":", "no.such:Thing",
]  # fmt: skip

SERIALIZER = JsonSerializer(DecodableTypes([FuzzBox]))

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    plain = st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children,
                                                              max_size=4)  # fmt: skip
    tagged = st.fixed_dictionaries({"__kn__": st.sampled_from(TAGS), "v": children})
    fields = st.dictionaries(st.sampled_from(["a", "size", "color", "args"]), children,
                             max_size=2)  # fmt: skip
    classy = st.fixed_dictionaries({
        "__kn__": st.sampled_from(["enum", "dataclass", "pydantic"]),
        "v": st.tuples(st.sampled_from(PATHS), fields | children).map(list),
    })  # fmt: skip
    return plain | tagged | classy


trees = st.recursive(scalars | st.sampled_from(PATHS), _extend, max_leaves=25)


def check(tree: Any) -> str:
    """Decode ``tree`` every way a worker or caller does; the outcome's kind as text."""
    text = json.dumps(tree)
    outcomes = []
    arguments = json.dumps({"x": tree})
    for decode in (
        lambda: SERIALIZER.loads(text),
        lambda: from_json_tree(json.loads(text)),
        lambda: SERIALIZER.loads_arguments(arguments),
    ):
        try:
            decode()
            outcomes.append("ok")
        except SerializationError:
            outcomes.append("refused")
    assert not TRIPPED, TRIPPED
    return "/".join(outcomes)
