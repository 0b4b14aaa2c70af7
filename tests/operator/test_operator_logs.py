"""``kubenenc operator --log-format json``: the operator's lines are JSON objects."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from kubenenc_operator import cli


def test_operator_logs_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fake_run(settings: Any, stop: Any = None) -> None:
        logging.getLogger("kubenenc_operator").info("reconciled %s", "shop", extra={"pool": "shop"})

    monkeypatch.setattr(cli, "run", fake_run)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        assert cli.main(["--log-format", "json"]) == 0
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = [json.loads(t) for t in capsys.readouterr().err.splitlines() if t.strip()]
    assert line["message"] == "reconciled shop" and line["pool"] == "shop"
    assert line["logger"] == "kubenenc_operator" and line["level"] == "INFO"
