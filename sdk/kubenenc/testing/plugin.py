"""The kit's pytest plugin: which backends the conformance suite runs against.

Registered under pytest's ``pytest11`` entry point, so it is active wherever kubenenc is
installed; it adds only an option, two ini keys and a marker (the suite's fixtures live in the
suite's own ``conftest.py``, so no other project's tests see them). Each *backend spec* is one of:

- a URL with ``{fresh}`` and/or ``{tmp}`` in it: per test, ``{fresh}`` becomes a new random
  token (``[0-9a-f]{12}``) and ``{tmp}`` the test's ``tmp_path``, so every test opens an empty
  store -- ``redis://127.0.0.1:6379/0?prefix=t{fresh}``, ``sqlite:///{tmp}/kubenenc.db``;
- a URL without them, for a backend whose every ``from_url`` opens a new store (``memory://``);
  a shared backend given such a URL fails the test, as its tests would see each other's data;
- ``fixture:NAME``: the pytest fixture ``NAME`` gives each test the URL of a fresh store. For
  a test session that starts its own server (kubenenc's own suite does so for Redis and
  MongoDB) and drops what each test made.

``--backend-url`` (repeatable) wins over the ``kubenenc_backend_urls`` ini key, which gives
the specs a project runs by default. Each test runs once per spec.

Tests of an optional role (``Admin``, ``Browse``, ``FinishAndClaim``, ``ResumeEarly``: the
names in :mod:`kubenenc.backends`) carry ``@pytest.mark.kubenenc_role(NAME)``: on a backend
without that role they are skipped with the reason, unless the ini key
``kubenenc_required_roles`` lists the role -- then they fail, so a project cannot lose a role
it means to offer without noticing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

FIXTURE_PREFIX = "fixture:"
PLACEHOLDERS = ("{fresh}", "{tmp}")


@dataclass(frozen=True)
class BackendSpec:
    """One backend the suite runs against, as given on the command line or in the ini file."""

    text: str
    id: str

    @property
    def fixture(self) -> str | None:
        """The fixture that gives the URL, for a ``fixture:NAME`` spec."""
        if self.text.startswith(FIXTURE_PREFIX):
            return self.text[len(FIXTURE_PREFIX) :]
        return None

    @property
    def fresh_per_test(self) -> bool:
        """True when each test gets a URL of its own (a placeholder or a fixture)."""
        return self.fixture is not None or any(p in self.text for p in PLACEHOLDERS)

    def url(self, request: pytest.FixtureRequest) -> str:
        """The URL of a fresh store for the test asking."""
        if self.fixture is not None:
            value = request.getfixturevalue(self.fixture)
            if not isinstance(value, str):
                raise TypeError(f"fixture {self.fixture!r} must give a URL (str), not {value!r}")
            return value
        url = self.text.replace("{fresh}", uuid.uuid4().hex[:12])
        if "{tmp}" in url:
            url = url.replace("{tmp}", str(request.getfixturevalue("tmp_path")))
        return url


def parse_specs(texts: list[str]) -> list[BackendSpec]:
    """Specs with short, unique test ids: the URL scheme, or the fixture's name without a
    ``_url`` suffix; a repeated id gets ``-2``, ``-3``..."""
    specs: list[BackendSpec] = []
    seen: dict[str, int] = {}
    for text in texts:
        if text.startswith(FIXTURE_PREFIX):
            base = text[len(FIXTURE_PREFIX) :].removesuffix("_url")
        else:
            base = urlsplit(text).scheme if "://" in text else ""
        if not base:
            raise pytest.UsageError(
                f"backend spec {text!r} is neither a URL with a scheme nor fixture:NAME"
            )
        seen[base] = seen.get(base, 0) + 1
        specs.append(BackendSpec(text, base if seen[base] == 1 else f"{base}-{seen[base]}"))
    return specs


def backend_specs(config: pytest.Config) -> list[BackendSpec]:
    """The specs of this session: ``--backend-url`` if given, else the ini key."""
    given: list[str] = config.getoption("kubenenc_backend_urls") or []
    if not given:
        given = list(config.getini("kubenenc_backend_urls"))
    return parse_specs(given)


def required_roles(config: pytest.Config) -> set[str]:
    """The optional roles this session's backends must offer (``kubenenc_required_roles``)."""
    return set(config.getini("kubenenc_required_roles"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kubenenc_role(name): the test needs the optional backend role kubenenc.backends.<name>; "
        "skipped on a backend without it unless kubenenc_required_roles lists it",
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubenenc", "kubenenc backend conformance suite (kubenenc.testing)")
    group.addoption(
        "--backend-url",
        action="append",
        default=[],
        dest="kubenenc_backend_urls",
        metavar="SPEC",
        help="run the suite against this backend: a URL (with {fresh} or {tmp} for a fresh "
        "store per test) or fixture:NAME; repeat for several backends",
    )
    parser.addini(
        "kubenenc_backend_urls",
        type="linelist",
        default=[],
        help="backend specs the kubenenc.testing suite runs against without --backend-url",
    )
    parser.addini(
        "kubenenc_required_roles",
        type="linelist",
        default=[],
        help="optional backend roles (Admin, Browse, ...) whose tests fail, not skip, when absent",
    )
