"""The Redis backend's per-thread read-ahead bookkeeping (kubenenc_redis.readahead), no server."""

from __future__ import annotations

import threading

from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status
from kubenenc.testing.helpers import new
from kubenenc_redis import readahead
from kubenenc_redis.readahead import ReadAhead


def record(id: str, status: Status) -> InvocationRecord:
    item = new("f", id)
    return InvocationRecord(
        id=InvocationId(id), app=item.app, task=item.task, args=item.args,
        call_key=item.call_key, display=item.display, pool="default", priority=0,
        status=status, created_at=1.0, updated_at=1.0,
    )  # fmt: skip


def test_following_ids_are_those_this_thread_registered_after_in_order() -> None:
    ahead = ReadAhead()
    ahead.registered(["a", "b"])
    ahead.registered(["c"])
    assert ahead.following("a") == ["b", "c"]
    assert ahead.following("c") == []
    assert ahead.following("unknown") == []
    seen: list[list[str]] = []
    thread = threading.Thread(target=lambda: seen.append(ahead.following("a")))
    thread.start()
    thread.join()
    assert seen == [[]]  # another thread registered nothing


def test_only_final_records_are_kept_and_each_answers_once() -> None:
    ahead = ReadAhead()
    ahead.registered(["a", "b", "c"])
    ahead.keep([record("b", Status.SUCCESS), record("c", Status.RUNNING), None])
    assert ahead.following("a") == ["c"]  # b is kept already
    assert ahead.take("c") is None
    found = ahead.take("b")
    assert found is not None and found.status is Status.SUCCESS
    assert ahead.take("b") is None


def test_the_order_forgets_its_older_half_past_the_limit() -> None:
    ahead = ReadAhead()
    ids = [str(i) for i in range(readahead.ORDER_LIMIT + 10)]
    for id in ids:
        ahead.registered([id])
    assert ahead.following(ids[0]) == []  # forgotten
    last = ids[-readahead.WINDOW - 1]
    assert ahead.following(last) == ids[-readahead.WINDOW :]


def test_a_batch_larger_than_the_order_keeps_only_its_tail() -> None:
    ahead = ReadAhead()
    ids = [str(i) for i in range(3 * readahead.ORDER_LIMIT)]
    ahead.registered(ids)
    assert ahead.following(ids[0]) == []
    assert ahead.following(ids[-2]) == [ids[-1]]
    assert len(ahead._local.order) <= readahead.ORDER_LIMIT


def test_ids_waited_on_are_not_read_ahead_again() -> None:
    ahead = ReadAhead()
    ahead.registered(["a", "b", "c", "d"])
    ahead.waited("a")
    assert ahead.following("a") == ["b", "c", "d"]  # in order: the next ones
    ahead.waited("d")  # backwards from the end: nothing ahead is left to read
    ahead.waited("c")
    assert ahead.following("c") == []
    ahead.waited("b")
    assert ahead.following("b") == []


def test_a_kept_record_does_not_answer_once_its_id_is_registered_again() -> None:
    ahead = ReadAhead()
    ahead.registered(["a", "b", "c"])
    ahead.keep([record("b", Status.FAILED), record("c", Status.FAILED)])
    ahead.registered(["b"])  # a new run under b's id (its record was deleted meanwhile)
    assert ahead.take("b") is None
    found = ahead.take("c")
    assert found is not None and found.status is Status.FAILED


def test_a_deletion_by_this_process_stales_what_every_thread_kept() -> None:
    ahead = ReadAhead()
    ahead.registered(["a", "b"])
    ahead.keep([record("a", Status.FAILED), record("b", Status.FAILED)])
    thread = threading.Thread(target=ahead.forgotten)  # a purge in another thread
    thread.start()
    thread.join()
    assert ahead.take("a") is None
    ahead.keep([record("b", Status.SUCCESS)])  # read after the deletion: answers
    found = ahead.take("b")
    assert found is not None and found.status is Status.SUCCESS
