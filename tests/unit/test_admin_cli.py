"""``kubenenc cancel | retry | purge | config`` on a SQLite backend (the backend operations
themselves are in kubenenc/testing/test_admin.py, on every backend)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubenenc.backends import open_backend
from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.settings import Settings
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, new
from kubenenc_worker import cli
from kubenenc_worker.admin import RETRY_OF, parse_age, redacted


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'admin.db'}"


@pytest.fixture
def backend(url: str) -> Iterator[Backend]:
    b = open_backend(url)
    yield b
    b.close()


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    answer: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pending(backend: Backend, name: str, n: int, pool: str = "default") -> list[InvocationId]:
    items = [new(name, str(i), pool=pool) for i in range(n)]
    backend.register(items, time.time())
    return [i.id for i in items]


def failed(backend: Backend, name: str, n: int, at: float | None = None) -> list[InvocationId]:
    ids = pending(backend, name, n, pool=f"pool-{name}")
    now = time.time() if at is None else at
    claimed = [r.id for r in backend.claim(f"pool-{name}", W1, 1000, now)]
    error = ErrorInfo("builtins.ValueError", "boom", "")
    backend.finish([Outcome(i, OutcomeKind.FAILED, error=error) for i in claimed], W1, now)
    return ids


def test_cancel_by_filter_counts_asks_and_cancels(
    url: str, backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = pending(backend, "slow", 5)
    other = pending(backend, "keep", 2)
    code, out, _ = run(capsys, monkeypatch, "cancel", "--backend", url, "--task", "tests.slow",
                       "--status", "pending", "--dry-run")  # fmt: skip
    assert code == 0 and "5 invocation(s) to cancel" in out
    assert {r.status for r in backend.get_many(ids) if r} == {Status.PENDING}
    code, out, err = run(capsys, monkeypatch, "cancel", "--backend", url, "--task", "tests.slow",
                         answer="n\n")  # fmt: skip
    assert "Cancel 5 invocation(s)?" in err and "nothing changed" in err
    assert {r.status for r in backend.get_many(ids) if r} == {Status.PENDING}
    code, out, err = run(capsys, monkeypatch, "cancel", "--backend", url, "--task", "tests.slow",
                         answer="y\n")  # fmt: skip
    assert code == 0 and "cancelled 5" in out
    assert {r.status for r in backend.get_many(ids) if r} == {Status.CANCELLED}
    assert {r.status for r in backend.get_many(other) if r} == {Status.PENDING}


def test_cancel_by_ids_needs_no_confirmation_and_skips_final(
    url: str, backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [open_one] = pending(backend, "a", 1)
    [done] = failed(backend, "b", 1)
    code, out, _ = run(capsys, monkeypatch, "cancel", "--backend", url, open_one, done)
    assert code == 0 and "1 invocation(s) to cancel (1 already final or unknown)" in out
    assert "cancelled 1" in out
    rec = backend.get(open_one)
    assert rec is not None and rec.status is Status.CANCELLED


def test_retry_re_registers_failed_calls_linked_to_the_originals(
    url: str, backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    originals = failed(backend, "flaky", 3)
    code, out, _ = run(capsys, monkeypatch, "retry", "--backend", url, "--task", "tests.flaky",
                       "--yes")  # fmt: skip
    assert code == 0 and "re-registered 3" in out
    pending_now = backend.query(task="tests.flaky", status=Status.PENDING)
    assert len(pending_now) == 3
    by_original = {r.headers[RETRY_OF]: r for r in pending_now}
    assert set(by_original) == set(originals)
    for old in backend.get_many(originals):
        assert old is not None and old.status is Status.FAILED  # left as they were
        assert by_original[old.id].args == old.args
        assert by_original[old.id].call_key == old.call_key
    # A pending call is not retried.
    code, out, _ = run(capsys, monkeypatch, "retry", "--backend", url, pending_now[0].id)
    assert "0 call(s) to retry (1 not FAILED/CANCELLED or unknown)" in out


def test_purge_deletes_only_finished_invocations_older_than_the_age(
    url: str, backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = failed(backend, "old", 4, at=time.time() - 10 * 86400)
    recent = failed(backend, "new", 2)
    still = pending(backend, "open", 1)
    code, out, _ = run(capsys, monkeypatch, "purge", "--backend", url, "--older-than", "7d",
                       "--dry-run")  # fmt: skip
    assert "4 finished invocation(s) to purge" in out
    code, out, _ = run(capsys, monkeypatch, "purge", "--backend", url, "--older-than", "7d",
                       "--status", "FAILED", "-y")  # fmt: skip
    assert code == 0 and "purged 4" in out
    assert backend.get_many(old) == [None] * 4
    assert all(r is not None for r in backend.get_many(recent + still))


def test_bad_input_says_what_to_change(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "cancel", "--backend", url)
    assert code == 2 and "give invocation ids, or --task" in err
    code, _, err = run(capsys, monkeypatch, "purge", "--backend", url, "--older-than", "7d",
                       "--status", "PENDING")  # fmt: skip
    assert code == 2 and "only finished invocations can be purged" in err
    with pytest.raises(SystemExit):
        cli.main(["purge", "--older-than", "soon"])
    assert "is not an age" in capsys.readouterr().err
    assert parse_age("1d12h") == 36 * 3600 and parse_age("30m") == 1800


def test_config_shows_settings_with_secrets_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBENENC_BACKEND", "redis://user:hunter2@cache:6379/0")
    monkeypatch.setenv("KUBENENC_WORKER__CONCURRENCY", "7")
    code, out, _ = run(capsys, monkeypatch, "config")
    assert code == 0
    assert "hunter2" not in out
    assert "cache:6379" in out and "KUBENENC_WORKER__CONCURRENCY" in out
    flat = redacted(Settings())
    assert flat["worker.concurrency"] == 7
    assert "hunter2" not in str(flat["backend"])
