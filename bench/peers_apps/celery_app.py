"""The no-op task as a Celery task on Redis, results kept in Redis."""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ["PEER_URL"]
app = Celery("peers", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def noop(i: int) -> int:
    return i
