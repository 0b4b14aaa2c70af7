"""The conformance kit as a plugin author meets it: ``pytest --pyargs kubenenc.testing`` with
``--backend-url``, run from a folder that knows nothing of kubenenc's own test setup."""

from __future__ import annotations

import pytest
from kubenenc.testing.plugin import parse_specs

# Two small modules (3 + 3 tests per backend), named so that only they are collected.
SMALL = ("kubenenc.testing.test_shape", "kubenenc.testing.test_suite_guard")


def test_specs_get_short_unique_ids() -> None:
    specs = parse_specs(
        ["memory://", "redis://h/0?prefix={fresh}", "redis://other/0?prefix={fresh}",
         "fixture:mongojava_url"]
    )  # fmt: skip
    assert [s.id for s in specs] == ["memory", "redis", "redis-2", "mongojava"]
    assert [s.fixture for s in specs] == [None, None, None, "mongojava_url"]
    assert [s.fresh_per_test for s in specs] == [False, True, True, True]


def test_a_spec_without_a_scheme_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match="neither a URL"):
        parse_specs(["localhost:6379"])


def test_the_suite_runs_against_urls_given_on_the_command_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pyargs", *SMALL, "-p", "no:cacheprovider",
        "--backend-url=memory://", "--backend-url=sqlite:///{tmp}/kn.db",
    )  # fmt: skip
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["*12 passed*"])


def test_a_shared_store_for_every_test_is_refused(pytester: pytest.Pytester) -> None:
    db = pytester.path / "one.db"
    result = pytester.runpytest_subprocess(
        "--pyargs", "kubenenc.testing.test_shape", "-p", "no:cacheprovider",
        f"--backend-url=sqlite:///{db}",
    )  # fmt: skip
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*names one store for every test*"])


def test_without_a_backend_the_suite_says_what_to_pass(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pyargs", "kubenenc.testing.test_shape", "-p", "no:cacheprovider"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*needs a backend: pass --backend-url=URL*"])


LACKING = """
from typing import Protocol, runtime_checkable

import kubenenc.backends


@runtime_checkable
class Unoffered(Protocol):
    def no_backend_has_this(self) -> None: ...


# A stand-in for a backend without the role: no backend offers this protocol.
kubenenc.backends.FinishAndClaim = Unoffered
"""


def test_tests_of_a_missing_optional_role_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LACKING)
    args = ["--pyargs", "kubenenc.testing.test_finish_and_claim", "-p", "no:cacheprovider",
            "--backend-url=memory://", "-rs"]  # fmt: skip
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*does not offer the optional FinishAndClaim role*"])
    pytester.makeini("[pytest]\nkubenenc_required_roles = FinishAndClaim\n")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*which kubenenc_required_roles requires*"])
