"""Closing a SQLite backend while other threads use it (a worker's waker thread polling in
``wait_for_work`` while a test's teardown closes the backend) must not crash the process:
closing a connection another thread is executing on frees statements under it, a segfault
in CPython's sqlite3 that took whole test runs down."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from kubenenc.backends.sqlite import SQLiteBackend

RACE = textwrap.dedent(
    """
    import sys, threading, time
    from kubenenc.backends.sqlite import SQLiteBackend

    for round in range(int(sys.argv[2])):
        backend = SQLiteBackend(f"{sys.argv[1]}/r{round}.db")
        stop = threading.Event()

        def waker() -> None:
            while not stop.is_set():
                backend.wait_for_work("p", 0.02)

        threads = [threading.Thread(target=waker) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        backend.close()
        time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
    print("done")
    """
)


@pytest.mark.timeout(300)
def test_closing_while_other_threads_poll_does_not_crash(tmp_path: Path) -> None:
    # The unfixed code died with SIGSEGV within a few hundred rounds on this machine.
    run = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path), "400"],
        check=False, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.strip() == "done"


@pytest.mark.timeout(60)
def test_close_stops_a_waiting_thread_and_its_connection_closes_at_next_use(
    tmp_path: Path,
) -> None:
    backend = SQLiteBackend(tmp_path / "k.db")
    started = threading.Event()
    answered: list[bool] = []
    reopened: list[bool] = []

    def waiter() -> None:
        first = backend._held()
        started.set()
        answered.append(backend.wait_for_work("p", 30.0))
        again = backend._held()  # its next use closes the doomed one and opens another
        reopened.append(first.closed and again is not first and not again.closed)

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(10)
    mine = backend._held()
    backend.close()
    assert mine.closed  # this thread's connection closes at once
    thread.join(20)
    assert not thread.is_alive()  # the 30 s wait returned early, not at its deadline
    assert answered == [False] and reopened == [True]
    assert backend.counts() == {}  # usable after close: a new connection
    backend.close()
