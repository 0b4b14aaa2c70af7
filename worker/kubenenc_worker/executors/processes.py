"""Process mode: long-lived child processes, one execution each at a time.

A paused execution keeps its child and the worker starts another for the freed slot, so a
chain of waits never deadlocks however deep (children = running + paused + idle). Children
start with ``forkserver``, import the app themselves and open their own backend
connections; they talk to the worker over a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from kubenenc import logs
from kubenenc.app import load_app
from kubenenc.errors import WorkerLost
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


class _Child:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any) -> None:
        self.process = process
        self.conn: multiprocessing.connection.Connection = conn
        self.current: InvocationId | None = None
        self.send_lock = threading.Lock()


class ProcessExecutor(Executor):
    """Runs executions in child processes (see the module docstring)."""

    def __init__(
        self,
        app_path: str,
        backend_url: str | None,
        events: EventSink,
        warm: int,
        log_format: logs.LogFormat | None = None,
    ) -> None:
        self.app_path = app_path
        self.log_format = log_format
        self.backend_url = backend_url
        self.events = events
        self._mp = multiprocessing.get_context("forkserver")
        module = app_path.partition(":")[0]
        self._mp.set_forkserver_preload(["kubenenc", "kubenenc_worker.execution", module])
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: dict[InvocationId, _Child] = {}
        self._all: set[_Child] = set()
        self._warm = warm
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
                    if not stale and not self._closing and len(self._idle) < self._warm:
                        self._idle.append(child)
                        keep = True
                    else:
                        keep = False
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
