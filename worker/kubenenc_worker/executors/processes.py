"""Process mode: long-lived child processes, one execution each at a time.

A paused execution keeps its child and the worker starts another for the freed slot, so a
chain of waits never deadlocks however deep (children = running + paused + idle). Children
start with ``forkserver``, import the app themselves and open their own backend
connections; they talk to the worker over a pipe.

Starting a child costs tens of milliseconds (fork, then the app's set-up), which a pause
used to pay every time. So children are kept warm (measured by ``bench/pausing_bench.py``):

- a child whose execution ends stays idle for ``idle_keep`` seconds (at least ``warm`` stay
  for good), so the children a burst of pauses needed serve the next burst at once;
- while executions are paused, a spare child is started in the background whenever none is
  idle (``MAX_SPARES`` at once: more, started in parallel, measured slower on two cores), so
  the next pause of a chain usually finds one ready;
- the forkserver preloads the app's module, the backend's module and OpenTelemetry (when
  installed): a new child imports nothing of its own.

An idle child costs a few MiB of private memory (the rest is shared with the forkserver).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubenenc import logs
from kubenenc.app import App, load_app
from kubenenc.backends.faults import retry_faults
from kubenenc.backends.registry import backend_class
from kubenenc.backends.urloptions import RETRY_FOR
from kubenenc.errors import BackendUnavailable, WorkerLost
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info

from kubenenc_worker.execution import RunPayload, RunResult, run_sync
from kubenenc_worker.executors.base import EventSink, Executor
from kubenenc_worker.messages import Done, WaitReply, WaitRequest, raise_for

log = logging.getLogger("kubenenc.worker")


class _PipeContext:
    """Execution context inside a child process: waits are asked of the parent by pipe."""

    def __init__(self, id: InvocationId, conn: multiprocessing.connection.Connection) -> None:
        self._id = id
        self._conn = conn
        self._one_wait = threading.Lock()  # one question on the pipe at a time

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        with self._one_wait:
            self._conn.send(("wait", (tuple(ids), timeout)))
            kind, reply = self._conn.recv()
        assert kind == "reply"
        raise_for(reply, self._id, ids, timeout)

    async def wait_async(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        self.wait(ids, timeout)  # a child runs one execution at a time: nothing else to let run


def _die_with_worker(lifeline: multiprocessing.connection.Connection) -> None:
    """End this child at once when its worker process ends, however it ends.

    ``lifeline`` is the read end of a pipe whose write end only the worker holds (children
    are forked by the forkserver, not by the worker, so they do not inherit it): a kill -9 of
    the worker closes it, the read here sees EOF and the child exits. Without this, a child
    of a killed worker ran its task body to the end while recovery handed the call to
    another worker: two bodies of one call at once. (Neither the forkserver nor a parent
    death signal does it: the forkserver outlives a killed worker.)
    """

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(70)

    threading.Thread(target=watch, name="kubenenc-lifeline", daemon=True).start()


OPEN_RETRY_FOR = 30.0
"""Seconds a new child keeps trying to open its backend when the URL has no ``retry_for``."""


def _open_window(backend_url: str | None) -> float:
    """How long a child retries opening its backend: the URL's ``retry_for`` (what each of
    the backend's calls retries for), else :data:`OPEN_RETRY_FOR`."""
    if backend_url:
        with contextlib.suppress(ValueError):
            for key, value in parse_qsl(urlsplit(backend_url).query):
                if key == RETRY_FOR and float(value) > 0:
                    return float(value)
    return OPEN_RETRY_FOR


def open_backend_patiently(app: App, window: float) -> None:
    """Open ``app``'s backend now, retrying with back-off for ``window`` seconds while the
    server is unreachable.

    A child opens its backend on first use, and opening it fails at once when the server is
    down (a client's first call should say so, not hang). A child started during a short
    outage (a spare, started when executions pause) then failed the first body that used
    the backend with BackendUnavailable, although every call on an open backend rides out
    such an outage. Opened here, bodies find it open. If it still cannot be opened, the
    bodies try again themselves (and the worker hands their calls back)."""
    try:
        retry_faults(
            lambda: app.backend, what="opening the backend", server="the backend",
            faults=(BackendUnavailable,), retry_for=window, log=log,
        )  # fmt: skip
    except Exception:  # a bad URL too: each body reports it (as before this open)
        log.warning("a task process could not open its backend", exc_info=True)


