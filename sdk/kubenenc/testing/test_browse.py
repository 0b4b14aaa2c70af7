"""Browse: bounded, cursor-paginated read queries for the dashboard (every backend)."""

from __future__ import annotations

import pytest

from kubenenc.backends.browse import Browse, InvocationFilter
from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids, failed, pause, running, succeed

GHOST = InvocationId("7" * 32)


pytestmark = pytest.mark.kubenenc_role("Browse")


def _browse(backend: Backend) -> Browse:
    assert isinstance(backend, Browse), f"{type(backend).__name__} does not offer Browse"
    return backend


def _all_pages(
    b: Browse, where: InvocationFilter, limit: int, budget: int
) -> tuple[list[InvocationId], int]:
    """Every matching id, newest first, following cursors; and how many calls it took."""
    out: list[InvocationId] = []
    cursor: str | None = None
    calls = 0
    while True:
        page = b.browse(where, cursor=cursor, limit=limit, budget=budget)
        calls += 1
        assert len(page.items) <= limit
        assert page.scanned <= budget
        out.extend(r.id for r in page.items)
        if page.next is None:
            return out, calls
        assert calls < 100, "cursors do not advance"
        cursor = page.next


def test_browse_pages_newest_first_without_repeats(backend: Backend) -> None:
    b = _browse(backend)
    ids = [add(backend, float(i), args=str(i)) for i in range(12)]
    page = b.browse(InvocationFilter(), limit=5)
    assert [r.id for r in page.items] == ids[::-1][:5]
    assert page.next is not None
    assert page.items[0].display == "f(11)"
    got, _ = _all_pages(b, InvocationFilter(), limit=5, budget=1000)
    assert got == ids[::-1]


def test_browse_filters_on_every_field(backend: Backend) -> None:
    b = _browse(backend)
    a = add(backend, 1.0, "alpha", "Needle", app="shop", pool="p1")
    b2 = add(backend, 2.0, "beta", "hay", app="shop", pool="p1")
    c = add(backend, 3.0, "alpha", "other", app="other", pool="p2")
    d = add(backend, 4.0, "alpha", "needle2", app="shop", pool="p1")
    assert claim_ids(backend, W1, 1, 5.0, pool="p2") == [c]

    def ids(**kw: object) -> list[InvocationId]:
        return [r.id for r in b.browse(InvocationFilter(**kw)).items]  # type: ignore[arg-type]

    assert ids(app="shop", task="tests.alpha") == [d, a]
    assert ids(status=Status.RUNNING) == [c]
    assert ids(worker=W1) == [c]
    assert ids(worker=WorkerId("nobody")) == []
    assert ids(pool="p2") == [c]
    assert ids(text="NEEDLE") == [d, a]  # case-insensitive, on the display text
    assert ids(since=2.0, until=4.0) == [c, b2]
    assert ids(app="nope") == []
    [rec] = b.browse(InvocationFilter(status=Status.RUNNING)).items
    assert (rec.status, rec.worker, rec.pool) == (Status.RUNNING, W1, "p2")


def test_browse_is_bounded_by_the_budget_and_resumes(backend: Backend) -> None:
    b = _browse(backend)
    wanted = add(backend, 0.5, "rare")
    for i in range(30):
        add(backend, 1.0 + i, args=str(i))
    first = b.browse(InvocationFilter(task="tests.rare"), limit=10, budget=10)
    assert first.scanned <= 10
    # A store that filters by the task itself may find it at once; one that reads every
    # call ran out of budget first and says where to go on.
    assert [r.id for r in first.items] == [wanted] or first.next is not None
    unfiltered = b.browse(InvocationFilter(text="(0)"), limit=10, budget=10)
    assert unfiltered.items == []  # the text is on the oldest of 30: beyond the budget
    assert unfiltered.next is not None
    got, calls = _all_pages(b, InvocationFilter(task="tests.rare"), limit=10, budget=10)
    assert got == [wanted]
    got, calls = _all_pages(b, InvocationFilter(text="(0)"), limit=10, budget=10)
    assert len(got) == 1
    assert calls >= 3


def test_browse_text_and_time_filters_page_too(backend: Backend) -> None:
    b = _browse(backend)
    ids = [add(backend, float(i), args=f"k{i % 3}") for i in range(20)]
    want = [i for n, i in enumerate(ids) if n % 3 == 1][::-1]
    got, _ = _all_pages(b, InvocationFilter(text="(k1)"), limit=2, budget=7)
    assert got == want
    got, _ = _all_pages(b, InvocationFilter(since=5.0, until=9.0), limit=3, budget=6)
    assert got == ids[5:9][::-1]


