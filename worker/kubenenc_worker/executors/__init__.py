"""Execution pools: where task bodies run, behind one interface (:class:`Executor`).

- :class:`ThreadExecutor` (``threads``): one thread per execution, batches of short ones on one.
- :class:`ProcessExecutor` (``processes``): long-lived child processes over pipes.
- :class:`AsyncExecutor` (``asyncio``): one event loop thread for coroutine tasks.
"""

from kubenenc_worker.executors.asyncio import AsyncExecutor
from kubenenc_worker.executors.base import EventSink, Executor
from kubenenc_worker.executors.processes import ProcessExecutor, child_main
from kubenenc_worker.executors.threads import STEAL_AFTER, ThreadExecutor

__all__ = [
    "STEAL_AFTER",
    "AsyncExecutor",
    "EventSink",
    "Executor",
    "ProcessExecutor",
    "ThreadExecutor",
    "child_main",
]
