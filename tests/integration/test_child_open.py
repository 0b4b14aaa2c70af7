"""A task process started while its Redis is down (a restart) waits for it to come back
before it takes work, instead of failing the first body that uses the backend with
BackendUnavailable: opening a backend fails at once when nothing answers, while every call
on an open one rides out an outage shorter than ``retry_for`` (found by
tests/chaos/test_restarts.py: fan-outs run by a spare task process started during the
restart ended FAILED)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from kubenenc import App
from kubenenc.errors import BackendUnavailable
from kubenenc_worker.executors.processes import OPEN_RETRY_FOR, _open_window, open_backend_patiently

from tests.servers.redis import RedisServer, require_redis_server


class _Retried(logging.Handler):
    """Set once the open has failed and is being retried (its warning logged)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "opening the backend" in record.getMessage():
            self.seen.set()


def test_a_task_process_opens_its_backend_once_a_restarting_redis_answers(
    tmp_path: Path,
) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "redis")  # its port chosen, nothing listening yet
    with pytest.raises(BackendUnavailable):  # what a first use in a body did before
        App("child-open-at-once", backend=server.url).backend.get_many([])
    app = App("child-open", backend=server.url)
    retried = _Retried()
    logger = logging.getLogger("kubenenc.worker")
    logger.addHandler(retried)
    # The server comes back once the open has been refused at least once.
    starter = threading.Thread(target=lambda: retried.seen.wait(60) and server.start())
    starter.start()
    try:
        open_backend_patiently(app, 60.0)
        starter.join(60)
        assert retried.seen.is_set()
        assert app.runtime._backend_obj is not None  # opened here, not left to the body
        assert app.backend.get_many([]) == []
    finally:
        logger.removeHandler(retried)
        starter.join(60)
        app.close()
        server.stop()


def test_the_open_window_is_the_urls_retry_for() -> None:
    assert _open_window("redis://127.0.0.1:6379/0?retry_for=7&prefix=x") == 7.0
    assert _open_window("redis://127.0.0.1:6379/0") == OPEN_RETRY_FOR
    assert _open_window(None) == OPEN_RETRY_FOR
