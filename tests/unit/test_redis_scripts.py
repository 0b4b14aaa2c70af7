"""How the Redis backend's Lua scripts are assembled from package data (no server)."""

from __future__ import annotations

import re
from importlib.resources import files

from kubenenc_redis import keys
from kubenenc_redis.scripts import SCRIPTS, STEPS, build, header, lua_file


def _lua_names() -> set[str]:
    return {p.name.removesuffix(".lua") for p in files("kubenenc_redis").joinpath("lua").iterdir()}


def test_every_lua_file_is_part_of_a_script_and_every_part_is_a_file() -> None:
    used = {"lib"} | {name for names in STEPS.values() for name in names}
    assert used == _lua_names()
    assert set(SCRIPTS) == set(STEPS)


def test_a_script_is_the_header_its_key_builders_lib_and_its_files_in_order() -> None:
    body = lua_file("lib") + lua_file("lib_finish") + lua_file("lib_claim")
    body += lua_file("finish_and_claim")
    assert build("lib_finish", "lib_claim", "finish_and_claim") == (
        header() + keys.lua(body) + body
    )
    assert SCRIPTS["finish_and_claim"] == build(*STEPS["finish_and_claim"])


def test_only_keys_py_spells_a_key() -> None:
    for name in _lua_names():
        assert "P .." not in lua_file(name), name  # every key through a builder of keys.py


def test_every_key_name_a_script_uses_is_defined_once_before_use() -> None:
    for op, source in SCRIPTS.items():
        used = set(re.findall(r"\b([Kk]_[A-Za-z]+)\b", source))
        for name in used:
            defined = list(re.finditer(rf"local (?:function )?({name})\b", source))
            assert len(defined) == 1, (op, name)
            first_use = re.search(rf"\b{name}\b", source)
            assert first_use is not None and first_use.start() == defined[0].start(1), (op, name)
        assert used <= {*keys.FIXED, *keys.PER, "k_park"}, op


def test_key_names_unused_by_a_script_are_left_out() -> None:
    assert "K_BEATS" not in SCRIPTS["claim"]  # only recover reads the heartbeats
    assert "local K_BEATS" in SCRIPTS["recover"]
    assert keys.lua("k_inv(x)") == "local function k_inv(x) return P .. ':inv:' .. x end\n"


def test_python_and_lua_build_the_same_keys() -> None:
    k = keys.Keys("shop")
    assert k.prefix == "{shop}"
    assert k.fixed("K_COUNTS") == "{shop}:counts"
    assert k.per("k_ixa", "app") == "{shop}:ix:a:app"
    assert k.park("pool", "key") == "{shop}:park:pool\x1fkey"
    assert "P .. ':park:' .. pool .. US .. key" in keys.lua("k_park(a, b)")
