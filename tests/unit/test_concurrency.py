"""Concurrency policies and the keys computed from a call's arguments."""

from __future__ import annotations

import os
import subprocess
import sys

import kubenenc
import pytest
from kubenenc.concurrency import ConcurrencyPolicy, call_key, registration_key, running_key
from kubenenc.serializers import to_json_tree
from pydantic import ValidationError

ARGS = {"customer": 7, "amount": 12.5, "note": "x"}


def test_call_key_ignores_argument_order() -> None:
    reordered = {"note": "x", "amount": 12.5, "customer": 7}
    assert call_key("t.pay", ARGS) == call_key("t.pay", reordered)


def test_call_key_separates_tasks_and_arguments() -> None:
    keys = {
        call_key("t.pay", ARGS),
        call_key("t.refund", ARGS),
        call_key("t.pay", {**ARGS, "amount": 13}),
        call_key("t.pay", {**ARGS, "note": None}),
        call_key("t.pay", {"customer": 7, "amount": 12.5}),
        call_key("t.pay", {}),
    }
    assert len(keys) == 6
    assert call_key("t.pay", ARGS).startswith("t.pay#")


def test_call_key_of_nested_values_is_order_insensitive_in_dicts_only() -> None:
    a = call_key("t", {"x": {"b": 1, "a": [1, 2]}})
    assert a == call_key("t", {"x": {"a": [1, 2], "b": 1}})
    assert a != call_key("t", {"x": {"a": [2, 1], "b": 1}})


def test_running_key_on_a_subset_of_arguments() -> None:
    policy = ConcurrencyPolicy(running_limit=1, key=("customer",))
    k = running_key(policy, "t.pay", ARGS)
    assert k is not None
    assert k == running_key(policy, "t.pay", {**ARGS, "amount": 99, "note": "y"})
    assert k != running_key(policy, "t.pay", {**ARGS, "customer": 8})
    assert k != running_key(policy, "t.other", ARGS)


def test_running_key_with_two_names_ignores_their_order_in_the_call() -> None:
    policy = ConcurrencyPolicy(running_limit=2, key=("customer", "note"))
    k = running_key(policy, "t.pay", ARGS)
    assert k == running_key(policy, "t.pay", {"note": "x", "customer": 7, "amount": 0})
    assert k != running_key(policy, "t.pay", {"note": "z", "customer": 7, "amount": 0})


def test_running_key_none_key_means_the_whole_task() -> None:
    policy = ConcurrencyPolicy(running_limit=3)
    k = running_key(policy, "t.pay", ARGS)
    assert k == running_key(policy, "t.pay", {"customer": 1})
    assert k != running_key(policy, "t.other", ARGS)


def test_no_running_key_without_a_limit() -> None:
    assert running_key(None, "t", ARGS) is None
    assert running_key(ConcurrencyPolicy(), "t", ARGS) is None
    assert (
        running_key(ConcurrencyPolicy(key=("customer",), registration="dedupe"), "t", ARGS) is None
    )


def test_registration_key_none_key_means_the_whole_call() -> None:
    policy = ConcurrencyPolicy(registration="dedupe")
    k = registration_key(policy, "t.pay", ARGS)
    assert k == call_key("t.pay", ARGS)
    assert k != registration_key(policy, "t.pay", {**ARGS, "amount": 1})


def test_registration_key_on_a_subset() -> None:
    policy = ConcurrencyPolicy(registration="reject", key=("customer",))
    k = registration_key(policy, "t.pay", ARGS)
    assert k == registration_key(policy, "t.pay", {**ARGS, "amount": 1})
    assert k != registration_key(policy, "t.pay", {**ARGS, "customer": 1})


def test_no_registration_key_when_allowed() -> None:
    assert registration_key(None, "t", ARGS) is None
    assert registration_key(ConcurrencyPolicy(running_limit=1), "t", ARGS) is None
    assert registration_key(ConcurrencyPolicy(registration="allow", key=("a",)), "t", {}) is None


def test_policy_defaults() -> None:
    p = ConcurrencyPolicy()
    assert (p.running_limit, p.key, p.registration) == (None, None, "allow")


