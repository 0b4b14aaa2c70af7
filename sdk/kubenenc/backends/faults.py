"""Retrying a backend call while its server is unreachable: one loop for every plugin.

A networked backend sends a call again after a connection fault, waiting 50 ms and doubling
up to 2 s, until ``retry_for`` seconds (the URL option, see
:mod:`kubenenc.backends.urloptions`) have passed; then it raises
:class:`~kubenenc.errors.BackendUnavailable`, which callers and the worker handle as "the
backend is down". Whether a call may be sent again is the plugin's business (Redis sends
request ids, MongoDB starts its step over); the timing and the messages are the same
everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kubenenc.errors import BackendUnavailable

T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def retry_faults(
    call: Callable[[], T],
    *,
    what: str,
    server: str,
    faults: tuple[type[BaseException], ...],
    retry_for: float,
    log: logging.Logger,
    closed: Callable[[], bool] | None = None,
) -> T:
    """``call()``, called again with back-off while it raises one of ``faults``.

    ``what`` names the operation and ``server`` the server (redacted) in messages. Raises
    BackendUnavailable once the next wait would end past ``retry_for`` seconds from the
    first try, or at once when ``closed()`` says the backend was closed meanwhile."""
    deadline = time.monotonic() + retry_for
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except faults as exc:
            if closed is not None and closed():
                raise BackendUnavailable(f"{server} {what}: the backend was closed") from exc
            if time.monotonic() + delay > deadline:
                raise BackendUnavailable(
                    f"{server} unreachable for {retry_for:g} s during {what}: {exc}"
                ) from exc
            log.warning("%s fault during %s (%s); retrying in %.2f s", server, what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
