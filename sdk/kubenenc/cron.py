"""Cron schedules (5 fields, in any IANA time zone), as pure functions: parse once, ask for
the latest tick at or before a moment.

The one implementation: schedules in code (:mod:`kubenenc.schedules`) and the operator's
TaskDefinition ``schedule`` both use it. Supported: ``*``, numbers, ranges ``a-b``, lists
``a,b``, steps ``*/n`` and ``a-b/n``, month and weekday names, and ``@yearly @annually
@monthly @weekly @daily @midnight @hourly``. When both day fields are restricted, a day
matches either (classic cron).

Ticks are instants (aware datetimes in UTC, whole minutes); the fields are matched against
the wall clock of ``timezone``. Daylight saving time, as Vixie cron handles it:

- a wall time the clock skips (spring forward: 02:30 in Madrid on the last Sunday of March)
  fires once, at the first minute after the gap (03:00 local); several skipped wall times
  are one tick;
- a wall time the clock passes twice (fall back: 02:30 on the last Sunday of October) fires
  once, at its first pass, unless the hour field is ``*`` (``*/15 * * * *`` keeps firing
  every 15 minutes of real time through the repeated hour).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

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
_MINUTE = dt.timedelta(minutes=1)


class CronError(ValueError):
    """A schedule that cannot be parsed; the message says which field and why."""


def zone(name: str) -> dt.tzinfo:
    """The time zone called ``name`` (IANA, e.g. ``Europe/Madrid``; ``UTC``); CronError if
    it is unknown."""
    if name.upper() == "UTC":
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Madrid)") from exc


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed schedule, in the time zone ``tz``."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool
    any_hour: bool = False
    tz: dt.tzinfo = field(default=dt.UTC)

    def matches(self, wall: dt.datetime) -> bool:
        """Whether the wall-clock time ``wall`` (naive, or its own zone's) is a tick."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_ok(wall)
        )

    def last_tick(self, now: dt.datetime, horizon_days: int = 366) -> dt.datetime | None:
        """The latest tick at or before ``now`` (an aware UTC datetime, whole minute), or
        None when there is none within ``horizon_days``."""
        t = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
        end = t - dt.timedelta(days=horizon_days)
        while t > end:
            wall = t.astimezone(self.tz)
            back = self._skip(wall)
            if back > 1:
                # Jump over wall minutes that hold no tick, where no clock change lies in
                # between (else a shorter jump, or one minute at a time).
                for jump in (back, wall.minute + 1):
                    if jump > 1 and self._same_offset(t, t - jump * _MINUTE):
                        break
                else:
                    jump = 1
                if jump > 1:
                    t -= jump * _MINUTE
                    continue
            if self._fires(t, wall):
                return t
            t -= _MINUTE
        return None

    def ticks(self, after: dt.datetime | None, now: dt.datetime, limit: int) -> list[dt.datetime]:
        """The ticks later than ``after`` and at or before ``now``, oldest first; at most the
        ``limit`` latest of them (``after`` None: only the latest tick)."""
        out: list[dt.datetime] = []
        t = self.last_tick(now)
        while t is not None and (after is None or t > after) and len(out) < limit:
            out.append(t)
            if after is None:
                break
            t = self.last_tick(t - _MINUTE, horizon_days=max(1, (t - after).days + 1))
        out.reverse()
        return out

    def _skip(self, wall: dt.datetime) -> int:
        """How many minutes back from ``wall`` hold no tick for sure (1: only this one)."""
        if wall.month not in self.months:
            return (wall.day - 1) * 1440 + wall.hour * 60 + wall.minute + 1
        if not self._day_ok(wall):
            return wall.hour * 60 + wall.minute + 1
        if wall.hour not in self.hours:
            return wall.minute + 1
        return 1

    def _same_offset(self, a: dt.datetime, b: dt.datetime) -> bool:
        """No clock change between instants ``a`` and ``b`` (a jump by wall minutes is safe)."""
        return a.astimezone(self.tz).utcoffset() == b.astimezone(self.tz).utcoffset()

    def _fires(self, t: dt.datetime, wall: dt.datetime) -> bool:
        before = (t - _MINUTE).astimezone(self.tz)
        step = wall.replace(tzinfo=None) - before.replace(tzinfo=None)
        if step > _MINUTE:  # the clock jumped forward: the skipped wall times fire now
            w = before.replace(tzinfo=None) + _MINUTE
            while w < wall.replace(tzinfo=None):
                if self.matches(w):
                    return True
                w += _MINUTE
        if not self.matches(wall):
            return False
        if step < _MINUTE or self._repeated(t, wall):
            return self.any_hour  # a second pass over wall times already passed
        return True

    def _repeated(self, t: dt.datetime, wall: dt.datetime) -> bool:
        """Whether ``wall`` was already shown by the clock before instant ``t`` (fall back)."""
        if self.tz is dt.UTC:
            return False
        earlier = wall.replace(tzinfo=None).replace(tzinfo=self.tz, fold=0).astimezone(dt.UTC)
        return earlier < t

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


def parse(schedule: str, timezone: str = "UTC") -> Cron:
    """Parse ``schedule`` read in ``timezone``; :class:`CronError` names the bad field."""
    tz = zone(timezone)
    text = _MACROS.get(schedule.strip().lower(), schedule)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"a schedule has 5 fields, got {len(parts)}: {schedule!r}")
    values = [_field(p, f, lo, hi, n) for p, (f, lo, hi, n) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(
        values[0], values[1], values[2], values[3], weekdays,
        any_day=parts[2] == "*", any_weekday=parts[4] == "*", any_hour=parts[1] == "*",
        tz=tz,
    )  # fmt: skip
