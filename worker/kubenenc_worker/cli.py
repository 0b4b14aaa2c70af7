"""The worker's commands: ``worker``, ``demo``, ``status``, ``inspect`` and the admin
commands ``cancel``, ``retry``, ``purge``, ``config`` (:mod:`kubenenc_worker.admin`).

The ``kubenenc`` command (:mod:`kubenenc_cli`) adds them beside the operator's and the
dashboard's; ``python -m kubenenc_worker`` runs them alone. Settings are read here, once,
from the environment (``KUBENENC_*``) and flags, and passed down; nothing below this module
reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

from kubenenc import logs
from kubenenc.app import load_app
from kubenenc.backends.registry import open_backend, redact_url
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId
from kubenenc.settings import Settings
from kubenenc.status import Status
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from kubenenc_worker import admin

Command = Callable[[argparse.Namespace, Settings], int]
"""A command: its parsed arguments and the settings in, an exit code out."""


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What subcommands are added to (argparse names it privately)."""


def base_parser(description: str) -> tuple[argparse.ArgumentParser, Subcommands]:
    """The ``kubenenc`` parser with its global options, and its subcommands to add to."""
    parser = argparse.ArgumentParser(prog="kubenenc", description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser, parser.add_subparsers(dest="command", required=True)


def add_commands(sub: Subcommands) -> dict[str, Command]:
    """Add the worker's commands to ``sub``; returns them by name."""
    w = sub.add_parser("worker", help="run a worker that claims and runs invocations")
    w.add_argument("--app", required=True, help="the App to serve, as module:attr")
    w.add_argument("--concurrency", type=int, help="running slots (default: CPU cores)")
    w.add_argument("--pool", help="worker pool to claim from (default: default)")
    w.add_argument("--mode", choices=["process", "thread", "async"], help="execution pool")
    w.add_argument("--backend", help="backend URL, overriding the app's and KUBENENC_BACKEND")
    w.add_argument("--http-port", type=int, help="serve /healthz, /readyz, /metrics here")
    w.add_argument("--http-host", help="address to serve them on (default: 127.0.0.1)")
    w.add_argument("--log-format", choices=["text", "json"],
                   help="json: one JSON object per line, with the run's fields")  # fmt: skip

    d = sub.add_parser("demo", help="run a small realistic workflow on the embedded default")
    d.add_argument("--backend", help="backend URL (default: a fresh SQLite file in a temp dir)")
    d.add_argument("--workers", type=int, default=2, help="worker processes to start")

    s = sub.add_parser("status", help="counts of invocations by status, and live workers")
    s.add_argument("--backend", help="backend URL (default: KUBENENC_BACKEND or ./kubenenc.db)")
    s.add_argument("--app", dest="app_name", help="only this app's invocations (its name)")

    i = sub.add_parser("inspect", help="one invocation: history, arguments, result or error")
    i.add_argument("id", help="the invocation id")
    i.add_argument("--backend", help="backend URL (default: KUBENENC_BACKEND or ./kubenenc.db)")

    admin.add_parsers(sub)
    return {
        "worker": cmd_worker, "demo": cmd_demo, "status": cmd_status, "inspect": cmd_inspect,
        **admin.COMMANDS,
    }  # fmt: skip


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(f"bad KUBENENC_* environment: {exc}") from exc


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker until SIGTERM/SIGINT; exit 0 after the drain."""
    from kubenenc_worker.worker import Worker

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    if settings.app_name is not None and settings.app_name != app.name:
        raise ConfigurationError(
            f"--app {args.app} is App {app.name!r} but KUBENENC_APP_NAME (the WorkerPool's "
            f"spec.appName) is {settings.app_name!r}: set spec.appName to {app.name!r} or "
            "point spec.app at the App it names"
        )
    changes = {
        k: v
        for k, v in {
            "concurrency": args.concurrency, "pool": args.pool, "mode": args.mode,
            "http_port": args.http_port, "http_host": args.http_host,
            "log_format": args.log_format,
        }.items()
        if v is not None
    }  # fmt: skip
    try:
        worker_settings = settings.worker.model_validate(
            {**settings.worker.model_dump(), **changes}
        )
    except ValidationError as exc:
        raise ConfigurationError(f"bad worker option: {exc}") from exc
    backend_url = args.backend or os.environ.get("KUBENENC_BACKEND")
    try:
        worker = Worker(app, worker_settings, app_path=args.app, backend_url=backend_url)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"cannot open backend {redact_url(app.backend_url)}: {exc}"
        ) from exc
    worker.install_signal_handlers()
    worker.run()
    return 0


def backend_url(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.backend or settings.backend)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print counts by status and the live workers."""
    console = Console()
    backend = open_backend(backend_url(args, settings))
    counts = backend.counts(app=args.app_name)
    table = Table(title=f"invocations in {redact_url(backend_url(args, settings))}")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in Status:
        table.add_row(status.value, str(counts.get(status, 0)))
    table.add_row("total", str(sum(counts.values())), style="bold")
    console.print(table)
    workers = backend.workers()
    if workers:
        wt = Table(title="workers")
        for column in ("id", "pool", "slots", "running", "paused", "last beat"):
            wt.add_column(column)
        now = time.time()
        for w in workers:
            wt.add_row(w.id, w.pool, str(w.slots), str(w.running), str(w.paused),
                       f"{now - w.at:.1f} s ago")  # fmt: skip
        console.print(wt)
    else:
        console.print("no live workers")
    backend.close()
    return 0


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    """Print one invocation's record and history."""
    console = Console()
    backend = open_backend(backend_url(args, settings))
    rec = backend.get(InvocationId(args.id))
    backend.close()
    if rec is None:
        console.print(f"[red]no invocation {args.id}[/red]")
        return 1
    console.print(f"[bold]{rec.display}[/bold]  {rec.id}")
    for label, value in (
        ("app", rec.app), ("task", rec.task), ("pool", rec.pool), ("status", rec.status.value),
        ("priority", rec.priority), ("attempt", rec.attempt), ("arguments", rec.args),
        ("parent", rec.parent or "-"), ("depends on", ", ".join(rec.depends_on) or "-"),
    ):  # fmt: skip
        console.print(f"  {label:<11} {value}")
    if rec.result is not None:
        console.print(f"  {'result':<11} {rec.result}")
    if rec.error is not None:
        console.print(f"  {'error':<11} [red]{rec.error.type}: {rec.error.message}[/red]")
        if rec.error.traceback:
            console.print(rec.error.traceback, markup=False, highlight=False)
    table = Table(title="history")
    for column in ("time (UTC)", "status", "worker", "reason"):
        table.add_column(column)
    for h in rec.history:
        stamp = time.strftime("%H:%M:%S", time.gmtime(h.at)) + f".{int(h.at % 1 * 1000):03d}"
        table.add_row(stamp, h.status.value, h.worker or "", h.reason or "")
    console.print(table)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo workflow (see kubenenc_worker.demo)."""
    from kubenenc_worker.demo import run_demo

    return run_demo(backend_url=args.backend, workers=args.workers)


def run(
    parser: argparse.ArgumentParser,
    commands: Mapping[str, Command],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, read the settings, set up logging and run the command; a
    configuration error or an unreachable backend is one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        settings = _settings()
        fmt = getattr(args, "log_format", None)
        if fmt is None and args.command == "worker":
            fmt = settings.worker.log_format
        logs.configure(fmt or "text", logging.DEBUG if args.verbose else logging.INFO)
        return commands[args.command](args, settings)
    except (ConfigurationError, BackendUnavailable) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubenenc_worker``: the worker's commands only."""
    parser, sub = base_parser("Distributed Python tasks: workers, demo and inspection.")
    return run(parser, add_commands(sub), argv)


if __name__ == "__main__":
    sys.exit(main())
