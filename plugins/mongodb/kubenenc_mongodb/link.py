"""This process's connection to one MongoDB backend, and the retrying of its faults.

:class:`Conn` is what one process holds for one backend: the client, the collections
(:class:`~kubenenc_mongodb.layout.Layout`), the lease lock and the replica with its steps.
:class:`Link` opens one per process on first use (a forked or spawned worker gets its own:
a pymongo client must not cross a fork), retries connection faults with back-off for
``retry_for`` seconds before raising :class:`~kubenenc.errors.BackendUnavailable`, and
starts a step over when the protocol says so (:class:`~kubenenc_mongodb.steps.Retry`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

from kubenenc.backends.faults import retry_faults
from kubenenc.errors import BackendUnavailable, ConfigurationError
from pymongo import MongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import ConnectionFailure, InvalidURI

from kubenenc_mongodb import liveness
from kubenenc_mongodb.layout import Doc, Layout
from kubenenc_mongodb.lock import LeaseLock
from kubenenc_mongodb.options import MongoOptions
from kubenenc_mongodb.replica import Replica
from kubenenc_mongodb.steps import Retry, Steps
from kubenenc_mongodb.txn import StepTxn

log = logging.getLogger("kubenenc.mongodb")

T = TypeVar("T")


class Conn:
    """What one process holds for one backend: the client, the collections, the lock and
    the replica with its steps."""

    def __init__(self, opts: MongoOptions, timeout_ms: int, shards: int) -> None:
        self.pid = os.getpid()
        # pymongo only warns about unknown or malformed URL options: refuse them instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.client: MongoClient[Doc] = MongoClient(
                opts.client_url, serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms, appname="kubenenc", tz_aware=False,
            )  # fmt: skip
        bad = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if bad:
            self.client.close()
            raise ConfigurationError(f"bad MongoDB URL option: {'; '.join(bad)}")
        self.opts = opts
        self.mutex = threading.RLock()
        self.layout = Layout(self.client[opts.database], opts.prefix, shards)
        owner = f"{os.uname().nodename}:{self.pid}"
        self.lock = LeaseLock(
            self.layout.locks, opts.lease, owner, self.mutex,
            lambda: liveness.server_now(self.layout.meta), self.layout.steps,
        )  # fmt: skip
        self.steps = Steps(self.layout, self.lock, self.mutex)
        self.last_sweep = 0.0

    def relayout(self, shards: int) -> None:
        """Use ``shards`` invocation collections (agreed at start, before any step)."""
        self.layout = Layout(self.layout.db, self.opts.prefix, shards)
        self.steps = Steps(self.layout, self.lock, self.mutex)

    @property
    def replica(self) -> Replica:
        return self.steps.replica

    def close(self) -> None:
        self.lock.close()
        if self.pid == os.getpid():
            self.client.close()


class Link:
    """One backend's connections (one per process) and the retry policy of its calls."""

    def __init__(self, options: MongoOptions, timeout_ms: int) -> None:
        self.options = options
        self._timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._closed = False
        self.shards = 1
        """How many invocation collections the prefix uses (agreed at start)."""
        self._server = f"MongoDB at {self.where()}"

    def where(self) -> str:
        """The server's URL without credentials, for messages."""
        from kubenenc.backends.registry import redact_url

        return redact_url(self.options.client_url)

    def conn(self) -> Conn:
        """This process's connection (opened on first use)."""
        conn = self._conn
        if conn is not None and conn.pid == os.getpid():
            return conn
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the MongoDB backend was closed")
            conn = self._conn
            if conn is None or conn.pid != os.getpid():
                try:
                    conn = Conn(self.options, self._timeout_ms, self.shards)
                except (InvalidURI, PyMongoConfigurationError) as exc:
                    raise ConfigurationError(f"bad MongoDB URL: {exc}") from exc
                self._conn = conn
            return conn

    def close(self) -> None:
        """Close this process's connections. Idempotent."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- retries ----------------------------------------------------------------------------

    def retrying(self, what: str, fn: Callable[[Conn], T]) -> T:
        """``fn(conn)``, run again after a connection fault (with back-off, for
        ``retry_for`` seconds: :func:`kubenenc.backends.faults.retry_faults`) or when a step
        must start over."""

        def attempt() -> T:
            while True:
                try:
                    return fn(self.conn())
                except Retry:
                    time.sleep(0.001)

        return retry_faults(
            attempt, what=what, server=self._server, faults=(ConnectionFailure,),
            retry_for=self.options.retry_for, log=log,
        )  # fmt: skip

    # -- steps ------------------------------------------------------------------------------

    def step(
        self,
        what: str,
        op: Callable[[StepTxn], T],
        linger: Callable[[T], bool] | None = None,
        wait: float | None = None,
    ) -> T:
        """Run ``op`` as one step (see :mod:`kubenenc_mongodb.steps`), retried; ``linger``:
        whether to keep the lock a moment after it, for a next step of this process;
        ``wait``: how long each attempt may wait for the lock before it raises
        :class:`~kubenenc_mongodb.lock.Busy` (None: as long as the lock's own limit)."""
        return self.retrying(what, lambda c: c.steps.run(op, linger, wait))
