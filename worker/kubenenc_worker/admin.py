"""Admin commands of the ``kubenenc`` CLI: ``cancel``, ``retry``, ``purge`` and ``config``.

Each command that changes data names what it selects, prints how many, and with
``--dry-run`` stops there. A bulk change (chosen by ``--task``/``--status``/``--older-than``
rather than by ids) asks for confirmation unless ``--yes``; long work shows a progress bar on
stderr. The backend operations are the contract's: ``cancel`` and ``register`` (every
backend), ``select`` and ``purge`` (the optional :class:`~kubenenc.backends.contract.Admin`
role, offered by every built-in backend).

``retry`` re-registers a FAILED (or CANCELLED) call with the same arguments and options as a
new invocation; the new record's ``headers`` carry ``kubenenc-retry-of: <original id>``, and
the original is left as it was. It needs no task code: the stored call is copied as is.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubenenc.backends.contract import Admin, Backend
from kubenenc.backends.registry import open_backend, redact_url
from kubenenc.backends.roles import roles_of
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, new_invocation_ids
from kubenenc.records import InvocationRecord, NewInvocation, RegisterKind
from kubenenc.settings import Settings
from kubenenc.status import FINAL, Status
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

RETRY_OF = "kubenenc-retry-of"
"""The header linking a re-registered call to the one it retries."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SECRET = re.compile(r"password|secret|token|credential|(^|_)key$", re.IGNORECASE)


