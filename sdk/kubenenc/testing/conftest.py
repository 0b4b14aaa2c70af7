"""Fixtures of the conformance suite: ``backend``, once per backend spec of the session.

Here and not in the plugin, so that only this suite's tests get a fixture called ``backend``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kubenenc.backends
from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import open_backend
from kubenenc.testing.plugin import BackendSpec, backend_specs, required_roles


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
    try:
        _check_roles(request, opened)
    except BaseException:
        opened.close()
        raise
    yield opened
    opened.close()


def _check_roles(request: pytest.FixtureRequest, opened: Backend) -> None:
    """Skip (or, for a required role, fail) a test marked ``kubenenc_role`` on a backend
    that does not offer that role."""
    for mark in request.node.iter_markers("kubenenc_role"):
        [name] = mark.args
        role = getattr(kubenenc.backends, name)
        if isinstance(opened, role):
            continue
        reason = f"{type(opened).__name__} does not offer the optional {name} role"
        if name in required_roles(request.config):
            pytest.fail(f"{reason}, which kubenenc_required_roles requires", pytrace=False)
        pytest.skip(reason)
