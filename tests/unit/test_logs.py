"""kubenenc.logs: run fields on every record of a run, per thread and per asyncio task."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from kubenenc import logs


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RunFieldsFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def fields(n: int) -> logs.RunFields:
    return logs.RunFields(f"inv{n}", f"mod.task{n}", n, "worker-1")


def test_lines_inside_a_run_carry_its_fields_and_outside_none(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    log = logging.getLogger("test.logs")
    log.info("before")
    with logs.bound(fields(1)):
        log.info("inside %s", "x", extra={"order": 7})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")
    before, inside, failed, after = records(captured[0])
    assert "invocation_id" not in before and "invocation_id" not in after
    assert inside["message"] == "inside x" and inside["order"] == 7
    assert (inside["invocation_id"], inside["task"], inside["attempt"], inside["worker_id"]) == (
        "inv1", "mod.task1", 1, "worker-1",
    )  # fmt: skip
    assert "ValueError: boom" in str(failed["exc"]) and failed["invocation_id"] == "inv1"


def test_threads_see_only_their_own_run(captured: tuple[io.StringIO, logging.Handler]) -> None:
    log = logging.getLogger("test.logs")
    barrier = threading.Barrier(4)

    def run(n: int) -> None:
        with logs.bound(fields(n)):
            barrier.wait(5)  # all four bound at once
            log.info("run %d", n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for r in records(captured[0]):
        assert r["invocation_id"] == f"inv{str(r['message']).split()[1]}"


def test_asyncio_tasks_see_only_their_own_run(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    log = logging.getLogger("test.logs")

    async def run(n: int, gate: asyncio.Event) -> None:
        with logs.bound(fields(n)):
            await gate.wait()  # interleaved with the others
            log.info("run %d", n)

    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(run(n, gate)) for n in range(4)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    got = records(captured[0])
    assert len(got) == 4
    for r in got:
        assert r["invocation_id"] == f"inv{str(r['message']).split()[1]}"


def test_text_format_names_the_run() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RunFieldsFilter())
    handler.setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    record = logging.makeLogRecord({"name": "x", "levelname": "INFO", "msg": "hi"})
    with logs.bound(fields(2)):
        handler.handle(record)
    handler.handle(logging.makeLogRecord({"name": "x", "levelname": "INFO", "msg": "out"}))
    first, second = stream.getvalue().splitlines()
    assert "x [mod.task2 inv2 attempt=2 worker=worker-1]: hi" in first
    assert second.endswith("x: out")
