"""``kubenenc retry`` end to end: a call that failed is re-registered from the command line
and a real worker runs the copy, with the same arguments, to success."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kubenenc.status import Status
from kubenenc_worker.admin import RETRY_OF

from tests.integration import logapp
from tests.integration.conftest import ROOT
from tests.integration.test_structured_logs import spawn


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_failed_call_retried_from_the_cli_runs_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    logapp.app.configure(url)
    worker = spawn(url, tmp_path / "worker.log", "thread")
    try:
        marker = tmp_path / "ready"
        failed = logapp.needs_file(str(marker))
        with pytest.raises(FileNotFoundError):
            failed.result(timeout=30)
        marker.write_text("now it exists")
        out = subprocess.run(
            [sys.executable, "-m", "kubenenc_worker", "retry", "--backend", url, failed.id],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "re-registered 1" in out.stdout
        (copy,) = [r for r in logapp.app.backend.query(task=failed.record().task)
                   if r.headers.get(RETRY_OF) == failed.id]  # fmt: skip
        assert logapp.app.invocation(copy.id).result(timeout=30) == "found"
        assert failed.status is Status.FAILED  # the original is left as it was
        assert copy.args == failed.record().args
    finally:
        worker.terminate()
        worker.wait(30)
        logapp.app.close()
