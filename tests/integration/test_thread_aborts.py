"""Thread mode cannot kill a thread: an aborted body may run on. A running limit of 1 must
still never see two bodies at once, so the call keeps its slot until the body has really
stopped (issue 13, item 7). Before, a timeout freed the slot at once and the next call of
the same key started while the first body still ran."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.backends.memory import MemoryBackend

from tests.integration import taskapp
from tests.support import wait_until


@pytest.mark.parametrize("mode", ["thread", "async"])
@pytest.mark.timeout(60)
def test_a_body_that_swallows_its_timeout_keeps_its_running_slot(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any], tmp_path: Path, mode: str
) -> None:
    app_on(MemoryBackend())
    run_worker(mode=mode, concurrency=3)
    marker = tmp_path / "runs"
    invs = [taskapp.stubborn("k", str(marker), 0.8) for _ in range(3)]
    for inv in invs:
        assert inv.wait(timeout=30)
        rec = inv.record()
        assert rec.status is Status.FAILED
        assert rec.error is not None and rec.error.type == "kubenenc.errors.TaskTimeout"
    lines = wait_until("every body ended", lambda: len(marker.read_text().splitlines()) == 3)
    assert lines
    runs = sorted(tuple(map(float, line.split())) for line in marker.read_text().splitlines())
    for (_, first_end), (second_start, _) in itertools.pairwise(runs):
        assert second_start >= first_end, f"two bodies of a limit-1 key overlapped: {runs}"
