"""Cycle detection over the wait graph, as a pure function."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable

from kubenenc.ids import InvocationId
from kubenenc.waitgraph import Node, find_loop, format_loop


def node(name: str, call: str | None = None) -> Node:
    """Node ``name``; its call (key and display) defaults to the name."""
    call = call or name
    return Node(InvocationId(name), f"key:{call}", f"{call}()")


class Graph:
    """``waiters_of`` over explicit edges, counting how often each node is asked about."""

    def __init__(self) -> None:
        self.up: defaultdict[InvocationId, list[Node]] = defaultdict(list)
        self.calls: Counter[InvocationId] = Counter()

    def wait(self, waiter: Node, target: Node) -> None:
        self.up[target.id].append(waiter)

    def waiters_of(self, id: InvocationId) -> Iterable[Node]:
        self.calls[id] += 1
        return list(self.up.get(id, ()))


def test_no_waiters_no_loop() -> None:
    g = Graph()
    assert find_loop(node("a"), [node("b")], g.waiters_of) is None
    assert find_loop(node("a"), [], g.waiters_of) is None


def test_waiting_on_itself_by_id() -> None:
    a = node("a")
    loop = find_loop(a, [a], Graph().waiters_of)
    assert loop is not None
    assert loop.lines == ("a()", "a()")
    assert loop.target == a
    assert loop.chain == frozenset({a.id})


def test_waiting_on_a_new_invocation_of_its_own_call() -> None:
    a = node("a1", "a")
    again = node("a2", "a")
    loop = find_loop(a, [again], Graph().waiters_of)
    assert loop is not None
    assert loop.lines == ("a()", "a()")
    assert loop.target == again
    assert again.id not in loop.chain


def test_loop_by_id_up_the_chain() -> None:
    g = Graph()
    a, b, c = node("a"), node("b"), node("c")
    g.wait(a, b)
    g.wait(b, c)
    loop = find_loop(c, [a], g.waiters_of)  # c waits on a, which waits (via b) on c
    assert loop is not None
    assert loop.lines == ("a()", "b()", "c()", "a()")
    assert loop.target == a
    assert loop.chain == frozenset({a.id, b.id, c.id})


def test_loop_by_call_key_up_the_chain() -> None:
    g = Graph()
    a, b = node("a1", "a"), node("b")
    g.wait(a, b)
    a2 = node("a2", "a")
    loop = find_loop(b, [node("x"), a2], g.waiters_of)
    assert loop is not None
    assert loop.lines == ("a()", "b()", "a()")
    assert loop.target == a2
    assert a2.id not in loop.chain
    assert loop.chain == frozenset({a.id, b.id})


def test_fan_in_finds_the_branch_that_loops() -> None:
    g = Graph()
    w, p1, p2, q = node("w"), node("p1"), node("p2"), node("q", "k")
    g.wait(p1, w)
    g.wait(p2, w)
    g.wait(q, p2)
    target = node("t", "k")
    loop = find_loop(w, [target], g.waiters_of)
    assert loop is not None
    assert loop.lines == ("k()", "p2()", "w()", "k()")
    assert loop.chain == frozenset({q.id, p2.id, w.id})


def test_fan_in_without_a_loop() -> None:
    g = Graph()
    w = node("w")
    for i in range(20):
        g.wait(node(f"p{i}"), w)
    assert find_loop(w, [node("t"), node("u")], g.waiters_of) is None


def test_same_call_in_a_sibling_branch_is_no_loop() -> None:
    # fib(4) waits fib(3) and fib(2); fib(3) now waits on another fib(2): no loop.
    g = Graph()
    f4, f3, f2 = node("f4", "fib4"), node("f3", "fib3"), node("f2", "fib2")
    g.wait(f4, f3)
    g.wait(f4, f2)
    assert find_loop(f3, [node("f2b", "fib2"), node("f1", "fib1")], g.waiters_of) is None


def test_diamond_visits_each_node_once() -> None:
    g = Graph()
    w, a, b, top = node("w"), node("a"), node("b"), node("top")
    g.wait(a, w)
    g.wait(b, w)
    g.wait(top, a)
    g.wait(top, b)
    assert find_loop(w, [node("t")], g.waiters_of) is None
    assert set(g.calls.values()) == {1}
    assert set(g.calls) == {w.id, a.id, b.id, top.id}


def test_cost_is_bounded_by_the_chain_not_the_graph() -> None:
    g = Graph()
    # A big graph of unrelated waits ...
    for i in range(5000):
        g.wait(node(f"x{i}"), node(f"y{i % 50}"))
    # ... and a chain of 10 above the waiter.
    chain = [node(f"c{i}") for i in range(11)]
    for lower, upper in itertools.pairwise(chain):
        g.wait(upper, lower)
    assert find_loop(chain[0], [node("y1"), node("t")], g.waiters_of) is None
    assert sum(g.calls.values()) == len(chain)
    assert set(g.calls) == {c.id for c in chain}


def test_nearest_match_is_reported() -> None:
    g = Graph()
    w, p, top = node("w"), node("p", "k"), node("top", "k")
    g.wait(p, w)
    g.wait(top, p)
    loop = find_loop(w, [node("t", "k")], g.waiters_of)
    assert loop is not None
    assert loop.lines == ("k()", "w()", "k()")


def test_corrupt_cyclic_data_terminates() -> None:
    g = Graph()
    a, b = node("a"), node("b")
    g.wait(a, b)
    g.wait(b, a)  # a loop already in the store (should never happen)
    assert find_loop(a, [node("t")], g.waiters_of) is None


def test_max_nodes_bounds_the_walk() -> None:
    g = Graph()
    chain = [node(f"c{i}") for i in range(30)]
    for lower, upper in itertools.pairwise(chain):
        g.wait(upper, lower)
    far = node("far", chain[-1].call_key.removeprefix("key:"))
    assert find_loop(chain[0], [far], g.waiters_of) is not None
    assert find_loop(chain[0], [far], g.waiters_of, max_nodes=10) is None
    assert sum(g.calls.values()) <= len(chain) + 11


def test_format_loop() -> None:
    text = format_loop(("a(1)", "b(1)", "a(1)"))
    assert text == (
        "waiting on a(1) would close a loop that can never finish:\n"
        "  a(1)\n"
        "  -> waits on b(1)\n"
        "  -> waits on a(1)\n"
        "  (the last call is already waiting higher up this chain)"
    )
