"""Helpers shared by the test tiers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def in_ci() -> bool:
    """True when the CI variable is set (to anything but empty, 0 or false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, reason: str) -> None:
    """Skip with ``reason`` when something a test needs is missing; fail instead under CI,
    so CI can never pass by skipping."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def fresh_name() -> str:
    """A new name for a test's own keyspace (a key prefix, a database): ``t`` and 12 hex."""
    return f"t{uuid.uuid4().hex[:12]}"


def caller_clock(url: str) -> str:
    """``url`` with ``clock=caller``: backend fixtures judge heartbeats on the times callers
    pass, as the conformance suite makes time up (each server's clock, the default, is
    tested in tests/integration)."""
    return f"{url}{'&' if '?' in url else '?'}clock=caller"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when asked; bind promptly)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something truthy and return that; fail the test naming
    ``what`` (and the last value seen) at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> int:
    """SIGTERM ``proc`` (when still running), SIGKILL it after ``grace`` seconds; its exit
    code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
