"""Cron schedules (5 fields, UTC), as pure functions: parse once, ask for the last tick.

The operator needs only "which tick is the most recent one at or before now": the
TaskDefinition records the last tick it submitted in its status, and submits again only for
a newer one (written with optimistic concurrency, so two operator replicas submit once).
Supported: ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and ``a-b/n``, month
and weekday names, and ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.
When both day fields are restricted, a day matches either (classic cron).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


class CronError(ValueError):
    """A schedule that cannot be parsed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed schedule."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def last_tick(self, now: dt.datetime, horizon_days: int = 366) -> dt.datetime | None:
        """The latest tick at or before ``now`` (UTC, minute precision), or None within the
        horizon."""
        t = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
        end = t - dt.timedelta(days=horizon_days)
        while t > end:
            if t.month not in self.months:
                t = t.replace(day=1, hour=0, minute=0) - dt.timedelta(minutes=1)
                continue
            if t.hour not in self.hours or not self._day_ok(t):
                t = t.replace(minute=0) - dt.timedelta(minutes=1)
                continue
            if t.minute in self.minutes:
                return t
            t -= dt.timedelta(minutes=1)
        return None

    def _day_ok(self, t: dt.datetime) -> bool:
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def _value(text: str, names: dict[str, int], field: str) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number")
    return int(text)


def _field(text: str, field: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = _value(step_text, {}, field) if step_text else 1
        if step < 1:
            raise CronError(f"{field}: step must be at least 1")
        if rng == "*":
            start, stop = lo, hi
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, stop = _value(a, names, field), _value(b, names, field)
        else:
            start = _value(rng, names, field)
            stop = hi if step_text else start
        if not lo <= start <= stop <= hi:
            raise CronError(f"{field}: {part!r} is outside {lo}-{hi}")
        out.update(range(start, stop + 1, step))
    return frozenset(out)


def parse(schedule: str) -> Cron:
    """Parse ``schedule``; :class:`CronError` names the bad field."""
    text = _MACROS.get(schedule.strip().lower(), schedule)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"a schedule has 5 fields, got {len(parts)}: {schedule!r}")
    values = [_field(p, f, lo, hi, n) for p, (f, lo, hi, n) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(
        values[0], values[1], values[2], values[3], weekdays,
        any_day=parts[2] == "*", any_weekday=parts[4] == "*",
    )  # fmt: skip