def child_main(
    conn: multiprocessing.connection.Connection,
    app_path: str,
    backend_url: str | None,
    log_format: logs.LogFormat | None = None,
    lifeline: multiprocessing.connection.Connection | None = None,
) -> None:
    """Entry point of a child process: load the app, run what the parent sends.

    A forkserver child inherits no logging set-up: with ``log_format`` it configures its
    own handler, so a task's lines carry the run fields as in the other modes."""
    if lifeline is not None:
        _die_with_worker(lifeline)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if log_format is not None:
        logs.configure(log_format)
    app = load_app(app_path)
    if backend_url is not None:
        app.backend_url = backend_url
    open_backend_patiently(app, _open_window(app.backend_url))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] != "run":
                return
            payload: RunPayload = message[1]
            result = run_sync(app, payload, _PipeContext(payload.id, conn))
            conn.send(("done", result))
    finally:
        app.close()


def _preload(app_path: str, backend_url: str | None) -> list[str]:
    """Modules the forkserver imports once, so that a new child does not: the app's module,
    its backend's module, and OpenTelemetry's API when installed (a run span looks it up)."""
    modules = ["kubenenc", "kubenenc_worker.execution", app_path.partition(":")[0]]
    if backend_url:
        with contextlib.suppress(Exception):  # the child reports a bad URL itself
            modules.append(backend_class(urlsplit(backend_url).scheme).__module__)
    for name in ("opentelemetry.trace", "opentelemetry.propagate"):
        if importlib.util.find_spec("opentelemetry") is not None:
            modules.append(name)
    return modules


MAX_SPARES = 1
"""At most this many children are started ahead of need while executions are paused."""


class _Child:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any) -> None:
        self.process = process
        self.conn: multiprocessing.connection.Connection = conn
        self.current: InvocationId | None = None
        self.send_lock = threading.Lock()
        self.idle_since = 0.0


