"""A worker whose App is not the one its WorkerPool names refuses to start.

The operator counts the backlog of the queue of the WorkerPool's ``spec.appName`` and gives
the pods ``KUBENENC_APP_NAME``: a worker of another App would claim another queue (see
:mod:`kubenenc.scope`), so the pool would scale on work nobody runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubenenc_worker import cli


def test_a_worker_of_another_app_refuses_to_start_naming_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBENENC_APP_NAME", "shop")
    code = cli.main(["worker", "--app", "tests.integration.taskapp:app", "--backend",
                     f"sqlite:///{tmp_path / 'k.db'}", "--mode", "thread"])  # fmt: skip
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "App 'itest'" in err and "KUBENENC_APP_NAME" in err and "'shop'" in err
    assert "spec.appName" in err
    assert not (tmp_path / "k.db").exists()  # refused before touching the backend
