"""Heartbeats judged on the server's clock, outages not counted (issue 13, item 6).

The same rule as the Redis backend's (``kubenenc_redis/lua/lib_live.lua``): a heartbeat is
stamped with the server's time (``seen``), not the worker's, and recovery measures silence
on the server's time too, so workers whose clocks disagree judge each other right. A
stretch in which no heartbeat and no recovery reached the server for longer than the gap
allowance (a third of the heartbeat timeout) is an outage: it counts as silence only up to
the allowance, so an outage every worker saw does not make the first recovery afterwards
hand back the whole fleet's work. A live fleet beats every interval, so such gaps do not
happen while the server answers; when one does anyway, the allowance of it still counts, so
recovery is delayed, never stopped.

State: the ``live`` document of ``<p>_meta``: ``t`` the server time of the last heartbeat
or recovery (raised with ``$max``, so of two racing callers one sees the gap), ``g`` the
allowance, ``o`` the last outages as ``{f: from, t: to}`` (``from``: where the uncounted
part starts). The server's time comes from ``hello``'s ``localTime``, or, where a server
lacks it (mongo-java-server), from a ``$currentDate`` write.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

LIVE_ID = "live"
CLOCK_ID = "clock"
MAX_OUTAGES = 16
DEFAULT_GAP = 1.0
"""The allowance before any recovery said which (seconds)."""

Doc = dict[str, Any]


def _seconds(value: dt.datetime) -> float:
    if value.tzinfo is None:  # pymongo hands back naive UTC times by default
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def server_now(meta: Collection[Doc]) -> float:
    """The server's time (seconds since the epoch, millisecond precision)."""
    try:
        local = meta.database.command("hello").get("localTime")
    except OperationFailure:
        local = None
    if isinstance(local, dt.datetime):
        return _seconds(local)
    doc = meta.find_one_and_update(
        {"_id": CLOCK_ID}, {"$currentDate": {"t": True}}, upsert=True,
        return_document=ReturnDocument.AFTER,
    )  # fmt: skip
    assert doc is not None
    return _seconds(doc["t"])


def tick(meta: Collection[Doc], now: float, gap: float | None) -> list[tuple[float, float]]:
    """Record activity at ``now`` (server time), and an outage if the last activity is more
    than the allowance ago (``gap``; the stored one when None). Returns the recent outages."""
    update: Doc = {"$max": {"t": now}}
    if gap is not None:
        update["$set"] = {"g": gap}
    before = meta.find_one_and_update(
        {"_id": LIVE_ID}, update, upsert=True, return_document=ReturnDocument.BEFORE
    )
    if before is None:
        return []
    outages = [(float(o["f"]), float(o["t"])) for o in before.get("o", [])]
    allowance = gap if gap is not None else float(before.get("g", DEFAULT_GAP))
    last = before.get("t")
    if isinstance(last, int | float) and now - last > allowance:
        outages = [*outages, (last + allowance, now)][-MAX_OUTAGES:]
        kept = [{"f": a, "t": b} for a, b in outages]  # FerretDB 1.x has no nested arrays
        meta.update_one({"_id": LIVE_ID}, {"$set": {"o": kept}})
    return outages


def silence(at: float, now: float, outages: list[tuple[float, float]]) -> float:
    """Seconds of silence between a beat at ``at`` and ``now`` (server times), the outages
    (merged where two callers recorded overlapping ones) not counted."""
    s = now - at
    end = at
    for first, last in sorted(outages):
        start, stop = max(first, end), min(last, now)
        if stop > start:
            s -= stop - start
            end = stop
    return s


def beat_time(doc: Doc) -> float:
    """The server time of a ``<p>_workers`` document's heartbeat (``seen``), or the
    worker's own for a document without one (written by an older version)."""
    seen = doc.get("seen")
    return float(seen) if isinstance(seen, int | float) else float(doc["at"])
