"""Offset this process's wall clock by ``CHAOS_CLOCK_OFFSET`` seconds.

The clock-skew scenario (tests/chaos/outages.py) puts this directory first on the
``PYTHONPATH`` of a worker, so the worker and the task processes it starts read
``time.time()`` that many seconds off, as on a host whose clock drifted. Debian's
``faketime`` was tried first: under it Python's timed waits break (a faked monotonic clock
moves every lock's and event's deadline by the offset; with only the wall clock faked,
``time.sleep`` fails with EINVAL), so the worker misbehaves for reasons of its own.
"""

import os
import time

_offset = float(os.environ.get("CHAOS_CLOCK_OFFSET", "0") or 0)
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
