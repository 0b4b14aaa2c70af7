"""How ControlPlane fails: clear errors with the log tail, and nothing left running.

These use small shell scripts in place of the real binaries, so they need no build and run
in every tier.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tests.cluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    MissingBinariesError,
    find_binaries,
)


def fake_binary(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_missing_binaries_are_all_named(tmp_path: Path) -> None:
    fake_binary(tmp_path, "etcd", "exit 0")
    with pytest.raises(MissingBinariesError) as err:
        find_binaries(tmp_path, ("etcd", "kube-apiserver", "kwok"))
    assert err.value.missing == ["kube-apiserver", "kwok"]
    assert "build-binaries.sh" in str(err.value)


def test_missing_binary_fails_before_starting_anything(tmp_path: Path) -> None:
    plane = ControlPlane(bin_dir=tmp_path, with_kwok=True)
    with pytest.raises(MissingBinariesError):
        plane.start()
    assert plane.pids() == {}


@pytest.mark.timeout(60)
def test_component_that_exits_raises_with_its_log_tail(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_binary(bin_dir, "etcd", 'echo "etcd: fatal: disk on fire" >&2; exit 3')
    fake_binary(bin_dir, "kube-apiserver", "exit 0")
    plane = ControlPlane(bin_dir=bin_dir, startup_timeout=30)
    with pytest.raises(ControlPlaneError) as err:
        plane.start()
    message = str(err.value)
    assert "etcd exited with code 3" in message
    assert "disk on fire" in message
    assert not plane.workdir.exists(), "temp dir must be removed after a failed start"


@pytest.mark.timeout(60)
def test_component_never_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    pid_file = tmp_path / "etcd.pid"
    # Ignores SIGTERM, so stop() has to fall back to SIGKILL.
    fake_binary(
        bin_dir,
        "etcd",
        f"trap '' TERM; echo $$ > {pid_file}; echo 'etcd: waiting forever'; "
        "while :; do sleep 0.1; done",
    )
    fake_binary(bin_dir, "kube-apiserver", "exit 0")
    plane = ControlPlane(bin_dir=bin_dir, startup_timeout=2, stop_grace=1)
    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as err:
        plane.start()
    assert "timed out waiting for etcd health" in str(err.value)
    assert "waiting forever" in str(err.value)
    pid = int(pid_file.read_text())
    assert pid_is_gone(pid)
    assert plane.pids() == {}
    assert time.monotonic() - started < 30


@pytest.mark.timeout(60)
def test_port_taken_in_between_is_retried_once(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    runs = tmp_path / "runs"
    # Each run appends a line; every run fails as if its port had been taken meanwhile.
    fake_binary(
        bin_dir,
        "etcd",
        f"echo run >> {runs}; echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1",
    )
    fake_binary(bin_dir, "kube-apiserver", "exit 0")
    with pytest.raises(ControlPlaneError, match="address already in use"):
        ControlPlane(bin_dir=bin_dir, startup_timeout=30).start()
    assert runs.read_text().splitlines() == ["run", "run"]