def parse_age(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` (or ``"1d12h"``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: use a number and a unit, such as 7d, 12h, 30m or 1d12h"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _status(text: str) -> Status:
    try:
        return Status(text.upper())
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise argparse.ArgumentTypeError(f"{text!r} is not a status: one of {names}") from None


def add_parsers(sub: Any) -> None:
    """Add ``cancel``, ``retry``, ``purge`` and ``config`` to the CLI's subparsers."""

    def common(p: argparse.ArgumentParser, *, bulk: bool = True) -> None:
        p.add_argument("--backend", help="backend URL (default: KUBENENC_BACKEND or ./kubenenc.db)")
        p.add_argument("--app", dest="app_name", help="only this app's invocations (its name)")
        p.add_argument(
            "--dry-run", action="store_true", help="show what would change, change nothing"
        )
        if bulk:
            p.add_argument("-y", "--yes", action="store_true", help="do not ask to confirm")

    c = sub.add_parser("cancel", help="cancel invocations by id, or every one matching a filter")
    c.add_argument("ids", nargs="*", help="invocation ids")
    c.add_argument("--task", help="the task's full name, such as shop.tasks.charge")
    c.add_argument(
        "--status",
        type=_status,
        action="append",
        help="only these statuses (repeatable; default: every non-final one)",
    )
    common(c)

    r = sub.add_parser("retry", help="re-register failed calls with the same arguments")
    r.add_argument("ids", nargs="*", help="invocation ids (FAILED or CANCELLED)")
    r.add_argument("--task", help="the task's full name, such as shop.tasks.charge")
    r.add_argument(
        "--status", type=_status, action="append", help="FAILED (default) and/or CANCELLED"
    )
    common(r)

    p = sub.add_parser("purge", help="delete finished invocations older than an age")
    p.add_argument(
        "--older-than",
        type=parse_age,
        required=True,
        metavar="AGE",
        help="last changed longer ago than this: 7d, 12h, 30m, 1d12h",
    )
    p.add_argument(
        "--status",
        type=_status,
        action="append",
        help="only these final statuses (repeatable; default: all final ones)",
    )
    p.add_argument("--task", help="only this task's invocations")
    common(p)

    sub.add_parser("config", help="the settings in force (secrets redacted)")  # fmt: skip


class _Io:
    """Where the commands print and ask (stdout for results, stderr for progress)."""

    def __init__(self) -> None:
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    def confirm(self, question: str) -> bool:
        self.err.print(f"{question} [y/N] ", end="")
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    def progress(self, what: str, items: Sequence[Any], step: Callable[[Any], None]) -> None:
        """Run ``step`` on each item with a progress bar (on stderr)."""
        with Progress(console=self.err, transient=True) as bar:
            task = bar.add_task(what, total=len(items))
            for item in items:
                step(item)
                bar.advance(task)


def _admin(backend: Backend, url: str) -> Admin:
    admin = roles_of(backend).admin
    if admin is None:
        raise ConfigurationError(
            f"the backend {redact_url(url)} has no admin operations (select, purge): "
            "use a backend that implements kubenenc.backends.contract.Admin"
        )
    return admin


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _records(backend: Backend, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
    out: list[InvocationRecord | None] = []
    for chunk in _chunks(ids):
        out += backend.get_many(chunk)
    return out


def _select_or_ids(
    args: argparse.Namespace,
    backend: Backend,
    url: str,
    statuses: Sequence[Status],
    **filters: Any,
) -> tuple[list[InvocationId], bool]:
    """The ids to act on and whether they were chosen by a filter (a bulk change)."""
    if args.ids:
        if args.task or args.status:
            raise ConfigurationError("give ids or --task/--status, not both")
        return [InvocationId(i) for i in dict.fromkeys(args.ids)], False
    if not args.task and not args.status and not filters:
        raise ConfigurationError("give invocation ids, or --task and/or --status to select some")
    ids = _admin(backend, url).select(
        app=args.app_name, task=args.task, statuses=statuses, **filters
    )
    return ids, True


def _go(io: _Io, args: argparse.Namespace, bulk: bool, question: str) -> bool:
    """Whether to go on after the count: not in a dry run; bulk changes are confirmed."""
    if args.dry_run:
        io.err.print("dry run: nothing changed")
        return False
    if bulk and not args.yes and not io.confirm(question):
        io.err.print("nothing changed")
        return False
    return True


def cmd_cancel(args: argparse.Namespace, settings: Settings, io: _Io | None = None) -> int:
    """Cancel the given invocations, or every one matching ``--task``/``--status``."""
    io = io or _Io()
    url = str(args.backend or settings.backend)
    backend = open_backend(url)
    try:
        open_statuses = [s for s in Status if not s.is_final]
        wanted = args.status or open_statuses
        if any(s.is_final for s in wanted):
            raise ConfigurationError("a final invocation cannot be cancelled: choose --status "
                                     + ", ".join(s.value for s in open_statuses))  # fmt: skip
        ids, bulk = _select_or_ids(args, backend, url, wanted)
        recs = _records(backend, ids)
        todo = [r.id for r in recs if r is not None and not r.is_final]
        skipped = len(ids) - len(todo)
        io.out.print(f"{len(todo)} invocation(s) to cancel"
                     + (f" ({skipped} already final or unknown)" if skipped else ""))  # fmt: skip
        if not todo or not _go(io, args, bulk, f"Cancel {len(todo)} invocation(s)?"):
            return 0
        done = [0]

        def cancel(id: InvocationId) -> None:
            done[0] += backend.cancel(id, time.time(), reason="cancelled by kubenenc cancel")

        io.progress("cancelling", todo, cancel)
        io.out.print(f"cancelled {done[0]}")
        return 0
    finally:
        backend.close()


def retry_of(rec: InvocationRecord, id: InvocationId) -> NewInvocation:
    """A new call of ``rec``'s task with its arguments and options, linked to it."""
    return NewInvocation(
        id=id, app=rec.app, task=rec.task, args=rec.args, call_key=rec.call_key,
        display=rec.display, pool=rec.pool, priority=rec.priority,
        max_retries=rec.max_retries, timeout=rec.timeout, running_key=rec.running_key,
        running_limit=rec.running_limit, registration_key=rec.registration_key,
        # An equal call already queued is not queued twice.
        registration="dedupe" if rec.registration_key else "allow",
        serializer=rec.serializer, headers={**rec.headers, RETRY_OF: rec.id},
    )  # fmt: skip


def cmd_retry(args: argparse.Namespace, settings: Settings, io: _Io | None = None) -> int:
    """Re-register failed (or cancelled) calls; print each original id and its new one."""
    io = io or _Io()
    url = str(args.backend or settings.backend)
    backend = open_backend(url)
    retryable = (Status.FAILED, Status.CANCELLED)
    try:
        wanted = args.status or [Status.FAILED]
        if any(s not in retryable for s in wanted):
            raise ConfigurationError("only FAILED or CANCELLED invocations can be retried")
        ids, bulk = _select_or_ids(args, backend, url, wanted)
        recs = [r for r in _records(backend, ids) if r is not None and r.status in retryable]
        skipped = len(ids) - len(recs)
        note = f" ({skipped} not FAILED/CANCELLED or unknown)" if skipped else ""
        io.out.print(f"{len(recs)} call(s) to retry{note}")
        if not recs or not _go(io, args, bulk, f"Re-register {len(recs)} call(s)?"):
            return 0
        pairs: list[tuple[InvocationId, InvocationId, RegisterKind]] = []

        def register(chunk: Sequence[InvocationRecord]) -> None:
            new = [
                retry_of(r, i) for r, i in zip(chunk, new_invocation_ids(len(chunk)), strict=True)
            ]
            for rec, result in zip(chunk, backend.register(new, time.time()), strict=True):
                pairs.append((rec.id, result.id, result.kind))

        io.progress("re-registering", list(_chunks(recs, 200)), register)
        table = Table("original", "new", "registration")
        for old, new_id, kind in pairs:
            table.add_row(old, new_id, kind.value)
        io.out.print(table)
        io.out.print(f"re-registered {sum(k is RegisterKind.CREATED for _, _, k in pairs)}")
        return 0
    finally:
        backend.close()


def cmd_purge(args: argparse.Namespace, settings: Settings, io: _Io | None = None) -> int:
    """Delete finished invocations last changed longer ago than ``--older-than``."""
    io = io or _Io()
    url = str(args.backend or settings.backend)
    backend = open_backend(url)
    try:
        wanted = args.status or sorted(FINAL)
        if any(not s.is_final for s in wanted):
            raise ConfigurationError("only finished invocations can be purged: choose --status "
                                     + ", ".join(s.value for s in sorted(FINAL)))  # fmt: skip
        admin = _admin(backend, url)
        ids = admin.select(app=args.app_name, task=args.task, statuses=wanted,
                           updated_before=time.time() - args.older_than)  # fmt: skip
        io.out.print(f"{len(ids)} finished invocation(s) to purge")
        if not ids or not _go(io, args, True, f"Delete {len(ids)} invocation(s)?"):
            return 0
        done = [0]

        def purge(chunk: Sequence[InvocationId]) -> None:
            done[0] += admin.purge(chunk)

        io.progress("purging", list(_chunks(ids)), purge)
        io.out.print(f"purged {done[0]}")
        return 0
    finally:
        backend.close()


def redacted(settings: Settings) -> dict[str, Any]:
    """Every setting in force, flattened (``worker.concurrency``), secrets redacted: URLs
    lose their password, fields named like a secret show ``***``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            elif _SECRET.search(key) and value not in (None, ""):
                out[name] = "***"
            elif isinstance(value, str) and "://" in value:
                out[name] = redact_url(value)
            else:
                out[name] = value

    walk("", settings.model_dump())
    return out


def cmd_config(args: argparse.Namespace, settings: Settings, io: _Io | None = None) -> int:
    """Print the settings in force (from ``KUBENENC_*`` and defaults), secrets redacted."""
    io = io or _Io()
    flat = redacted(settings)
    width = max(len(name) for name in flat)
    for name, value in flat.items():
        env = "KUBENENC_" + name.upper().replace(".", "__")
        io.out.print(f"{name:<{width}} = {value}  # {env}", soft_wrap=True, markup=False)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "cancel": cmd_cancel, "retry": cmd_retry, "purge": cmd_purge, "config": cmd_config,
}  # fmt: skip
