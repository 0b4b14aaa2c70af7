"""One contender for the MongoDB backend's lease lock, run as its own process by
tests/integration/test_mongodb_lease_clock.py (possibly with its wall clock offset by
tests/chaos/skewclock).

``python -m tests.integration.lockproc URL PREFIX NAME ROUNDS``: takes the lock ``ROUNDS``
times; under it, marks a critical section with a document whose ``_id`` is unique (the
insert fails while another process is inside), stays a moment, and leaves. Prints one line
per overlap seen (``OVERLAP``), then ``DONE <rounds>``.
"""

from __future__ import annotations

import sys
import threading
import time

from kubenenc_mongodb import liveness
from kubenenc_mongodb.layout import Doc, Layout
from kubenenc_mongodb.lock import LeaseLock
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError


def main(url: str, prefix: str, name: str, rounds: int) -> None:
    client: MongoClient[Doc] = MongoClient(url, serverSelectionTimeoutMS=10000)
    db = client.get_default_database()
    inside = db[f"{prefix}_inside"]
    mutex = threading.RLock()
    meta = db[f"{prefix}_meta"]
    Layout(db, prefix).ensure_indexes(60.0, secondary=False)  # the lock's unique index
    lock = LeaseLock(
        db[f"{prefix}_locks"], 5.0, name, mutex, lambda: liveness.server_now(meta),
        db[f"{prefix}_steps"],
    )  # fmt: skip
    done = 0
    for _ in range(rounds):
        with mutex:
            lease = lock.take()
            try:
                inside.insert_one({"_id": "cs", "who": name})
            except DuplicateKeyError:
                print("OVERLAP", flush=True)
            else:
                time.sleep(0.003)
                inside.delete_one({"_id": "cs", "who": name})
            lock.end(lease, linger=False)
        done += 1
    lock.close()
    client.close()
    print(f"DONE {done}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
