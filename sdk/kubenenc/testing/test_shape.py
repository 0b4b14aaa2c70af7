"""The backend object itself: a complete Backend, opened from a URL, closed idempotently."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.errors import ConfigurationError


def test_is_a_complete_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(type(backend).shared_across_processes, bool)


def test_from_url_refuses_a_url_of_another_scheme(backend: Backend) -> None:
    with pytest.raises(ConfigurationError):
        type(backend).from_url("bogus://nowhere/x")


def test_close_is_idempotent(backend: Backend) -> None:
    backend.close()
    backend.close()