def test_activity_counts_finished_and_failed_per_bucket(backend: Backend) -> None:
    b = _browse(backend)
    ok = running(backend, 1.0, "ok", app="shop")
    bad = running(backend, 1.0, "bad", app="shop")
    late = running(backend, 1.0, "late", app="other")
    add(backend, 1.0, "open", app="shop")
    succeed(backend, ok, now=105.0)
    failed(backend, bad, now=115.0)
    succeed(backend, late, now=125.0)
    got = b.activity(since=100.0, width=10.0, buckets=3)
    assert [(x.start, x.finished, x.failed) for x in got] == [
        (100.0, 1, 0),
        (110.0, 1, 1),
        (120.0, 1, 0),
    ]
    assert not any(x.estimated for x in got)
    got = b.activity(since=100.0, width=10.0, buckets=3, app="shop")
    assert [(x.finished, x.failed) for x in got] == [(1, 0), (1, 1), (0, 0)]
    assert [x.finished for x in b.activity(since=0.0, width=50.0, buckets=2)] == [0, 0]


def test_relations_give_parent_children_and_wait_edges(backend: Backend) -> None:
    b = _browse(backend)
    parent = running(backend, 1.0, "parent")
    kids = [add(backend, 2.0 + i, "kid", str(i), parent=parent) for i in range(3)]
    add(backend, 6.0, "unrelated")
    pause(backend, parent, kids[:2], now=7.0)
    rel = b.relations(parent)
    assert rel is not None
    assert rel.parent is None
    assert rel.children == kids
    assert not rel.more_children
    assert rel.waits_on == sorted(kids[:2])
    assert rel.waited_by == []
    kid = b.relations(kids[0])
    assert kid is not None
    assert (kid.parent, kid.children, kid.waited_by) == (parent, [], [parent])
    capped = b.relations(parent, limit=2)
    assert capped is not None
    assert (capped.children, capped.more_children) == (kids[:2], True)
    assert b.relations(GHOST) is None


def test_relations_drop_wait_edges_once_resumed(backend: Backend) -> None:
    b = _browse(backend)
    parent = running(backend, 1.0, "p2")
    kid = add(backend, 2.0, "k2", parent=parent, pool="kids")
    pause(backend, parent, [kid], now=3.0)
    assert claim_ids(backend, W1, 1, 4.0, pool="kids") == [kid]
    assert backend.finish([Outcome(kid, OutcomeKind.SUCCESS, result="1")], W1, 5.0) == [True]
    assert backend.resume([parent], W1, 1, 6.0).resumed == (parent,)
    rel = b.relations(parent)
    assert rel is not None
    assert (rel.children, rel.waits_on) == ([kid], [])


def test_browse_failed_newest_first_by_app(backend: Backend) -> None:
    b = _browse(backend)
    first = running(backend, 1.0, "x", "1", app="shop")
    other = running(backend, 2.0, "x", "2", app="other")
    ok = running(backend, 3.0, "x", "3", app="shop")
    last = running(backend, 4.0, "x", "4", app="shop")
    for id in (last, other, first):  # the order they fail in does not matter
        failed(backend, id, now=30.0)
    succeed(backend, ok, now=31.0)
    assert backend.fail(add(backend, 5.0, "y", app="shop"), "builtins.E", "gone", 32.0)
    got = [r.id for r in b.browse(InvocationFilter(status=Status.FAILED, task="tests.x")).items]
    assert got == [last, other, first]
    got = [r.id for r in b.browse(InvocationFilter(status=Status.FAILED, app="shop")).items]
    assert got[1:] == [last, first]
    got, _ = _all_pages(b, InvocationFilter(status=Status.FAILED), limit=1, budget=2)
    assert len(got) == 4


def test_browse_text_is_casefolded_beyond_ascii(backend: Backend) -> None:
    b = _browse(backend)
    street = add(backend, 1.0, "addr", "Hauptstraße 5")
    plain = add(backend, 2.0, "addr", "MAIN STREET")
    assert [r.id for r in b.browse(InvocationFilter(text="STRASSE")).items] == [street]
    assert [r.id for r in b.browse(InvocationFilter(text="street")).items] == [plain]
    assert [r.id for r in b.browse(InvocationFilter(text="straße")).items] == [street]
