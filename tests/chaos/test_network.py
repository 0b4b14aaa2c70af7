"""Chaos: the network between one worker and its backend cut for longer than the heartbeat
timeout, then restored. Every worker reaches the backend through its own loopback TCP proxy
(:mod:`tests.chaos.proxy`); a busy worker's proxy stops forwarding (bytes held, as in a
partition) or also resets every connection, then forwards again. The cut worker's calls are
handed back and rerun; once it hears from the backend again, its late finishes must be
refused and it must stop the bodies it no longer holds."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.chaos.faults import CutNetwork
from tests.chaos.scenario import HEARTBEAT_TIMEOUT, run

BACKENDS = ["redis", "mongodb"]


@pytest.mark.parametrize("reset", [False, True], ids=["held", "reset"])
@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.timeout(240)
def test_a_worker_cut_off_from_its_backend_loses_nothing_and_its_late_finishes_are_refused(
    kind: str, reset: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    port = urlsplit(url).port
    assert port is not None
    fault = CutNetwork(seconds=HEARTBEAT_TIMEOUT + 1.5, reset=reset, target_port=port)
    report = run(url, tmp_path / "logs", fault, calls=60, fault_every=1.0, max_faults=2,
                 deadline=150)  # fmt: skip
    assert report.faults == 2
    report.assert_clean()
