"""The faults a chaos scenario injects (see :mod:`tests.chaos.scenario`).

Each fault is called every ``fault_every`` seconds with the running scenario and records
what it did in it: ``kills`` (worker pid -> time), ``windows`` (worker pid -> when it was
frozen or cut off), ``outages`` (when the backend's server was down). Faults that last take
their end on a timer thread, so the scenario keeps submitting calls meanwhile; ``close``
ends whatever is still in force.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tests.chaos.proxy import Proxy, via, via_cluster

if TYPE_CHECKING:
    from tests.chaos.scenario import Chaos


class Fault:
    """One kind of fault. ``name`` is its row in the bench's table."""

    name = "none"

    def worker_url(self, url: str, n: int) -> str:
        """The backend URL worker number ``n`` is given (a fault may route it)."""
        return url

    def inject(self, chaos: Chaos) -> bool:
        """Strike once now; False when it could not (the previous one still in force)."""
        return False

    def close(self, chaos: Chaos) -> None:
        """End anything still in force (called once the calls are all in, and again at
        teardown: must be idempotent)."""

    def cleanup(self) -> None:
        """Release what the fault holds (called after every worker is gone)."""


class KillWorker(Fault):
    """kill -9 of a busy worker process; a new worker replaces it."""

    name = "kill -9 worker"

    def inject(self, chaos: Chaos) -> bool:
        victim = chaos.busy_victim()
        chaos.procs.remove(victim)
        chaos.kills[victim.pid] = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        chaos.spawn()
        return True


@dataclass
class _Lasting(Fault):
    """A fault on one worker that lasts ``seconds`` and is then undone (one at a time)."""

    seconds: float = 3.5
    _pending: list[tuple[int, threading.Timer]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, pid: int) -> None:
        raise NotImplementedError

    def end(self, pid: int) -> None:
        raise NotImplementedError

    def inject(self, chaos: Chaos) -> bool:
        with self._lock:
            if self._pending:
                return False
            pid = chaos.busy_victim().pid
            began = time.time()
            self.start(pid)
            timer = threading.Timer(self.seconds, self._finish, (chaos, pid, began))
            self._pending.append((pid, timer))
            timer.start()
            return True

    def _finish(self, chaos: Chaos, pid: int, began: float) -> None:
        with self._lock:
            if not self._pending or self._pending[0][0] != pid:
                return
            self._pending.clear()
            self.end(pid)
            chaos.windows.setdefault(pid, []).append((began, time.time()))

    def close(self, chaos: Chaos) -> None:
        with self._lock:
            pending = list(self._pending)
        for pid, timer in pending:
            timer.cancel()
        for pid, timer in pending:
            self._finish(chaos, pid, time.time() - self.seconds)


@dataclass
class StopWorker(_Lasting):
    """SIGSTOP of a busy worker's whole process group (worker, forkserver, task processes:
    a frozen VM or container) for ``seconds``, then SIGCONT: a zombie that wakes after its
    calls were handed back. With ``group=False`` only the worker process stops (a worker
    stuck while its task processes run on)."""

    group: bool = True

    @property
    def name(self) -> str:  # type: ignore[override]
        what = "worker + task processes" if self.group else "worker process only"
        return f"SIGSTOP {what} {self.seconds:g} s"

    def start(self, pid: int) -> None:
        (os.killpg if self.group else os.kill)(pid, signal.SIGSTOP)

    def end(self, pid: int) -> None:
        (os.killpg if self.group else os.kill)(pid, signal.SIGCONT)


@dataclass
class CutNetwork(_Lasting):
    """Every worker talks to the backend through its own :class:`Proxy` (on a Redis Cluster,
    ``cluster_ports`` given: its own proxy per node, see :func:`via_cluster`); a busy
    worker's proxies stop forwarding for ``seconds`` (with ``reset``, reset their
    connections too), then forward again. The worker and its task processes keep running
    meanwhile, and the other workers keep their paths."""

    reset: bool = False
    target_port: int = 0
    cluster_ports: tuple[int, ...] = ()
    """The ports of every node of the cluster ``url`` names (then ``target_port`` is unused)."""
    proxies: dict[int, list[Proxy]] = field(default_factory=dict)
    """Worker number -> its proxies."""
    _chaos: Chaos | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"network cut {self.seconds:g} s" + (" + reset" if self.reset else "")

    def worker_url(self, url: str, n: int) -> str:
        if self.cluster_ports:
            proxies = [Proxy(port).start() for port in self.cluster_ports]
            self.proxies[n] = proxies
            return via_cluster(url, {p.target_port: p.port for p in proxies})
        proxy = Proxy(self.target_port).start()
        self.proxies[n] = [proxy]
        return via(url, proxy.port)

    def _proxies(self, pid: int) -> list[Proxy]:
        assert self._chaos is not None
        n = next(n for n, proc in enumerate(self._chaos.every) if proc.pid == pid)
        return self.proxies[n]

    def inject(self, chaos: Chaos) -> bool:
        self._chaos = chaos
        return super().inject(chaos)

    def start(self, pid: int) -> None:
        for proxy in self._proxies(pid):
            proxy.cut(reset=self.reset)

    def end(self, pid: int) -> None:
        for proxy in self._proxies(pid):
            proxy.restore()

    def cleanup(self) -> None:
        for proxies in self.proxies.values():
            for proxy in proxies:
                proxy.stop()
        self.proxies.clear()


@dataclass
class RestartServer(Fault):
    """kill -9 of the backend's server, down for ``down`` seconds, then started again on the
    same port with the same data (what it kept on disk)."""

    kill: Callable[[], None] = lambda: None
    start: Callable[[], None] = lambda: None
    down: float = 0.5
    label: str = "server"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"restart {self.label}"

    def inject(self, chaos: Chaos) -> bool:
        began = time.time()
        self.kill()
        time.sleep(self.down)
        self.start()
        chaos.outages.append((began, time.time()))
        return True


class Restartable(Protocol):
    """A server process that can be killed and started again with its data."""

    def kill(self) -> None: ...

    def start(self) -> object: ...


@dataclass
class RestartNodes(Fault):
    """kill -9 of some of a Redis Cluster's masters at once, down for ``down`` seconds,
    then each started again on its port with what it kept (its AOF and ``nodes.conf``, so
    it comes back as the master of its slots). Fault ``k`` restarts the nodes
    ``plan[k % len(plan)]`` (indexes into ``nodes``)."""

    nodes: Sequence[Restartable] = ()
    plan: Sequence[Sequence[int]] = ()
    down: float = 0.5
    label: str = "cluster"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"restart {self.label}"

    def inject(self, chaos: Chaos) -> bool:
        which = [self.nodes[i] for i in self.plan[chaos.injected % len(self.plan)]]
        began = time.time()
        for node in which:
            node.kill()
        time.sleep(self.down)
        for node in which:
            node.start()
        chaos.outages.append((began, time.time()))
        return True
