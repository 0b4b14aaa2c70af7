"""Cron schedules (kubenenc.cron): fields, time zones and daylight saving time."""

from __future__ import annotations

import datetime as dt

import pytest
from kubenenc.cron import CronError, parse

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 29, 6, 7, 33, tzinfo=UTC)


def at(text: str) -> dt.datetime:
    """``YYYY-MM-DD HH:MM`` in UTC."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def shown(ts: list[dt.datetime], tz: str = "Europe/Madrid") -> list[str]:
    """Each tick as wall time and offset in ``tz``."""
    return [t.astimezone(parse("* * * * *", tz).tz).strftime("%H:%M%z") for t in ts]


@pytest.mark.parametrize(
    ("schedule", "tick"),
    [
        ("* * * * *", "2026-11-29 06:07"),
        ("*/5 * * * *", "2026-11-29 06:05"),
        ("@hourly", "2026-11-29 06:00"),
        ("30 2 * * mon", "2026-11-23 02:30"),
        ("0 0 1 jan *", "2026-01-01 00:00"),
        ("0 12 13 * fri", "2026-11-27 12:00"),  # either day field matches
        ("15 8-10/2 * * *", "2026-11-28 10:15"),
    ],
)
def test_cron_last_tick(schedule: str, tick: str) -> None:
    found = parse(schedule).last_tick(NOW)
    assert found is not None and found.strftime("%Y-%m-%d %H:%M") == tick


@pytest.mark.parametrize(
    ("schedule", "text"),
    [("* * *", "5 fields"), ("60 * * * *", "minute"), ("* * * foo *", "month"),
     ("*/0 * * * *", "step")],
)  # fmt: skip
def test_cron_errors_name_the_field(schedule: str, text: str) -> None:
    with pytest.raises(CronError, match=text):
        parse(schedule)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(CronError, match="time zone"):
        parse("* * * * *", "Europe/Atlantis")


def test_a_time_zone_moves_the_tick() -> None:
    # 09:00 in Madrid is 08:00 UTC in winter (CET, +01:00) and 07:00 UTC in summer.
    assert parse("0 9 * * *", "Europe/Madrid").last_tick(NOW) == at("2026-11-28 08:00")
    summer = dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert parse("0 9 * * *", "Europe/Madrid").last_tick(summer) == at("2026-07-01 07:00")


def test_a_skipped_wall_time_fires_once_when_the_gap_ends() -> None:
    # 2026-03-29 in Madrid: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never shows.
    daily = parse("30 2 * * *", "Europe/Madrid")
    assert daily.last_tick(at("2026-03-29 03:00")) == at("2026-03-29 01:00")  # 03:00 CEST
    assert daily.last_tick(at("2026-03-29 00:59")) == at("2026-03-28 01:30")  # the day before
    # Every wall time in the gap is one tick, at its end.
    quarter = parse("*/15 * * * *", "Europe/Madrid")
    ticks = quarter.ticks(at("2026-03-29 00:30"), at("2026-03-29 01:20"), 100)
    assert shown(ticks) == ["01:45+0100", "03:00+0200", "03:15+0200"]


def test_a_repeated_wall_time_fires_once_unless_the_hour_is_any() -> None:
    # 2026-10-25 in Madrid: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:xx shows twice.
    daily = parse("30 2 * * *", "Europe/Madrid")
    ticks = daily.ticks(at("2026-10-24 12:00"), at("2026-10-25 12:00"), 10)
    assert ticks == [at("2026-10-25 00:30")]  # the first 02:30 (CEST) only
    assert daily.last_tick(at("2026-10-25 01:45")) == at("2026-10-25 00:30")
    half = parse("*/30 * * * *", "Europe/Madrid")
    ticks = half.ticks(at("2026-10-24 23:45"), at("2026-10-25 01:45"), 10)
    assert shown(ticks) == ["02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100"]


def test_ticks_are_bounded_and_oldest_first() -> None:
    every = parse("* * * * *")
    ticks = every.ticks(at("2026-11-29 05:00"), NOW, 5)
    assert ticks == [at(f"2026-11-29 06:0{m}") for m in range(3, 8)]
    assert every.ticks(None, NOW, 5) == [at("2026-11-29 06:07")]
    assert every.ticks(at("2026-11-29 06:07"), NOW, 5) == []


def test_a_schedule_that_never_fires_has_no_tick() -> None:
    assert parse("0 0 30 2 *").last_tick(NOW) is None
