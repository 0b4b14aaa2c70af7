"""How the Redis backend's Lua scripts are assembled from package data (no server)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from kubenenc_redis import keys
from kubenenc_redis.scripts import (
    FUNCTIONS,
    LIBRARY,
    SCRIPTS,
    STATE,
    STEPS,
    build,
    header,
    library,
    lua_file,
)


def _lua_names() -> set[str]:
    return {p.name.removesuffix(".lua") for p in files("kubenenc_redis").joinpath("lua").iterdir()}


def test_every_lua_file_is_part_of_a_script_and_every_part_is_a_file() -> None:
    used = {"call", "lib"} | {name for names in STEPS.values() for name in names}
    assert used == _lua_names()
    assert set(SCRIPTS) == set(STEPS)


def test_a_script_is_the_header_then_lib_and_its_files_in_order_keys_written_out() -> None:
    body = lua_file("call") + lua_file("lib") + lua_file("lib_finish") + lua_file("lib_claim")
    body += lua_file("finish_and_claim")
    assert build("lib_finish", "lib_claim", "finish_and_claim") == header() + keys.lua(body)
    assert SCRIPTS["finish_and_claim"] == build(*STEPS["finish_and_claim"])


def test_the_library_defines_the_shared_lua_once_and_one_function_per_step() -> None:
    assert (LIBRARY, FUNCTIONS) == library()
    name = re.match(r"#!lua name=(kubenenc_[0-9a-f]{12})\n", LIBRARY)
    assert name is not None
    assert set(FUNCTIONS) == set(STEPS)
    for op, fn in FUNCTIONS.items():
        assert fn == f"{name.group(1)}_{op}"
        assert LIBRARY.count(f"redis.register_function('{fn}', function(KEYS, ARGV)") == 1
    shared_functions = ("kr", "claim_some", "finish_all")
    for shared in (f"local function {name}(" for name in shared_functions):
        assert LIBRARY.count(shared) == 1, shared
    assert not re.search(r"\bk_[a-z]+\(", LIBRARY)  # every key builder written out
    assert not re.search(r"local K_[A-Z]+ =", LIBRARY)  # fixed keys: set per call by begin
    # The per-call state is assigned by begin, never declared again (a second ``local``
    # would leave the library's functions reading the first call's tables).
    assert "local CD" not in LIBRARY.split("local function begin")[1]


def test_no_library_file_keeps_state_of_its_own() -> None:
    # In the function library a table made at the top of a shared file lives across calls:
    # state of one call must be declared in STATE and made new by call.lua instead.
    constant_caches = {"OK"}  # filled from constants only, the same for every call
    for name in _lua_names():
        if name.startswith("lib"):
            made = set(re.findall(r"^local (\w+) = \{\}", lua_file(name), re.MULTILINE))
            assert made <= constant_caches, (name, made)
    assert "RATES" in STATE


def test_only_keys_py_spells_a_key() -> None:
    for name in _lua_names():
        assert "P .." not in lua_file(name), name  # every key through a name of keys.py


def test_every_key_builder_is_written_out_and_every_fixed_key_defined_before_use() -> None:
    for op, source in SCRIPTS.items():
        assert not re.search(r"\bk_[a-z]+\b", source), op
        for name in set(re.findall(r"\bK_[A-Z]+\b", source)):
            defined = list(re.finditer(rf"local ({name}) = P \.\. ':[a-z]+'\n", source))
            assert len(defined) == 1, (op, name)
            first_use = re.search(rf"\b{name}\b", source)
            assert first_use is not None and first_use.start() == defined[0].start(1), (op, name)


def test_keys_are_written_out_as_the_concatenations_they_stand_for() -> None:
    assert keys.lua("x = k_inv(r.id)") == "x = (P .. ':inv:' .. r.id)"
    assert keys.lua("k_done(ARGV[#ARGV])") == "(P .. ':done:' .. ARGV[#ARGV])"
    assert keys.lua("f(k_park(r.p, r.rk), m)") == "f((P .. ':park:' .. r.p .. US .. r.rk), m)"
    assert keys.lua("k_tg(k_ixa(a))") == "(P .. ':tg:' .. (P .. ':ix:a:' .. a))"
    assert keys.lua("return K_SEQ") == "local K_SEQ = P .. ':seq'\nreturn K_SEQ"
    assert "K_BEATS" not in SCRIPTS["claim"]  # only recover reads the heartbeats
    assert "local K_BEATS" in SCRIPTS["recover"]
    for bad in ("k_nope(x)", "k_inv(a, b)", "K_NOPE", "k_inv(x"):
        with pytest.raises(ValueError):
            keys.lua(bad)


def test_python_and_lua_build_the_same_keys() -> None:
    k = keys.Keys("shop")
    assert k.prefix == "{shop}"
    assert k.fixed("K_COUNTS") == "{shop}:counts"
    assert k.per("k_ixa", "app") == "{shop}:ix:a:app"
    assert k.park("pool", "key") == "{shop}:park:pool\x1fkey"
