"""The README's examples run: its module and script blocks are written to files, a real worker
serves them, and the script's output must equal the README's ``text`` block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.DOTALL)


def _files() -> dict[str, str]:
    files = {}
    for block in _blocks("python"):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# (\w+\.py)", first)
        if match:
            files[match.group(1)] = block
    return files


def test_the_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    section = README.split("## Two commands", 1)[1].split("##", 1)[0]
    commands = [
        line.split("#")[0].strip()
        for line in _blocks("bash")[0].splitlines()
        if line.strip() and line.strip() in section
    ]
    assert commands == ["python -m pip install -e . && kubenenc demo", "./scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def _run_beside_a_worker(tmp_path: Path, app: str, options: list[str], script: str) -> str:
    """Write the README's files into ``tmp_path``, start a worker of ``app`` on a SQLite
    file there, run ``script`` and return what it printed (the worker must stop cleanly)."""
    for name, text in _files().items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "KUBENENC_BACKEND": f"sqlite:///{tmp_path / 'kubenenc.db'}"}
    env["PYTHONPATH"] = str(tmp_path)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app", app, *options],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        out = subprocess.run(
            [sys.executable, script], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=90, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr + (tmp_path / "worker.log").read_text()
        return out.stdout
    finally:
        worker.terminate()
        assert worker.wait(30) == 0


@pytest.mark.timeout(120)
def test_quick_start_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    assert set(_files()) >= {"shop_tasks.py", "submit.py"}
    printed = _run_beside_a_worker(tmp_path, "shop_tasks:app", ["--concurrency", "2"], "submit.py")
    assert printed == next(b for b in _blocks("text") if "charged user" in b)


@pytest.mark.timeout(120)
def test_time_and_triggers_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    assert set(_files()) >= {"triggers_tasks.py", "triggers.py"}
    printed = _run_beside_a_worker(
        tmp_path, "triggers_tasks:app", ["--mode", "thread", "--concurrency", "4"], "triggers.py"
    )
    readme_says = README.split("# triggers.py", 1)[1]
    assert printed == next(b for b in _blocks("text") if b in readme_says)
