"""Chaos: kill -9 of random worker processes under load (issue 13's chaos suite, first
scenario). Small counts here; ``bench/chaos.py`` runs the same scenario larger and prints
the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import KillWorker
from tests.chaos.scenario import run

BACKENDS = ["sqlite", "redis", "mongodb"]


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.timeout(240)
def test_kill_9_of_random_workers_loses_nothing_and_overlaps_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    report = run(url, tmp_path / "logs", KillWorker(), calls=90, fault_every=1.5, deadline=150)
    assert report.faults >= 2
    report.assert_clean()
    assert report.zombie_overlaps == [], report
