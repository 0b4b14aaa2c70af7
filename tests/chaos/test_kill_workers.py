"""Chaos: kill -9 of random worker processes under load (issue 13's chaos suite, first
scenario). Small counts here; ``bench/chaos.py`` runs the same scenario larger and prints
the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scenario import run

BACKENDS = ["sqlite", "redis"]


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.timeout(240)
def test_kill_9_of_random_workers_loses_nothing_and_overlaps_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    report = run(url, tmp_path / "logs", calls=90, workers=3, kill_every=1.5, deadline=150)
    assert report.faults >= 2
    assert report.stuck == 0, report
    assert report.lost == 0, report
    assert report.wrong == 0, report
    assert report.overlaps == [], report
    assert report.limit_violations == [], report