def test_camel_case_alias_as_in_the_custom_resource() -> None:
    p = ConcurrencyPolicy.model_validate({"runningLimit": 2, "key": ["customer"]})
    assert p.running_limit == 2
    assert p.key == ("customer",)
    assert ConcurrencyPolicy(runningLimit=4).running_limit == 4  # type: ignore[call-arg]
    assert ConcurrencyPolicy(running_limit=4).running_limit == 4
    assert p.model_dump(by_alias=True)["runningLimit"] == 2


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"running_limit": 0}, "greater than or equal to 1"),
        ({"running_limit": -2}, "greater than or equal to 1"),
        ({"key": ["not a name"]}, "not an argument name"),
        ({"key": ["1st"]}, "not an argument name"),
        ({"key": ["a", "a"]}, "twice"),
        ({"registration": "maybe"}, "registration"),
        ({"runing_limit": 1}, "runing_limit"),
    ],
)
def test_policy_validation_errors_say_what_is_wrong(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConcurrencyPolicy.model_validate(fields)
    assert words in str(info.value)


def test_policy_is_frozen() -> None:
    p = ConcurrencyPolicy(running_limit=1)
    with pytest.raises(ValidationError):
        p.running_limit = 2  # type: ignore[misc]


def test_keys_ignore_the_order_of_sets_and_non_string_dict_keys() -> None:
    tree = to_json_tree({"alpha", "beta", "gamma", "delta"})
    shuffled = {"__kn__": "set", "v": list(reversed(tree["v"]))}  # another process's order
    assert call_key("t", {"tags": tree}) == call_key("t", {"tags": shuffled})
    one = to_json_tree({1: "a", 2: {3, 4}, (5, 6): "b"})
    two = to_json_tree({(5, 6): "b", 2: {4, 3}, 1: "a"})
    assert call_key("t", {"m": one}) == call_key("t", {"m": two})
    policy = ConcurrencyPolicy(running_limit=1, key=("m",), registration="dedupe")
    assert running_key(policy, "t", {"m": one}) == running_key(policy, "t", {"m": two})
    assert registration_key(policy, "t", {"m": one}) == registration_key(policy, "t", {"m": two})
    # ... while lists and tuples stay ordered.
    assert call_key("t", {"l": [1, 2]}) != call_key("t", {"l": [2, 1]})
    assert call_key("t", {"l": to_json_tree((1, 2))}) != call_key("t", {"l": to_json_tree((2, 1))})
    assert call_key("t", {"s": to_json_tree({1, 2})}) != call_key("t", {"s": to_json_tree({1, 3})})


def test_call_key_of_a_set_of_strings_is_the_same_in_every_process() -> None:
    code = (
        "from kubenenc.concurrency import call_key\n"
        "from kubenenc.serializers import to_json_tree\n"
        "print(call_key('t', {'s': to_json_tree({'alpha', 'beta', 'gamma', 'delta', 'eps'})}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(keys) == 1
    assert keys == {call_key("t", {"s": to_json_tree({"eps", "delta", "gamma", "beta", "alpha"})})}


KEYS_OF_EARLIER_VERSIONS = [
    ({"i": 5}, "m.t#f2d8043440232df1ddecb7bf"),
    (ARGS, "m.t#3af458a6c28505b2e235af73"),
    (
        {"b": None, "a": True, "c": False, "d": -3, "e": 1e300, "f": 0.1},
        "m.t#48f5ca4178cf6860394e0ae9",
    ),
    ({"name": 'café "quoted" \n\t\u2028 😀'}, "m.t#428ac390809eceb182e6c38b"),
    ({"big": 2**70, "neg": -0.0}, "m.t#b9c45c474e5ebc6185e3be41"),
    ({"nested": {"z": 1, "a": [1, "x"]}}, "m.t#adb20a748a6bdd2906595892"),
    ({"tags": {"__kn__": "set", "v": ["b", "a"]}}, "m.t#f96dd27ae7aa8f3765cda14f"),
    ({}, "m.t#bf78e4a953b40eee238ca2e9"),
]


@pytest.mark.parametrize(("args", "key"), KEYS_OF_EARLIER_VERSIONS)
def test_call_keys_are_those_earlier_versions_stored(args: dict[str, object], key: str) -> None:
    """Keys are stored and compared across processes and versions: these were computed by
    the version before the fast encoding (json.dumps, sort_keys), and must never change."""
    assert call_key("m.t", args) == key


def test_running_and_registration_keys_are_those_earlier_versions_stored() -> None:
    policy = ConcurrencyPolicy(running_limit=1, key=("note", "customer"), registration="dedupe")
    assert running_key(policy, "m.t", ARGS) == "m.t#65926dea4f02fcfc612845ae"
    assert registration_key(policy, "m.t", ARGS) == "m.t#65926dea4f02fcfc612845ae"


@pytest.mark.parametrize("rate", ["0/s", "5/d", "5 / s", "s", "1.5/s"])
def test_bad_rates_are_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        kubenenc.ConcurrencyPolicy(rate=rate)


def test_burst_must_fit_the_rate() -> None:
    with pytest.raises(ValueError, match="more than"):
        kubenenc.ConcurrencyPolicy(rate="5/s", burst=6)
    with pytest.raises(ValueError, match="needs a rate"):
        kubenenc.ConcurrencyPolicy(burst=2)
    assert kubenenc.ConcurrencyPolicy(rate="10/h", burst=2).rate_spec == "10/3600/2"
    assert kubenenc.ConcurrencyPolicy(rate="7/m").rate_spec == "7/60/7"
