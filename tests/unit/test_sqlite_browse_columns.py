"""A SQLite file made before the browse columns existed gets them when opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kubenenc.backends.browse import InvocationFilter
from kubenenc.backends.sqlite import SQLiteBackend
from kubenenc.testing.helpers import add, running, succeed

OLD_TABLE = """
CREATE TABLE invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, app TEXT NOT NULL,
    task TEXT NOT NULL, pool TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
    waiters INTEGER NOT NULL, not_before REAL NOT NULL, worker TEXT, data TEXT NOT NULL
)
"""


def test_an_older_file_gets_the_browse_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(OLD_TABLE)
    backend = SQLiteBackend(path)
    try:
        columns = {r[1] for r in backend._db().execute("PRAGMA table_info(invocations)")}
        assert {"parent", "ended"} <= columns
        parent = running(backend, 1.0, "p")
        kid = add(backend, 2.0, "k", parent=parent)
        succeed(backend, parent, now=50.0)
        rel = backend.relations(parent)
        assert rel is not None
        assert rel.children == [kid]
        assert [b.finished for b in backend.activity(since=0.0, width=100.0, buckets=1)] == [1]
        assert len(backend.browse(InvocationFilter()).items) == 2
    finally:
        backend.close()
    SQLiteBackend(path).close()  # opening again changes nothing
