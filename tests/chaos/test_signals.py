"""Chaos: a worker frozen for longer than the heartbeat timeout, then woken (SIGCONT): SIGSTOP
of its whole process group (worker, forkserver, task processes, as when a VM or container is
paused), or of the worker process alone (its task processes run on). Its calls are handed
back and rerun meanwhile; once awake, the zombie's late finishes must be refused (the rerun's
outcome stands, each call final once) and it must stop the bodies it no longer holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import StopWorker
from tests.chaos.scenario import HEARTBEAT_TIMEOUT, run

CASES = [("sqlite", True), ("redis", True), ("mongodb", True), ("sqlite", False)]
PARAMS = [
    pytest.param(kind, group, id=f"{kind}-{'group' if group else 'worker'}")
    for kind, group in CASES
]


@pytest.mark.parametrize(("kind", "group"), PARAMS)
@pytest.mark.timeout(240)
def test_a_frozen_worker_that_wakes_after_its_calls_were_handed_back_changes_nothing(
    kind: str, group: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    fault = StopWorker(seconds=HEARTBEAT_TIMEOUT + 1.5, group=group)
    report = run(url, tmp_path / "logs", fault, calls=90, fault_every=1.0, max_faults=3,
                 deadline=150)  # fmt: skip
    assert report.faults >= 2
    report.assert_clean()
    assert report.reruns >= 1, report  # the frozen worker's calls really were run again
