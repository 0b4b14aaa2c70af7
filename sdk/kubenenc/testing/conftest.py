"""Fixtures of the conformance suite: ``backend``, once per backend spec of the session.

Here and not in the plugin, so that only this suite's tests get a fixture called ``backend``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import open_backend
from kubenenc.testing.plugin import BackendSpec, backend_specs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    specs = backend_specs(metafunc.config)
    if not specs:
        raise pytest.UsageError(
            "kubenenc.testing needs a backend: pass --backend-url=URL (for example "
            "--backend-url='sqlite:///{tmp}/kubenenc.db'), or set kubenenc_backend_urls in the "
            "pytest configuration"
        )
    metafunc.parametrize("backend", specs, ids=[s.id for s in specs], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A backend on a fresh, empty store, closed after the test."""
    spec: BackendSpec = request.param
    opened = open_backend(spec.url(request))
    if not spec.fresh_per_test and type(opened).shared_across_processes:
        opened.close()
        pytest.fail(
            f"{spec.text!r} names one store for every test: put {{fresh}} or {{tmp}} in the URL "
            "(or use fixture:NAME) so each test starts from an empty store",
            pytrace=False,
        )
    yield opened
    opened.close()
