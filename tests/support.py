"""Helpers shared by the test tiers."""

from __future__ import annotations

import os
import socket

import pytest


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


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when asked; bind promptly)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
