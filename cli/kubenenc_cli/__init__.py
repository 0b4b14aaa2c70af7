"""The ``kubenenc`` command: the worker's commands (:mod:`kubenenc_worker.cli`) beside
``operator``, ``dashboard`` and ``reshard``.

It is the top layer: it imports the worker, the operator and the dashboard, and none of them
imports it (import-linter's layers contract in pyproject.toml). The operator and the
dashboard (and the Redis plugin, for ``reshard``) are optional extras, so their modules are
imported when their command runs, and a missing extra is a one-line error saying what to
install.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from kubenenc.errors import ConfigurationError
from kubenenc.settings import Settings
from kubenenc_worker.cli import Command, Subcommands, add_commands, backend_url, base_parser, run

__all__ = ["main"]


def cmd_operator(args: argparse.Namespace, settings: Settings) -> int:
    """Run the operator (``kubenenc[operator]``)."""
    try:
        from kubenenc_operator import cli
    except ImportError as exc:
        raise ConfigurationError(
            f'the operator is not installed ({exc}); pip install "kubenenc[operator]"'
        ) from exc
    return cli.main(["--log-format", args.log_format] if args.log_format else [])


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the dashboard (``kubenenc[dashboard]``)."""
    try:
        from kubenenc_dashboard import DashboardSettings, cli
    except ImportError as exc:
        raise ConfigurationError(
            f'the dashboard is not installed ({exc}); pip install "kubenenc[dashboard]"'
        ) from exc
    token = args.token or os.environ.get("KUBENENC_DASHBOARD_TOKEN") or None
    options = DashboardSettings(token=token, app=args.app_name)
    return cli.serve(
        backend_url(args, settings), args.host, args.port, options,
        kubernetes=args.kubernetes, kubeconfig=args.kubeconfig, namespaces=args.namespaces,
    )  # fmt: skip


def cmd_reshard(args: argparse.Namespace, settings: Settings) -> int:
    """Move a ``redis+cluster://`` app's data to ``--to`` shards (kubenenc_redis.reshard)."""
    url = backend_url(args, settings)
    if not url.startswith(("redis+cluster://", "rediss+cluster://")):
        raise ConfigurationError(
            f"reshard moves the data of a Redis Cluster app (redis+cluster://...), not of "
            f"{url.partition('://')[0] or url!r}"
        )
    try:
        from kubenenc_redis.reshard import reshard
    except ImportError as exc:
        raise ConfigurationError(
            f'the Redis backend is not installed ({exc}); pip install "kubenenc[redis]"'
        ) from exc
    reshard(
        url, args.to, quiet=args.quiet, max_lost=settings.worker.max_lost, batch=args.batch,
        progress=lambda line: print(line, flush=True),  # noqa: T201 - the command's output
    )  # fmt: skip
    return 0


def add_commands_above(sub: Subcommands) -> dict[str, Command]:
    """Add ``operator`` and ``dashboard`` to ``sub``; returns them by name."""
    o = sub.add_parser("operator", help="run the Kubernetes operator (needs kubenenc[operator])")
    o.add_argument("--log-format", choices=["text", "json"], help="json: one object per line")

    b = sub.add_parser("dashboard", help="serve the web dashboard (needs kubenenc[dashboard])")
    b.add_argument("--backend", help="backend URL (default: KUBENENC_BACKEND or ./kubenenc.db)")
    b.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    b.add_argument("--port", type=int, default=8090, help="port (default: 8090)")
    b.add_argument("--app", dest="app_name", help="only this app's invocations (its name)")
    b.add_argument(
        "--token",
        help="enable actions (cancel, retry) for whoever gives this token; "
        "default: KUBENENC_DASHBOARD_TOKEN, else read-only",
    )
    b.add_argument(
        "--kubernetes", action="store_true",
        help="also show WorkerPools, TaskDefinitions and ConcurrencyPolicies (in-cluster "
        "service account, or --kubeconfig)",
    )  # fmt: skip
    b.add_argument("--kubeconfig", help="kubeconfig for --kubernetes (default: KUBECONFIG)")
    b.add_argument(
        "--namespace", action="append", default=[], dest="namespaces",
        help="with --kubernetes: only this namespace (repeatable; default: every namespace)",
    )  # fmt: skip
    r = sub.add_parser(
        "reshard",
        help="move a redis+cluster:// app's data to another number of shards (stop its "
        "workers and callers first; run again to resume)",
    )
    r.add_argument("--backend", help="the app's redis+cluster:// URL (default: KUBENENC_BACKEND)")
    r.add_argument("--to", type=int, required=True, help="the new number of shards")
    r.add_argument(
        "--quiet", type=float, default=60.0,
        help="seconds without a heartbeat after which a worker counts as stopped (default 60)",
    )  # fmt: skip
    r.add_argument("--batch", type=int, default=500, help="invocations moved per step")
    return {"operator": cmd_operator, "dashboard": cmd_dashboard, "reshard": cmd_reshard}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubenenc`` console script."""
    parser, sub = base_parser("Distributed Python tasks: workers, operator, dashboard.")
    commands = add_commands(sub)
    commands.update(add_commands_above(sub))
    return run(parser, commands, argv)