class ProcessExecutor(Executor):
    """Runs executions in child processes (see the module docstring)."""

    def __init__(
        self,
        app_path: str,
        backend_url: str | None,
        events: EventSink,
        warm: int,
        log_format: logs.LogFormat | None = None,
        idle_keep: float = 30.0,
    ) -> None:
        self.app_path = app_path
        self.log_format = log_format
        self.backend_url = backend_url
        self.events = events
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(_preload(app_path, backend_url))
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: dict[InvocationId, _Child] = {}
        self._all: set[_Child] = set()
        self._warm = warm
        self._idle_keep = idle_keep
        self._spares_starting = 0
        self._closing = False
        # Never written: its write end closes when this process ends (see _die_with_worker).
        self._lifeline_r, self._lifeline_w = self._mp.Pipe(duplex=False)
        for _ in range(warm):
            self._idle.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_conn, child_conn = self._mp.Pipe()
        process = self._mp.Process(
            target=child_main,
            args=(child_conn, self.app_path, self.backend_url, self.log_format, self._lifeline_r),
            name="kubenenc-child",
            daemon=True,
        )
        process.start()
        child_conn.close()
        child = _Child(process, parent_conn)
        with self._lock:
            self._all.add(child)
        threading.Thread(
            target=self._read, args=(child,), name="kubenenc-child-reader", daemon=True
        ).start()
        return child

    def _read(self, child: _Child) -> None:
        while True:
            try:
                kind, body = child.conn.recv()
            except (EOFError, OSError):
                break
            current = child.current
            if kind == "wait" and current is not None:
                targets, timeout = body
                self.events.put(WaitRequest(current, tuple(targets), timeout))
            elif kind == "done":
                # An end read after its run was aborted (the child killed just after it
                # sent it) is stale: that call may run again here already.
                stale = current != body.id
                with self._lock:
                    child.current = None
                    if not stale:
                        self._busy.pop(body.id, None)
                    keep = not stale and not self._closing
                    if keep:
                        child.idle_since = time.monotonic()
                        self._idle.append(child)
                if not stale:
                    self.events.put(Done(body))
                if not keep:
                    self._stop_child(child)
        with self._lock:
            self._all.discard(child)
            if child in self._idle:
                self._idle.remove(child)
            lost = child.current
            if lost is not None:
                self._busy.pop(lost, None)
        if lost is not None and not self._closing:
            exit_code = child.process.exitcode
            message = f"the child process running it exited (code {exit_code})"
            self.events.put(Done(RunResult(lost, error=error_info(WorkerLost(message)))))

    def start(self, payload: RunPayload) -> None:
        """Send ``payload`` to an idle child (a new one if none is idle). An idle child that
        died unnoticed (broken pipe) is replaced once; a second failure raises, with nothing
        of ``payload`` left behind."""
        for attempt in (1, 2):
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None:
                child = self._spawn()
            with self._lock:
                child.current = payload.id
                self._busy[payload.id] = child
                # Executions are paused: have a spare ready for the next pause.
                paused = len(self._busy) - self._warm
                spares = 0
                if not self._closing and paused > 0:
                    want = min(MAX_SPARES, paused)
                    spares = max(0, want - len(self._idle) - self._spares_starting)
                    self._spares_starting += spares
            for _ in range(spares):
                threading.Thread(
                    target=self._start_spare, name="kubenenc-spare", daemon=True
                ).start()
            try:
                with child.send_lock:
                    child.conn.send(("run", payload))
                return
            except (OSError, ValueError):
                with self._lock:
                    child.current = None
                    self._busy.pop(payload.id, None)
                child.process.kill()
                if attempt == 2:
                    raise
                log.warning("an idle child process was gone; starting %s on a new one", payload.id)

    def _start_spare(self) -> None:
        """Start one idle child ahead of need (the next pause of a chain takes it)."""
        try:
            child = self._spawn()
        except Exception:
            log.warning("could not start a spare child process", exc_info=True)
            child = None
        with self._lock:
            self._spares_starting -= 1
            if child is not None and not self._closing:
                child.idle_since = time.monotonic()
                self._idle.append(child)
                child = None
        if child is not None:
            self._stop_child(child)

    def poll(self) -> None:
        """Stop the children idle for more than ``idle_keep`` seconds, beyond ``warm``."""
        now = time.monotonic()
        with self._lock:
            if len(self._idle) <= self._warm:
                return
            # Oldest first: the list is appended to as children become idle.
            extra = len(self._idle) - self._warm
            stale = [c for c in self._idle[:extra] if now - c.idle_since > self._idle_keep]
            for child in stale:
                self._idle.remove(child)
        for child in stale:
            self._stop_child(child)

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        with self._lock:
            child = self._busy.get(id)
        if child is not None:
            with child.send_lock:
                try:
                    child.conn.send(("reply", reply))
                except OSError:
                    log.warning("child for %s is gone; reply dropped", id)

    def abort(self, id: InvocationId) -> bool:
        """Kill the child running ``id`` (the only way to stop arbitrary code at once)."""
        with self._lock:
            child = self._busy.pop(id, None)
            if child is not None:
                child.current = None
        if child is not None:
            child.process.kill()
            child.process.join(1.0)  # SIGKILL cannot be caught: this is quick
        return True

    def _stop_child(self, child: _Child) -> None:
        try:
            with child.send_lock:
                child.conn.send(("stop", None))
        except OSError:
            pass

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closing = True
            children = list(self._all)
        for child in children:
            self._stop_child(child)
        for child in children:
            child.process.join(timeout / max(1, len(children)))
            if child.process.is_alive():
                child.process.kill()
                child.process.join(1)
