"""Prometheus metrics of one worker, written in the text exposition format by hand (no
client library needed for six series)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from itertools import accumulate

_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, float("inf"))


class Metrics:
    """Counters and gauges updated by the worker loop, read by the HTTP endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.claimed = 0
        self.finished: Counter[str] = Counter()
        self.running = 0
        self.paused = 0
        self.slots = 0
        self._buckets = [0] * len(_BUCKETS)
        """Runs per bucket alone (not cumulative): one increment per run; summed in render."""
        self._sum = 0.0
        self._count = 0

    def observe(self, status: str, seconds: float) -> None:
        """One finished run of ``seconds`` ending in ``status``."""
        self.observe_many([(status, seconds)])

    def observe_many(self, runs: list[tuple[str, float]]) -> None:
        """Several finished runs, ``(status, seconds)`` each, under one lock."""
        with self._lock:
            for status, seconds in runs:
                self.finished[status] += 1
                self._sum += seconds
                self._count += 1
                self._buckets[bisect_left(_BUCKETS, seconds)] += 1  # first bound >= seconds

    def add_claimed(self, n: int) -> None:
        """``n`` more invocations claimed."""
        with self._lock:
            self.claimed += n

    def set_load(self, running: int, paused: int, slots: int) -> None:
        """Current running and paused executions, and slots."""
        if (self.running, self.paused, self.slots) == (running, paused, slots):
            return  # unchanged (the worker calls this on every step): no lock taken
        with self._lock:
            self.running, self.paused, self.slots = running, paused, slots

    def render(self, pool: str) -> str:
        """The exposition text."""
        label = f'pool="{pool}"'
        with self._lock:
            lines = [
                "# HELP kubenenc_worker_claimed_total Invocations claimed by this worker.",
                "# TYPE kubenenc_worker_claimed_total counter",
                f"kubenenc_worker_claimed_total{{{label}}} {self.claimed}",
                "# HELP kubenenc_worker_finished_total Runs finished, by resulting status.",
                "# TYPE kubenenc_worker_finished_total counter",
            ]
            for status, n in sorted(self.finished.items()):
                lines.append(f'kubenenc_worker_finished_total{{{label},status="{status}"}} {n}')
            lines += [
                "# HELP kubenenc_worker_running Executions running now (holding a slot).",
                "# TYPE kubenenc_worker_running gauge",
                f"kubenenc_worker_running{{{label}}} {self.running}",
                "# HELP kubenenc_worker_paused Executions paused on a wait (no slot held).",
                "# TYPE kubenenc_worker_paused gauge",
                f"kubenenc_worker_paused{{{label}}} {self.paused}",
                "# HELP kubenenc_worker_slots Running slots of this worker.",
                "# TYPE kubenenc_worker_slots gauge",
                f"kubenenc_worker_slots{{{label}}} {self.slots}",
                "# HELP kubenenc_worker_run_seconds Duration of finished runs.",
                "# TYPE kubenenc_worker_run_seconds histogram",
            ]
            for bound, n in zip(_BUCKETS, accumulate(self._buckets), strict=True):
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'kubenenc_worker_run_seconds_bucket{{{label},le="{le}"}} {n}')
            lines.append(f"kubenenc_worker_run_seconds_sum{{{label}}} {self._sum}")
            lines.append(f"kubenenc_worker_run_seconds_count{{{label}}} {self._count}")
        return "\n".join(lines) + "\n"
