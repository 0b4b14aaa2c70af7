"""Typed identifiers.

Bare strings are easy to swap by mistake (an invocation id where a task id was meant); these
``NewType``s make mypy catch that at no runtime cost.
"""

from __future__ import annotations

import os
from typing import NewType, cast

InvocationId = NewType("InvocationId", str)
"""Unique id of one invocation: 32 lowercase hex characters."""

TaskId = NewType("TaskId", str)
"""A task's importable name, ``module.qualname``; workers import the task by it."""

WorkerId = NewType("WorkerId", str)
"""A worker process's id, unique per start: ``host:pid:random``."""


def new_invocation_id() -> InvocationId:
    """Return a fresh random invocation id: 128 random bits as 32 hex characters."""
    return InvocationId(os.urandom(16).hex())


def new_invocation_ids(count: int) -> list[InvocationId]:
    """``count`` fresh ids as :func:`new_invocation_id` makes them, from one read of the
    system's random source (one system call per id costs more than the rest of an id)."""
    text = os.urandom(16 * count).hex()
    # cast, not InvocationId(...) per item: a NewType call is a Python call, at no gain.
    return cast(list[InvocationId], [text[i : i + 32] for i in range(0, 32 * count, 32)])
