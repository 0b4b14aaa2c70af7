"""The wait graph of one invocation as SVG, drawn on the server (no script needed to see it).

Three rows: above, the parent and whoever waits on the invocation; in the middle, the
invocation; below, what it waits on and the children it called. Solid arrows are calls
(parent to child), orange dashed arrows are waits. A refused loop (CycleDetectedError) is
drawn as a ring of the calls in the loop, from the error's text, with the refused wait in red.
Every label is escaped; nodes link to their own pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

NODE_W, NODE_H, GAP_X, GAP_Y = 190, 44, 24, 70
MAX_ROW = 12
"""Nodes drawn per row; more are summarised as "+N more"."""

COLOURS = {
    Status.SUCCESS: "#2e7d32", Status.FAILED: "#c62828", Status.CANCELLED: "#6d6d6d",
    Status.RUNNING: "#1565c0", Status.PAUSED: "#ef6c00", Status.PENDING: "#8e6bbf",
    Status.RETRY: "#b8860b", Status.REGISTERED: "#8e6bbf",
    Status.WAITING_DEPENDENCIES: "#8e6bbf",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Node:
    """One drawn invocation."""

    id: InvocationId
    label: str
    status: Status | None


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow from ``src`` to ``dst``: ``kind`` is ``call`` or ``wait``."""

    src: InvocationId
    dst: InvocationId
    kind: str


