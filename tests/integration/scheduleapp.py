"""An app with schedules, for the schedule integration tests (not a test module).

:func:`main` (``python -c "from tests.integration.scheduleapp import main; main()" URL
START STEP N WALL_START``; not ``-m``: the tasks would live in ``__main__``) runs the app's
scheduler over a simulated clock, as a worker's heartbeat thread would: ``N`` rounds,
``STEP`` simulated seconds apart, starting at simulated time ``START``; rounds follow the
wall clock (20 ms each, from the same start in every process), so several processes race
for each tick.
"""

from __future__ import annotations

import sys
import time

from kubenenc import App

app = App("sched-it")


@app.task(schedule="* * * * *", overlap="allow")
def every_minute() -> str:
    return "tick"


@app.task(schedule="*/5 * * * *", timezone="Europe/Madrid", overlap="allow")
def every_five() -> str:
    return "five"


def race(url: str, start: float, step: float, rounds: int, wall_start: float) -> None:
    app.configure(url)
    for n in range(rounds):
        time.sleep(max(0.0, wall_start + n * 0.02 - time.time()))
        app.schedules.clock = lambda n=n: start + n * step  # type: ignore[misc]
        app.schedules.run_due()
    app.close()


def main() -> None:
    """:func:`race` with the command line's arguments."""
    race(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
         float(sys.argv[5]))  # fmt: skip
