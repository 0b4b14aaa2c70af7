"""The :class:`~kubenenc.backends.browse.Browse` queries over the SQLite schema.

Each is one read (WAL: it never waits for a writer). ``browse`` reads a window of at most
``budget`` sequence numbers below the cursor (``seq`` is the rowid, so the window is a range
of the table itself, never a scan of it); the indexed columns filter inside SQLite and
:func:`~kubenenc.backends.browse.matches` decides the rest. Children come from the
``parent`` column and finished work over time from the ``ended`` one, each indexed on the
rows that have it (see ``_BROWSE_COLUMNS`` in :mod:`kubenenc.backends.sqlite`). Running
keys come from the ``running`` table (one row per key with slots held, beside the rate logs'
counters) and their holders from the ``inv_held`` index (only held invocations have a worker).
"""

from __future__ import annotations

import sqlite3

from kubenenc.backends.browse import (
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    bucket_index,
    cursor_of,
    matches,
    running_keys_of,
    seq_of,
)
from kubenenc.backends.codec import loads_record
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord


def browse(
    db: sqlite3.Connection, where: InvocationFilter, cursor: str | None, limit: int, budget: int
) -> InvocationPage:
    """See :meth:`kubenenc.backends.browse.Browse.browse`."""
    top = seq_of(cursor)
    if top is None:
        row = db.execute("SELECT max(seq) FROM invocations").fetchone()
        top = (row[0] or 0) + 1
    low = max(top - budget, 1)
    sql = ["SELECT seq, data FROM invocations WHERE seq < ? AND seq >= ?"]
    params: list[object] = [top, low]
    for column, value in (
        ("app", where.app), ("task", where.task), ("pool", where.pool),
        ("worker", where.worker), ("status", where.status),
    ):  # fmt: skip
        if value is not None:
            sql.append(f"AND {column} = ?")
            params.append(str(value))
    sql.append("ORDER BY seq DESC")
    items: list[InvocationRecord] = []
    for seq, data in db.execute(" ".join(sql), params):
        rec = loads_record(data)
        if matches(rec, where):
            rec.history = []
            items.append(rec)
            if len(items) >= limit:
                return InvocationPage(items, cursor_of(seq), top - seq)
    older = db.execute("SELECT 1 FROM invocations WHERE seq < ? LIMIT 1", (low,)).fetchone()
    return InvocationPage(items, cursor_of(low) if older else None, top - low)


def activity(
    db: sqlite3.Connection, since: float, width: float, buckets: int, app: str | None
) -> list[ActivityBucket]:
    """See :meth:`kubenenc.backends.browse.Browse.activity`."""
    finished, failed = [0] * buckets, [0] * buckets
    sql = "SELECT ended, status, app FROM invocations WHERE ended >= ? AND ended < ?"
    for ended, status, rec_app in db.execute(sql, (since, since + width * buckets)):
        i = bucket_index(float(ended), since, width, buckets)
        if i is not None and (app is None or rec_app == app):
            finished[i] += 1
            failed[i] += status == "FAILED"
    return [ActivityBucket(since + i * width, finished[i], failed[i]) for i in range(buckets)]


def relations(db: sqlite3.Connection, id: InvocationId, limit: int) -> Relations | None:
    """See :meth:`kubenenc.backends.browse.Browse.relations`."""
    row = db.execute("SELECT data FROM invocations WHERE id = ?", (id,)).fetchone()
    if row is None:
        return None
    rec = loads_record(row[0])
    children = [
        InvocationId(r[0])
        for r in db.execute(
            "SELECT id FROM invocations WHERE parent = ? ORDER BY seq LIMIT ?",
            (id, limit + 1),
        )
    ]
    targets = db.execute("SELECT target FROM edges WHERE waiter = ? ORDER BY target", (id,))
    waiters = db.execute("SELECT waiter FROM edges WHERE target = ? ORDER BY waiter", (id,))
    return Relations(
        parent=rec.parent,
        children=children[:limit],
        more_children=len(children) > limit,
        waits_on=[InvocationId(r[0]) for r in targets],
        waited_by=[InvocationId(r[0]) for r in waiters],
        depends_on=rec.depends_on,
    )


def running_keys(db: sqlite3.Connection, limit: int, holders: int, budget: int) -> RunningKeys:
    """See :meth:`kubenenc.backends.browse.KeyUsage.running_keys`."""
    counts = db.execute("SELECT key, n FROM running WHERE n > 0").fetchall()
    held = db.execute(
        "SELECT id, json_extract(data, '$.running_key') FROM invocations "
        "WHERE worker IS NOT NULL AND status = 'RUNNING' LIMIT ?",
        (budget,),
    ).fetchall()
    return running_keys_of(counts, ((InvocationId(i), k) for i, k in held), limit, holders)
