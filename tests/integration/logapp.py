"""Tasks that log, for the structured-log tests (``tests.integration.logapp:app``)."""

from __future__ import annotations

import logging
import os

from kubenenc import App

app = App("logtest")
log = logging.getLogger("logtest.tasks")


@app.task
def leaf(tag: str) -> str:
    log.info("leaf %s", tag)
    return tag


@app.task
def parent(tag: str) -> str:
    """Logs before and after a wait: the resumed run still logs as itself."""
    log.info("parent before %s", tag)
    value = leaf(f"{tag}-child").result()
    log.info("parent after %s", tag)
    return value


@app.task(retries=1, retry_on=(OSError,), backoff=0.01)
def flaky_once(marker: str) -> str:
    """Fails its first try (a marker file remembers it), logging each try."""
    first = not os.path.exists(marker)
    log.info("flaky try first=%s", first)
    if first:
        with open(marker, "w") as fh:
            fh.write("1")
        raise OSError("first try fails")
    return "ok"


@app.task
async def async_leaf(tag: str) -> str:
    log.info("async leaf %s", tag)
    return tag


@app.task
async def async_parent(tag: str) -> str:
    log.info("async parent before %s", tag)
    value = await async_leaf(f"{tag}-child").async_result()
    log.info("async parent after %s", tag)
    return value


@app.task
def needs_file(path: str) -> str:
    """Fails while ``path`` does not exist (no retries): what ``kubenenc retry`` is for."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return "found"
