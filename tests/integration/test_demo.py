"""``kubenenc demo`` — the README's first command — runs end to end and its checks hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_runs_and_every_check_holds(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kubenenc_worker", "demo"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12 in" in out.stdout  # orders completed
    assert "0 (policy: 1 at a time)" in out.stdout
    assert 'waits on related("lamp")' in out.stdout
    assert "cycle refused" in out.stdout