def _short(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def node_of(rec: InvocationRecord | None, id: InvocationId) -> Node:
    """A node for ``id`` (``rec`` None: no longer stored)."""
    if rec is None:
        return Node(id, f"{id[:8]} (gone)", None)
    return Node(id, rec.display, rec.status)


def _box(x: float, y: float, node: Node, main: bool = False) -> str:
    colour = COLOURS.get(node.status, "#999") if node.status else "#999"
    status = node.status.value if node.status else "gone"
    width = 3 if main else 1.5
    return (
        f'<a href="/invocations/{escape(node.id)}" class="node" data-id="{escape(node.id)}">'
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
        f'fill="#fff" stroke="{colour}" stroke-width="{width}"/>'
        f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" class="lbl">{escape(_short(node.label))}</text>'
        f'<text x="{x + 8:.0f}" y="{y + 35:.0f}" class="st" fill="{colour}">{status}</text>'
        f"<title>{escape(node.label)}</title></a>"
    )


def _arrow(x1: float, y1: float, x2: float, y2: float, kind: str) -> str:
    cls = {"call": "e-call", "wait": "e-wait", "refused": "e-refused"}[kind]
    return (
        f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" class="{cls}" '
        f'marker-end="url(#arrow-{kind})"/>'
    )


_DEFS = "".join(
    f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
    f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/>'
    "</marker>"
    for k, c in (("call", "#555"), ("wait", "#ef6c00"), ("refused", "#c62828"))
)


def _row_xs(n: int, width: float) -> list[float]:
    total = n * NODE_W + (n - 1) * GAP_X
    left = (width - total) / 2
    return [left + i * (NODE_W + GAP_X) for i in range(n)]


def neighbourhood_svg(
    center: Node, above: list[Node], below: list[Node], edges: list[Edge], more_below: int = 0
) -> str:
    """The three-row picture of ``center`` with its neighbours (see the module docstring)."""
    above, below = above[:MAX_ROW], below[:MAX_ROW]
    widest = max(len(above), len(below), 1) + (1 if more_below else 0)
    width = max(widest * (NODE_W + GAP_X) + GAP_X, NODE_W + 2 * GAP_X)
    rows = [above, [center], below]
    pos: dict[InvocationId, tuple[float, float]] = {}
    parts: list[str] = []
    y = 10.0
    for row in rows:
        if not row:
            continue
        for x, node in zip(_row_xs(len(row), width), row, strict=True):
            pos.setdefault(node.id, (x, y))
        y += NODE_H + GAP_Y
    height = y - GAP_Y + 20
    for e in edges:
        if e.src in pos and e.dst in pos and e.src != e.dst:
            (x1, y1), (x2, y2) = pos[e.src], pos[e.dst]
            down = y2 > y1
            parts.append(
                _arrow(x1 + NODE_W / 2, y1 + (NODE_H if down else 0), x2 + NODE_W / 2,
                       y2 + (0 if down else NODE_H), e.kind)
            )  # fmt: skip
    for node in (*above, *below):
        x, y0 = pos[node.id]
        parts.append(_box(x, y0, node))
    cx, cy = pos[center.id]
    parts.append(_box(cx, cy, center, main=True))
    if more_below:
        x = _row_xs(len(below) + 1, width)[-1]
        parts.append(
            f'<text x="{x + 10:.0f}" y="{y - GAP_Y - NODE_H / 2:.0f}" class="lbl">'
            f"+{more_below} more</text>"
        )
    return _svg(width, height, parts, "wait graph")


def loop_lines(message: str) -> list[str]:
    """The calls of a refused loop from a CycleDetectedError message (see
    :func:`kubenenc.waitgraph.format_loop`): the first line waits on the second, and so on;
    the last is the call already waiting higher up, whose wait was refused."""
    out = []
    for line in message.splitlines()[1:]:
        if not line.startswith("  ") or line.startswith("  ("):
            continue
        out.append(line.strip().removeprefix("-> waits on ").strip())
    return out


def loop_svg(lines: list[str]) -> str:
    """A refused loop drawn as a ring: each call waits on the next; the wait that would
    have closed the ring back to an earlier call is the red one."""
    if len(lines) < 2:
        return ""
    names = list(dict.fromkeys(lines))
    n = len(names)
    radius = max(90.0, n * (NODE_W * 0.45) / math.pi)
    width = 2 * radius + NODE_W + 40
    height = 2 * radius + NODE_H + 60
    cx, cy = width / 2, height / 2
    pos = {}
    for i, name in enumerate(names):
        angle = -math.pi / 2 + 2 * math.pi * i / n
        pos[name] = (cx + radius * math.cos(angle) - NODE_W / 2,
                     cy + radius * math.sin(angle) - NODE_H / 2)  # fmt: skip
    parts = []
    for i in range(len(lines) - 1):
        (x1, y1), (x2, y2) = pos[lines[i]], pos[lines[i + 1]]
        kind = "refused" if i == len(lines) - 2 else "wait"
        parts.append(_curve(x1 + NODE_W / 2, y1 + NODE_H / 2, x2 + NODE_W / 2, y2 + NODE_H / 2,
                            kind))  # fmt: skip
    for name, (x, y) in pos.items():
        parts.append(
            f'<g class="loopnode"><rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="6" fill="#fff" stroke="#c62828" stroke-width="2"/>'
            f'<text x="{x + 8:.0f}" y="{y + 27:.0f}" class="lbl">{escape(_short(name))}</text>'
            f"<title>{escape(name)}</title></g>"
        )
    return _svg(width, height, parts, "refused loop")


def _exit(cx: float, cy: float, tx: float, ty: float) -> tuple[float, float]:
    """Where the line from a box's centre ``(cx, cy)`` towards ``(tx, ty)`` leaves the box."""
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return cx, cy
    t = min(NODE_W / 2 / abs(dx) if dx else math.inf, NODE_H / 2 / abs(dy) if dy else math.inf)
    return cx + dx * t, cy + dy * t


def _curve(x1: float, y1: float, x2: float, y2: float, kind: str) -> str:
    """An arrow between two box centres, bent to its left so that two arrows between the
    same boxes (a loop of two calls) do not cover each other; "refused" gets a label."""
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    bend = min(60.0, length / 3)
    qx, qy = mx + (y2 - y1) / length * bend, my - (x2 - x1) / length * bend
    sx, sy = _exit(x1, y1, qx, qy)
    ex, ey = _exit(x2, y2, qx, qy)
    cls = {"wait": "e-wait", "refused": "e-refused"}[kind]
    out = (
        f'<path d="M{sx:.0f},{sy:.0f} Q{qx:.0f},{qy:.0f} {ex:.0f},{ey:.0f}" class="{cls}" '
        f'fill="none" marker-end="url(#arrow-{kind})"/>'
    )
    if kind == "refused":
        out += f'<text x="{qx + 6:.0f}" y="{qy:.0f}" class="refused-label">refused</text>'
    return out


def _svg(width: float, height: float, parts: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'aria-label="{label}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}"><defs>{_DEFS}</defs>{"".join(parts)}</svg>'
    )


def bars_svg(values: list[tuple[int, int]], estimated: bool, width: int = 720) -> str:
    """Finished (grey) and failed (red) per bucket, as a small bar chart."""
    n = max(len(values), 1)
    height, pad = 120, 4
    top = max((v[0] for v in values), default=0) or 1
    bar = (width - 2 * pad) / n
    parts = []
    for i, (done, bad) in enumerate(values):
        x = pad + i * bar
        h = (height - 20) * done / top
        f = (height - 20) * bad / top
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{h:.1f}" class="b-done"><title>{done} finished, {bad} failed</title></rect>'
        )
        if bad:
            parts.append(
                f'<rect x="{x:.1f}" y="{height - f:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{f:.1f}" class="b-failed"/>'
            )
    note = "≈ failures estimated from samples" if estimated else ""
    parts.append(f'<text x="{pad}" y="12" class="st">max {top}/bucket {note}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="throughput" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
    )
