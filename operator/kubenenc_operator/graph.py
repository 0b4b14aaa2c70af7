"""Cycles in the ``dependsOn`` graph of TaskDefinitions, as a pure function.

The same idea as :func:`kubenenc.waitgraph.find_loop` (walk from a node, remember how each
node was reached, describe the loop by walking back), applied to the whole graph at once:
every set of definitions that reach each other through ``dependsOn`` (a strongly connected
component) is a loop that can never start. Every member of a loop is reported with the same,
readable path (starting at its alphabetically first member), so each one's condition names
the whole loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class _Tarjan:
    """Strongly connected components, iteratively (a long chain cannot overflow the stack)."""

    def __init__(self, depends_on: Mapping[str, Sequence[str]]) -> None:
        self.graph = {n: [c for c in deps if c in depends_on] for n, deps in depends_on.items()}
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.components: list[set[str]] = []

    def run(self) -> list[set[str]]:
        for root in sorted(self.graph):
            if root not in self.index:
                self._visit(root)
        return self.components

    def _enter(self, node: str) -> None:
        self.index[node] = self.low[node] = len(self.index)
        self.stack.append(node)
        self.on_stack.add(node)

    def _visit(self, root: str) -> None:
        self._enter(root)
        work = [(root, iter(self.graph[root]))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    self.low[parent] = min(self.low[parent], self.low[node])
                if self.low[node] == self.index[node]:
                    self._pop_component(node)
            elif child not in self.index:
                self._enter(child)
                work.append((child, iter(self.graph[child])))
            elif child in self.on_stack:
                self.low[node] = min(self.low[node], self.index[child])

    def _pop_component(self, node: str) -> None:
        component: set[str] = set()
        while True:
            member = self.stack.pop()
            self.on_stack.discard(member)
            component.add(member)
            if member == node:
                break
        self.components.append(component)


def find_cycles(depends_on: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Map each name that sits on a loop to that loop, as ``(a, b, ..., a)``.

    ``depends_on[x]`` lists what ``x`` depends on; names that are not keys (missing
    definitions) end a path. Linear in the size of the graph (Tarjan's components), so every
    TaskDefinition of a large namespace can run it on each reconcile.
    """
    found: dict[str, tuple[str, ...]] = {}
    for members in _Tarjan(depends_on).run():
        first = min(members)
        if len(members) == 1 and first not in depends_on.get(first, ()):
            continue
        loop = _loop_path(first, members, depends_on)
        for member in members:
            found[member] = loop
    return found


def _loop_path(
    start: str, members: set[str], depends_on: Mapping[str, Sequence[str]]
) -> tuple[str, ...]:
    """A shortest path from ``start`` back to itself inside one component (BFS)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(set(depends_on.get(node, ())) & members):
                if child == start:
                    path = [start]
                    step = node
                    while step != start:
                        path.append(step)
                        step = came_from[step]
                    return (start, *reversed(path[1:]), start) if len(path) > 1 else (start, start)
                if child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        frontier = nxt
    return (start, start)  # unreachable for a real component


def describe_cycle(loop: Sequence[str]) -> str:
    """``a -> b -> a`` with what to change."""
    return (
        f"dependsOn forms a loop that can never start: {' -> '.join(loop)}; "
        "remove one of these dependsOn entries"
    )
