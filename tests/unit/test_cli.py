"""The ``kubenenc`` command is the top layer: the worker's commands, plus operator and
dashboard, which the worker's own command line does not know."""

from __future__ import annotations

import pytest
from kubenenc_cli import main
from kubenenc_worker import cli as worker_cli


def test_the_kubenenc_command_runs_the_worker_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--backend", "memory://"]) == 0
    assert "invocations in memory://" in capsys.readouterr().out


def test_operator_and_dashboard_are_commands_of_kubenenc_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "operator" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        worker_cli.main(["dashboard"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'dashboard'" in capsys.readouterr().err


def test_a_configuration_error_is_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--backend", "nosuch://x"]) == 2
    assert capsys.readouterr().err.startswith("error:")
