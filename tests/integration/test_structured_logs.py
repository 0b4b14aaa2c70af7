"""``kubenenc worker --log-format json``: every line a task logs carries its invocation id,
task, attempt and worker id, in every execution mode, also after a pause and on a retry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc.status import Status

from tests.integration import logapp
from tests.integration.conftest import ROOT
from tests.support import wait_until


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """A backend URL, the log file of the worker, and where the test puts the process."""
    procs: list[subprocess.Popen[bytes]] = []
    yield f"sqlite:///{tmp_path / 'logs.db'}", tmp_path / "worker.log", procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def spawn(url: str, log: Path, mode: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app",
             "tests.integration.logapp:app", "--mode", mode, "--concurrency", "1",
             "--log-format", "json"],
            cwd=ROOT, env={**os.environ, "KUBENENC_BACKEND": url}, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for text in log.read_text().splitlines():
        record = json.loads(text)  # every line is JSON, the worker's own ones too
        out.append(record)
    return out


def task_lines(log: Path) -> dict[str, dict[str, Any]]:
    """The task's own lines, by message."""
    return {r["message"]: r for r in lines(log) if r["logger"] == "logtest.tasks"}


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["thread", "process", "async"])
def test_every_line_of_a_run_carries_its_fields(
    mode: str,
    tmp_path: Path,
    worker_log: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    url, log, procs = worker_log
    logapp.app.configure(url)
    try:
        if mode == "async":
            top = logapp.async_parent("a")
            names = ("async parent before a", "async parent after a", "async leaf a-child")
        else:
            top = logapp.parent("a")
            names = ("parent before a", "parent after a", "leaf a-child")
        flaky = logapp.flaky_once(str(tmp_path / "marker"))
        proc = spawn(url, log, mode)
        procs.append(proc)
        assert top.result(timeout=60) == "a-child"
        assert flaky.result(timeout=60) == "ok"
        wait_until("the task lines", lambda: len(task_lines(log)) >= 5, 10)
        by_message = task_lines(log)
        worker_id = next(w.id for w in logapp.app.backend.workers())
        before, after, child = (by_message[n] for n in names)
        for line in (before, after):
            assert line["invocation_id"] == top.id
            assert line["task"].endswith("parent")
            assert line["attempt"] == 0
            assert line["worker_id"] == worker_id
            assert line["level"] == "INFO"
        assert child["invocation_id"] != top.id
        assert child["task"].endswith("leaf") and child["worker_id"] == worker_id
        assert by_message["flaky try first=True"]["attempt"] == 0
        assert by_message["flaky try first=False"]["attempt"] == 1
        assert by_message["flaky try first=False"]["invocation_id"] == flaky.id
        # The worker's own lines (outside a run) are JSON too, without run fields.
        outside = [r for r in lines(log) if r["logger"].startswith("kubenenc")]
        assert outside and all("invocation_id" not in r for r in outside)
        assert flaky.status is Status.SUCCESS
        proc.terminate()
        proc.wait(30)
    finally:
        logapp.app.close()
