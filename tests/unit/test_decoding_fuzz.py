"""Fuzz of the JSON decoders with a bounded budget (a longer run: bench/fuzz_decoders.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.decoding_fuzz import check, trees


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_decoding_returns_a_value_or_refuses_and_never_runs_code(tree: Any) -> None:
    check(tree)
