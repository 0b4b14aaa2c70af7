"""Cycle detection on the graph of waits, as a pure function.

A wait edge ``W -> T`` means invocation W is paused until T is final. A loop can never finish
when W waits on a *call* (task + arguments) that already stands above W in its chain of
waits: ``a(1)`` waits ``b(1)``, which calls ``a(1)`` again and waits on it. Comparing ids
alone misses this (the second ``a(1)`` is a new invocation), so the check compares call keys
too; when registration deduplicates, the ids match as well and the same check fires.

Only the chain above the waiter is walked (whoever waits on W, whoever waits on them, ...), so
the cost of a wait grows with the length of that chain, not with the size of the graph.
Backends run :func:`find_loop` inside the atomic step that writes the edge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kubenenc.ids import InvocationId


@dataclass(frozen=True, slots=True)
class Node:
    """An invocation as the wait graph sees it."""

    id: InvocationId
    call_key: str
    display: str


@dataclass(frozen=True, slots=True)
class Loop:
    """A loop found by :func:`find_loop`."""

    lines: tuple[str, ...]
    """Display lines: the ancestor equal to the target, down the chain to the waiter, then
    the target call again."""
    target: Node
    """The waited-on invocation that closes the loop."""
    chain: frozenset[InvocationId]
    """Ids of the invocations on the loop's chain (the waiter and those above it)."""


def find_loop(
    waiter: Node,
    targets: Sequence[Node],
    waiters_of: Callable[[InvocationId], Iterable[Node]],
    max_nodes: int = 100_000,
) -> Loop | None:
    """Return the loop that ``waiter`` waiting on ``targets`` would close, or None.

    ``waiters_of(x)`` yields the invocations currently paused on ``x``. The loop is returned
    as display lines: the ancestor equal to a target, each invocation down the chain to the
    waiter, and the target call again. ``max_nodes`` bounds the walk on corrupt data.
    Pass only targets that are not final: a final one can close no loop.
    """
    by_key = {t.call_key: t for t in targets}
    by_id = {t.id: t for t in targets}
    below: dict[InvocationId, Node | None] = {waiter.id: None}
    queue: deque[Node] = deque([waiter])
    while queue:
        node = queue.popleft()
        target = by_id.get(node.id) or by_key.get(node.call_key)
        if target is not None:
            return _describe(node, below, target)
        for up in waiters_of(node.id):
            if up.id in below:
                continue
            below[up.id] = node
            if len(below) > max_nodes:
                return None
            queue.append(up)
    return None


def _describe(top: Node, below: dict[InvocationId, Node | None], target: Node) -> Loop:
    lines = [top.display]
    chain = {top.id}
    step = below[top.id]
    while step is not None:
        lines.append(step.display)
        chain.add(step.id)
        step = below[step.id]
    lines.append(target.display)
    return Loop(lines=tuple(lines), target=target, chain=frozenset(chain))


def format_loop(loop: Sequence[str]) -> str:
    """The CycleDetectedError message for ``loop`` (as returned by :func:`find_loop`)."""
    body = "\n".join(
        f"  {line}" if i == 0 else f"  -> waits on {line}" for i, line in enumerate(loop)
    )
    return (
        f"waiting on {loop[-1]} would close a loop that can never finish:\n{body}\n"
        "  (the last call is already waiting higher up this chain)"
    )
