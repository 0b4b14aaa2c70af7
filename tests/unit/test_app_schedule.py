"""App.schedule and @app.task(schedule=...): what the Scheduler keeps (no backend asked)."""

from __future__ import annotations

import pytest
from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.errors import ConfigurationError

app = App("sched", backend=MemoryBackend())


@app.task(schedule="*/5 * * * *", timezone="Europe/Madrid")
def tick() -> None: ...


@app.task
def report(day: str, *, full: bool = False) -> None: ...


def test_schedules_are_named_checked_and_kept() -> None:
    [own] = app.schedules.entries.values()
    assert (own.name, own.expression, own.timezone) == (tick.id, "*/5 * * * *", "Europe/Madrid")
    one = app.schedule(report, cron="0 6 * * *", args=["mon"], kwargs={"full": True})
    assert one.name.startswith(f"{report.id}@") and (one.args, one.kwargs) == (
        ("mon",), {"full": True},
    )  # fmt: skip
    # The same schedule again is the same name; other arguments make another.
    assert app.schedule(report, cron="0 6 * * *", args=["mon"], kwargs={"full": True}).name == (
        one.name
    )
    other = app.schedule(report, cron="0 6 * * *", args=["tue"], name="tuesday")
    assert other.name == "tuesday"
    assert set(app.schedules.entries) == {tick.id, one.name, "tuesday"}
    with pytest.raises(ConfigurationError, match="already defined"):
        app.schedule(tick, cron="0 6 * * *", name="tuesday")
    with pytest.raises(TypeError):
        app.schedule(report, cron="0 6 * * *")  # cannot bind: fails now, not at every tick
    with pytest.raises(ConfigurationError):
        app.schedule(report, cron="not cron", args=["mon"])
