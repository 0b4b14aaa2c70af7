"""Collections, indexes and the commit protocol of the MongoDB backend — the design, in one place.

Why not one ``find_one_and_update`` per transition
--------------------------------------------------
On MongoDB a single-document update with the expected status in its filter is atomic, and a
backend could be built from those plus counter documents. The servers that speak the MongoDB
protocol do not all give that guarantee: FerretDB 1.24 (the server the tests run against)
executes ``findAndModify``/``update`` as a read followed by a separate write of the whole
document (``internal/handler/msg_findandmodify.go``), so two processes can both "win" a
conditional update and ``$inc`` can lose increments. It also has no multi-document
transactions, no change streams and no TTL indexes. The only primitives that stay atomic on
every such server are: inserting a document whose ``_id`` or unique key exists fails, and
deleting by ``_id`` deletes at most once. The design uses only those for coordination, on
every server (so the same protocol is tested on FerretDB and on a server that reports itself
as MongoDB, mongo-java-server); what differs by server is where documents go (below).

The protocol
------------
Every contract operation that writes (register, claim, finish, cancel, fail, pause, resume,
recover) is one *step*:

1. **Lease lock** (:mod:`kubenenc_mongodb.lock`). Insert ``{_id: <random token>, name:
   "queue", expires, e}`` into ``<p>_locks``, which has a unique index on ``name``: the
   insert succeeds for one process at a time. A lock whose lease has surely ended on the
   server's clock (``expires``, give or take ``e``: see :mod:`kubenenc_mongodb.lock`) is
   deleted by ``_id`` (its token, so a late release can never delete a newer holder's
   lock) and the insert is retried. Release is ``delete_one({_id: token})``.
2. **Catch up** (:mod:`kubenenc_mongodb.steps`). ``<p>_log_NN`` holds one document per
   committed step, ``{_id: v, step, z}`` (``v`` counts steps; ``step`` a random id of the
   attempt; ``z`` the step's *redo*, zlib-compressed JSON: the complete list of its writes),
   kept for :data:`LOG_KEEP` steps. Each process keeps a replica of the non-final
   invocations and of the index data (:mod:`kubenenc_mongodb.replica`) at some version; it
   applies the steps it missed from the log, each only if its ``step`` is the one its
   marker committed, or reloads the replica from the collections if it fell further behind.
3. **Compute** the operation with :class:`kubenenc.backends.engine.Engine` — the same
   policy code as the SQLite and memory backends — over the replica. Reads of final
   invocations go to the collections. Nothing is written yet.
4. **Commit** (:meth:`Layout.commit`): insert ``{_id: v+1, step, z}`` into ``<p>_log_NN``,
   then the marker ``{_id: v+1, step}`` into ``<p>_steps``. The marker insert is the commit
   point (and, as ``_id`` is unique, a second writer of the same version fails). Markers are
   tiny, so asking "is there a step after mine?" stays cheap while the redo documents are
   large.
5. **Apply**: write the redo's documents (idempotent inserts, upserts and deletes by
   ``_id``), then release the lock. Every :data:`PRUNE_EVERY` steps the committer prunes the
   log: markers first, then redo documents, oldest first. After a step that claimed work,
   the process keeps the lock a few milliseconds for its next step (the finish), which then
   needs neither the lock's round trips nor a catch-up: nobody else can have committed
   meanwhile (the same lease rules apply; see ``lock.LINGER``).

A crash before 4 leaves nothing written. A crash after 4 leaves the lock in place until its
lease expires; whoever takes it over finds the lock expired, leaves a tombstone
(``{_id: "t<token>"}`` in ``<p>_steps``) and deletes it; the next holder, seeing the
tombstone, re-applies the last logged step (idempotent: nothing was written after it),
seals the next version with a step of its own (so no late commit of the old holder can
land after it unwritten: "Late commits" in :mod:`kubenenc_mongodb.steps`) and goes on.
So a step is all-or-nothing, a claim can never be lost or given twice, running limits and
registration keys (dedupe) are exact across processes, and, as every step starts under the
lock, every step before the last one is fully written by the time any process reads the
collections under the lock.

The fence between the two inserts of 4: a log entry is never replaced. A holder may lose its
lease between its log insert and its marker insert (frozen, or cut off) and still insert its
marker afterwards; had a successor replaced the entry meanwhile, the marker would commit a
redo that is no longer in the log. So a successor that finds an entry without a marker at
the version it wants commits that entry as it is — its marker with the entry's ``step``,
then its documents — and starts over at the next version (the entry was computed over the
same committed state: it is as valid as the successor's own). The late holder's marker
insert then fails, finds its own ``step`` in the marker, and keeps its result; either way
the version holds one redo, once, and the marker and the log agree (catch-up checks it).
A holder that died between the two inserts is treated the same way: its step is committed
by the next holder, as if it had died just after its commit.

The lease (``lease``, default 5 s) must be far longer than a step (milliseconds):
a holder re-checks its lease before committing and before writing; one frozen between that
check and its commit commits late, and leaves the writes to the next holder (the tombstone
and the seal above); one frozen between the check and its writes writes late, and its
writes are fenced by version ("Late writes", below). No process's wall clock is used: see
:mod:`kubenenc_mongodb.lock` for whose clock judges a lease.

Late writes (issue 13, session 7)
---------------------------------
A holder that stalls between its last lease check and its document writes (a frozen
process, a write held in the network past the lease) writes step ``v``'s documents after a
successor may have written step ``v + 1``'s: without a fence, a document went back in time
(on MongoDB ``get`` read a SUCCESS call as RUNNING; a reload, once the later steps left the
log, took an old running-slot count and kept a slot taken for good). The lock cannot stop
such a write; the server can, with a filter (no extra round trip):

- Every document a step writes and a later step may write again carries the step's version,
  :data:`VERSION` (``_v``): the invocation documents (MongoDB layout), ``<p>_held``,
  ``<p>_running``, ``<p>_registrations``, ``<p>_edges``, ``<p>_deps``. A step's upsert
  matches only ``{_id, _v <= v}`` (or no ``_v``: written before this format;
  :func:`not_after`), so a replay of the same step stays idempotent, and one that meets a
  document a later step wrote makes the server try an insert, which the ``_id`` index
  refuses (E11000): :func:`write_versioned` skips exactly those writes and raises any other
  error. A step's deletes carry the same filter, so a late delete never deletes a later
  step's document. So every document's ``_v`` only grows, and it holds the write of the
  latest step that wrote it, late writers or not: what writing the steps in order gives.
- Documents written once with a content that never changes carry no ``_v`` (FerretDB's
  cost grows with fields): an invocation's own document on FerretDB (its registration) and
  its final document (a final invocation never changes); a late write writes what is there.
- A delete leaves nothing to compare with, so a late upsert after a later step's delete
  brings the document back. Where that matters it does not delete: a running-slot count
  that drops to 0 stays as ``{n: 0, _v}`` (a reload drops zeros; one small document per
  running key ever used), as a count brought back would keep a slot taken in every process
  that reloads. Elsewhere it is left, for these reasons: a registration key is deleted only
  when its holder became final, and a key naming a final holder dedupes nothing (the Engine
  checks the holder) until the next registration with it overwrites it; a dependency entry
  is deleted only when its dependency became final, and the entries of a final dependency
  are never acted on; a ``<p>_held`` document is deleted only when its invocation became
  final, and a reload takes the final document over it; invocation and final documents are
  deleted only by the retention sweep, which deletes one brought back again at its next
  run (it reads the collections). A wait edge brought back (its waiter resumed or ended
  meanwhile) is the one that could mislead: a process that reloads holds it, and should the
  waiter pause again, a cycle check through it could report a cycle that is over; the
  process's next change of that waiter's edges deletes it. A versioned tombstone per wait
  would keep one document per pause for good, so this is left as a limit: it needs a holder
  stalled past its lease in its writes, a resume by the successor, a reload, and a pause of
  that call again before its edges change.
- On FerretDB an update is a read and then a write (above), so a late write racing the
  successor's write of the *same* document inside the server (between its read and its
  write) can still win: the fence narrows the window from the stall (unbounded) to that.
  MongoDB applies a single-document upsert atomically.

Where documents go: MongoDB
---------------------------
Every change is written in place: ``<p>_invocations`` holds the current document of every
invocation, with secondary indexes for the hot paths and a TTL index for retention, and
``get``/``query`` read it directly. ``wait_final`` and ``get_many`` follow the log into the
replica without the lock (a poll costs a read or two however many ids it asks about), then
wait until the documents agree.

Where documents go: FerretDB (append layout)
--------------------------------------------
FerretDB 1.24 has a price per write transaction (about a millisecond), per document field
(its SQLite rows carry a type schema of every field) and per document of a collection for
any query but one string ``_id`` (its SQLite ``_id`` index is on another expression than its
queries use), and an update of one document by ``_id`` costs a scan of its collection —
a few hundred per second at best, against ten thousand documents per second inserted in
batches. So on FerretDB no hot-path write is an update:

- registration inserts the invocation's *own* document (``<p>_invocations_NNN``, by a hash
  of the id: ``{_id, seq, j}``, the record as JSON text) and it is never written again;
- a change that leaves an invocation non-final (a claim, pause, resume, retry, a new waiter)
  writes *no document*: the committed log entry is the record of it, and every process
  reads non-final invocations from its replica, which it brings up to the last committed
  step from the log before answering (``get``, ``get_many``, ``query``, ``counts``,
  ``wait_final``);
- reaching a final status inserts the final document into ``<p>_final`` (a batch of them in
  one insert), and deletes the ``<p>_held`` one if there is one;
- before the log forgets a step, the committing step *spills* every non-final change older
  than what the log keeps into ``<p>_held`` (``{_id, status, seq, j}``; in its own redo, so
  a replay after a crash writes them too). So the collections plus the steps the log keeps
  always hold every change: a reload reads own, held and final documents, then replays the
  kept steps over them (final invocations, and those deleted by the retention sweep since,
  are taken from the documents as they are).

Each process also keeps the last final documents it saw in the log (``Replica.recent``), so
waiting for results and reading them needs no collection read. A claim reads the head of a
per-pool queue kept in claim order in the replica.

Collections (``<p>`` is the prefix, ``prefix`` in the URL, default ``kubenenc``)
----------------------------------------------------------------------------------------
- ``<p>_invocations`` (on FerretDB ``<p>_invocations_NNN``, see ``backend._FERRET_SHARDS``):
  one document per invocation, ``_id`` = id, the record as JSON text (``j``) beside the
  fields queries, indexes and sorts use (``app, task, pool, status, priority, waiters,
  worker, updated_at, seq``; ``seq`` orders claims among equals) and ``final_at`` (a date,
  set when final). Indexes (MongoDB): ``(pool, status, waiters, priority, seq)`` for claims,
  ``(app, status)``, ``(task, status)`` for queries and counts, ``(status)``, ``(worker)``
  for recovery, and a TTL index on ``final_at`` for retention (default 7 days). Where TTL
  indexes are not implemented (FerretDB) the backend deletes expired finished invocations
  itself, from ``recover`` at most once a minute per process, as a step.
- ``<p>_final``, ``<p>_held`` (FerretDB only): see above.
- ``<p>_running``: ``{_id: running key, n, _v}`` slots held (0: none; kept, see "Late
  writes").
- ``<p>_registrations``: ``{_id: registration key, holder, _v}``.
- ``<p>_edges``: ``{_id: "waiter target", w, t, _v}`` wait edges; indexes on ``w`` and ``t``.
- ``<p>_deps``: ``{_id: "dependency dependent", d, e, _v}`` declared dependencies of
  invocations that are not final yet; index on ``d``.
- ``_v`` (invocation documents on MongoDB, ``<p>_held`` and the four above): the version of
  the step that wrote the document ("Late writes").
- ``<p>_workers``: ``{_id: worker id, ...}`` the last heartbeat (written directly, no lock).
- ``<p>_policies``: ``{_id: name, spec}`` named concurrency policies (written directly).
- ``<p>_locks``, ``<p>_steps`` (markers, and take-over tombstones ``t<token>``, which sort
  after them), ``<p>_log_NN``: the protocol above (step ``v`` in
  ``<p>_log_{v % 16}``, so each stays a few documents long).
- ``<p>_meta``: ``{_id: "layout", shards, format}``: how many invocation collections the
  prefix uses, and the layout format (a prefix made in another format is refused at start).

All indexes are created with ``create_index`` at start, which is idempotent. On FerretDB only
the lock's unique index is created (each secondary index makes every write several times
slower there, and its queries would not use them); on either server the replica keeps the
hot paths (claim order, running limits, cycle checks) off collection scans.

Size: about 660 lines: the collections, their indexes and the commit protocol that
writes them are read together when checking a step's durability.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING, DeleteOne, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from kubenenc_mongodb.replica import Redo

LOG_KEEP = 64
"""Steps kept in ``<p>_log``; a process further behind reloads its replica."""

PRUNE_EVERY = 16
"""Every this many steps, the step that commits prunes the log (and spills, see above)."""

LOG_SHARDS = 16
"""The log is spread over this many collections, so that each stays a few documents long
(FerretDB reads a document by ``_id`` with a scan of its collection)."""

TAKEN_OVER = "t"
"""The ``_id`` prefix of a take-over tombstone in ``<p>_steps`` (``t<lock token>``): it sorts
after every marker (zero-padded digits), so the range reads of markers see it for free, and
the log prune (markers below a version) never deletes it."""

NOT_IMPLEMENTED = 238
DUPLICATE_KEY = 11000

VERSION = "_v"
"""The field of every document a step rewrites that holds the step's version: its writes
match only documents of that version or older (see "Late writes" above)."""

_FINAL_FIELDS = ("_id", "app", "task", "pool", "status", "seq", "final_at", "j")
"""The fields of a ``<p>_final`` document: the record, and what counts, queries, sorts and
the retention sweep use."""

Doc = dict[str, Any]


class Commit(enum.Enum):
    """What :meth:`Layout.commit` did with a step."""

    DONE = "done"
    """Committed: the caller writes its documents."""
    DONE_FOR_US = "done for us"
    """Committed by another process that took the lock over (this one's lease ran out
    between its log insert and its marker insert) and wrote it."""
    TAKEN = "taken"
    """Another step holds the version: start over."""
    ADOPTED = "adopted"
    """Another step's redo, logged without a marker, is now committed by this call: the
    caller writes it (:attr:`Committed.adopted`), then starts over."""


class LogGap(RuntimeError):
    """A step the log should still hold is missing from it: the log moved on while it was
    read (only a process whose lease ran out meanwhile can see this), or it was damaged."""


@dataclass(frozen=True, slots=True)
class Committed:
    """The outcome of :meth:`Layout.commit`."""

    kind: Commit
    adopted: Redo | None = None


_Write = ReplaceOne[Doc] | DeleteOne


class _Batch:
    """One step's writes, grouped by collection."""

    def __init__(self) -> None:
        self.inserts: dict[str, list[Doc]] = {}
        self.replaces: dict[str, list[_Write]] = {}
        self.final_inserts: list[Doc] = []
        self.unheld: list[str] = []
        self.others: dict[str, list[_Write]] = {}


class Layout:
    """The collections of one prefix in one database (``shards`` invocation collections)."""

    def __init__(self, db: Database[Doc], prefix: str, shards: int = 1) -> None:
        self.db = db
        self.prefix = prefix
        self.shards: list[Collection[Doc]] = (
            [db[f"{prefix}_invocations"]]
            if shards == 1
            else [db[f"{prefix}_invocations_{n:03d}"] for n in range(shards)]
        )
        self.meta: Collection[Doc] = db[f"{prefix}_meta"]
        self.held: Collection[Doc] | None = db[f"{prefix}_held"] if shards > 1 else None
        """Where the documents of RUNNING and PAUSED invocations live (append layout only):
        a claim is then one insert for the whole batch instead of one update per
        invocation; the invocation's own document is left as it was until it is let go."""
        self.final: Collection[Doc] | None = db[f"{prefix}_final"] if shards > 1 else None
        """Where final invocations live (append layout only): finishing a batch is one
        insert, and the invocation's own document is never written again."""
        self.running: Collection[Doc] = db[f"{prefix}_running"]
        self.registrations: Collection[Doc] = db[f"{prefix}_registrations"]
        self.edges: Collection[Doc] = db[f"{prefix}_edges"]
        self.deps: Collection[Doc] = db[f"{prefix}_deps"]
        self.workers: Collection[Doc] = db[f"{prefix}_workers"]
        self.policies: Collection[Doc] = db[f"{prefix}_policies"]
        self.locks: Collection[Doc] = db[f"{prefix}_locks"]
        self.steps: Collection[Doc] = db[f"{prefix}_steps"]
        self.logs: list[Collection[Doc]] = [db[f"{prefix}_log_{n:02d}"] for n in range(LOG_SHARDS)]

    def ensure_indexes(self, retention: float, *, secondary: bool = True) -> bool:
        """Create every index (idempotent). Returns whether the server has TTL indexes.

        ``secondary=False`` (FerretDB) creates only the unique index the lock needs: that
        server answers queries from ``_id`` alone, and each extra index makes every write of
        an invocation several times slower there.
        """
        self.locks.create_index([("name", ASCENDING)], name="one_holder", unique=True)
        if not secondary:
            return self._ensure_ttl(retention)
        for inv in self.shards:
            inv.create_index(
                [("pool", ASCENDING), ("status", ASCENDING), ("waiters", DESCENDING),
                 ("priority", DESCENDING), ("seq", ASCENDING)],
                name="claim_order",
            )  # fmt: skip
            inv.create_index([("app", ASCENDING), ("status", ASCENDING)], name="app_status")
            inv.create_index([("task", ASCENDING), ("status", ASCENDING)], name="task_status")
            inv.create_index([("status", ASCENDING)], name="status")
            inv.create_index([("worker", ASCENDING)], name="held_by")
        self.edges.create_index([("w", ASCENDING)], name="by_waiter")
        self.edges.create_index([("t", ASCENDING)], name="by_target")
        self.deps.create_index([("d", ASCENDING)], name="by_dependency")
        return self._ensure_ttl(retention)

    def _ensure_ttl(self, retention: float) -> bool:
        seconds = max(1, int(retention))
        for inv in self.shards:
            try:
                inv.create_index(
                    [("final_at", ASCENDING)], name="retention", expireAfterSeconds=seconds
                )
            except OperationFailure as exc:
                if exc.code == NOT_IMPLEMENTED:
                    return False
                # The index exists with another retention: change it in place.
                self.db.command(
                    "collMod", inv.name,
                    index={"name": "retention", "expireAfterSeconds": seconds},
                )  # fmt: skip
        return True

    def shard(self, id: str) -> Collection[Doc]:
        """The collection that holds invocation ``id``."""
        if len(self.shards) == 1:
            return self.shards[0]
        return self.shards[zlib.crc32(id.encode()) % len(self.shards)]

    # -- writing a redo ---------------------------------------------------------------------

    def apply(self, redo: Redo, version: int, *, replay: bool = False) -> None:
        """Write the documents of step ``version``. Idempotent; ``replay`` after a crash of
        the writer. A document a later step wrote already is left as it is (see "Late
        writes" above)."""
        batch = _Batch()
        v = version
        for op in redo:
            if op["c"] == "inv":
                self._write_record(batch, op, v, replay)
            elif op["c"] == "spill" and self.held is not None:
                spilled = [versioned_upsert(d["_id"], {**d, VERSION: v}, v) for d in op["docs"]]
                batch.others.setdefault(self.held.name, []).extend(spilled)
            else:
                for coll, write in self._index_writes(op, v):
                    batch.others.setdefault(coll.name, []).append(write)
        for name, docs in batch.inserts.items():
            self._insert(self.db[name], docs, v)
        for name, ops in batch.replaces.items():
            write_versioned(self.db[name], ops)
        if self.final is not None and batch.final_inserts:
            self._insert(self.final, batch.final_inserts, v)  # a replay overwrites: same docs
        if self.held is not None and batch.unheld:
            self.held.delete_many({"_id": {"$in": batch.unheld}, **not_after(v)})
        for name, ops in batch.others.items():
            write_versioned(self.db[name], ops)

    def _write_record(self, batch: _Batch, op: Doc, v: int, replay: bool) -> None:
        doc = op["doc"]
        final = doc["status"] in ("SUCCESS", "FAILED", "CANCELLED")
        if final:
            doc = {**doc, "final_at": dt.datetime.fromtimestamp(doc["updated_at"], dt.UTC)}
        if self.held is not None and self.final is not None:
            self._write_apart(batch, op, doc, final, v, replay)
            return
        doc = {**doc, VERSION: v}
        name = self.shard(doc["_id"]).name
        if op.get("new") and not replay:
            batch.inserts.setdefault(name, []).append(doc)
        else:
            batch.replaces.setdefault(name, []).append(versioned_upsert(doc["_id"], doc, v))

    def _write_apart(
        self, batch: _Batch, op: Doc, doc: Doc, final: bool, v: int, replay: bool
    ) -> None:
        """FerretDB layout: the own document is written once (at registration), a change
        goes to ``<p>_held`` and the final state to ``<p>_final``: inserts, mostly."""
        id = doc["_id"]
        if final:
            batch.final_inserts.append({k: doc[k] for k in _FINAL_FIELDS})
            if op.get("was_held"):
                batch.unheld.append(id)
        elif op.get("new"):
            # Only what a reload needs: FerretDB's cost per document grows with its fields.
            doc = {"_id": id, "seq": doc["seq"], "j": doc["j"]}
            name = self.shard(id).name
            if replay:
                batch.replaces.setdefault(name, []).append(versioned_upsert(id, doc, v))
            else:
                batch.inserts.setdefault(name, []).append(doc)
        # Any other change stays in the log until it is spilled (see the module docstring).

    def _index_writes(self, op: Doc, v: int) -> Iterator[tuple[Collection[Doc], _Write]]:
        """The writes of one redo operation of step ``v`` other than an invocation's
        document."""
        kind = op["c"]
        if kind == "run":
            # A slot count that drops to 0 stays as a versioned 0 rather than being deleted:
            # a late write of an older count must not bring it back (see "Late writes").
            yield self.running, versioned_upsert(op["id"], {"n": op["n"], VERSION: v}, v)
        elif kind == "reg":
            holder = op["holder"]
            yield (
                self.registrations,
                (
                    DeleteOne({"_id": op["id"], **not_after(v)})
                    if holder is None
                    else versioned_upsert(op["id"], {"holder": holder, VERSION: v}, v)
                ),
            )
        elif kind == "edge":
            w = op["w"]
            for t in op["add"]:
                yield self.edges, versioned_upsert(f"{w} {t}", {"w": w, "t": t, VERSION: v}, v)
            for t in op["rm"]:
                yield self.edges, DeleteOne({"_id": f"{w} {t}", **not_after(v)})
        elif kind == "dep":
            d = op["d"]
            for e in op["add"]:
                yield self.deps, versioned_upsert(f"{d} {e}", {"d": d, "e": e, VERSION: v}, v)
            for e in op["rm"]:
                yield self.deps, DeleteOne({"_id": f"{d} {e}", **not_after(v)})
        elif kind == "forget":
            yield from self._forget_writes(op["ids"], v)
        elif kind == "wrk":
            yield self.workers, DeleteOne({"_id": op["id"], "at": op["at"]})

    def _forget_writes(self, ids: list[str], v: int) -> Iterator[tuple[Collection[Doc], _Write]]:
        for id in ids:
            yield self.shard(id), DeleteOne({"_id": id, **not_after(v)})
            if self.final is not None:
                yield self.final, DeleteOne({"_id": id})

    def _insert(self, inv: Collection[Doc], inserts: list[Doc], v: int) -> None:
        try:
            inv.insert_many(inserts, ordered=False)
        except BulkWriteError as exc:
            # Written by an earlier, interrupted try of this same step: overwrite (unless a
            # later step wrote it since: see "Late writes").
            errors = exc.details.get("writeErrors", [])
            dup = {e["index"] for e in errors if e["code"] == DUPLICATE_KEY}
            if len(dup) != len(errors):
                raise
            write_versioned(
                inv, [versioned_upsert(inserts[i]["_id"], inserts[i], v) for i in sorted(dup)]
            )

    def commit(self, version: int, step_id: str, redo: Redo) -> Committed:
        """Log step ``version``: its redo, then its marker (the commit point).

        The log entry of a version, once inserted, is never replaced (the fence): a holder
        whose lease ran out between its two inserts may still insert its marker, so an entry
        found without one is committed as it is by whoever finds it (:meth:`settle`; it was
        computed over the same committed state as ours), and ours is not.
        """
        # The redo as compressed JSON: one small binary field is far cheaper for FerretDB to
        # store and read than the same data as nested documents.
        packed = Binary(zlib.compress(json.dumps(redo).encode(), 1))
        try:
            self.log(version).insert_one({"_id": log_id(version), "step": step_id, "z": packed})
        except DuplicateKeyError:
            _, adopted = self.settle(version)
            return Committed(Commit.TAKEN if adopted is None else Commit.ADOPTED, adopted)
        try:
            self.steps.insert_one({"_id": log_id(version), "step": step_id})
        except DuplicateKeyError:
            marker = self.marker(version)
            mine = marker is not None and marker.get("step") == step_id
            return Committed(Commit.DONE_FOR_US if mine else Commit.TAKEN)
        return Committed(Commit.DONE)

    def settle(self, version: int) -> tuple[str | None, Redo | None]:
        """The step id that holds ``version`` (None: no step does), committing the entry
        logged there if it has no marker yet and ``version`` is the next one: then its
        redo is returned too, for the caller to write (its writer may be gone)."""
        marker = self.marker(version)
        if marker is not None:
            return marker.get("step"), None
        entry = self.log(version).find_one({"_id": log_id(version)})
        if entry is None or self.latest() != version - 1:
            return None, None  # nothing logged, or a leftover of a step long gone
        try:
            self.steps.insert_one({"_id": log_id(version), "step": entry["step"]})
        except DuplicateKeyError:
            marker = self.marker(version)  # its writer (or another finder) was first
            return (marker.get("step") if marker is not None else None), None
        return entry["step"], redo_of(entry)

    def marker(self, version: int) -> Doc | None:
        """The commit marker of step ``version`` (``{_id, step}``), or None."""
        return self.steps.find_one({"_id": log_id(version)})

    def marked_after(self, version: int) -> bool:
        """Whether a step after ``version`` is committed (one ``_id`` range read of the
        small marker collection)."""
        return self.after(version)[0]

    def after(self, version: int) -> tuple[bool, list[str]]:
        """Whether a step after ``version`` is committed, and the take-over tombstones
        (see ``LeaseLock.bury_holder``): one ``_id`` range read of the small marker
        collection, where tombstones sort after every marker; two more only while a
        tombstone is there."""
        top = list(
            self.steps.find({"_id": {"$gt": log_id(version)}}, {"_id": 1}).sort("_id", -1).limit(1)
        )
        if not top:
            return False, []
        if not str(top[0]["_id"]).startswith(TAKEN_OVER):
            return True, []
        later = {"_id": {"$gt": log_id(version), "$lt": TAKEN_OVER}}
        return self.steps.find_one(later, {"_id": 1}) is not None, self.tombstones()

    def tombstones(self) -> list[str]:
        """The ``_id`` of every take-over tombstone."""
        return [str(d["_id"]) for d in self.steps.find({"_id": {"$gte": TAKEN_OVER}}, {"_id": 1})]

    def bury(self, tombstones: list[str]) -> None:
        """Delete tombstones whose take-over was dealt with (by ``_id``: one inserted since
        stays)."""
        if tombstones:
            self.steps.delete_many({"_id": {"$in": tombstones}})

    def log_entry(self, version: int) -> Doc | None:
        """Step ``version`` with its redo, if committed and still logged."""
        marker = self.marker(version)
        if marker is None:
            return None
        entry = self.log(version).find_one({"_id": log_id(version)})
        return entry if entry is not None and entry.get("step") == marker.get("step") else None

    def latest(self) -> int:
        """The last committed version (a scan of the small marker collection)."""
        where = {"_id": {"$lt": TAKEN_OVER}}  # not the tombstones, which sort after markers
        found = list(self.steps.find(where, {"_id": 1}).sort("_id", -1).limit(1))
        return int(found[0]["_id"]) if found else 0

    def prune_log(self, version: int) -> None:
        """Every 16 steps, forget the 16 steps older than :data:`LOG_KEEP`, markers first
        (a reader that finds a marker reads its redo; the markers' own deletion order is not
        promised, so readers ask whether any later marker exists: ``marked_after``)."""
        if version % PRUNE_EVERY == 0 and version > LOG_KEEP:
            # Markers first (one delete, one transaction on the server), then the redo
            # documents, each by its _id (cheaper on FerretDB than a scan of their collection).
            self.steps.delete_many({"_id": {"$lt": log_id(version - LOG_KEEP)}})
            for v in range(max(1, version - LOG_KEEP - PRUNE_EVERY), version - LOG_KEEP):
                self.log(v).delete_one({"_id": log_id(v)})

    def unspilled(self, version: int) -> list[tuple[int, Redo]]:
        """The logged steps that may hold changes not written to documents, up to
        ``version`` (the last committed one), oldest first: every step from the one the
        last prune kept. Read with one query per log collection."""
        last_prune = version - version % PRUNE_EVERY
        first = max(1, last_prune - LOG_KEEP)
        markers = {d["_id"]: d.get("step") for d in self.steps.find()}
        entries: dict[str, Doc] = {}
        for coll in self.logs:
            for d in coll.find():
                entries[d["_id"]] = d
        out: list[tuple[int, Redo]] = []
        for v in range(first, version + 1):
            entry = entries.get(log_id(v))
            if entry is None or log_id(v) not in markers or markers[log_id(v)] != entry["step"]:
                raise LogGap(f"step {v} is missing from the log: cannot rebuild the state")
            out.append((v, redo_of(entry)))
        return out

    def log(self, version: int) -> Collection[Doc]:
        """The collection that holds the redo of step ``version``."""
        return self.logs[version % LOG_SHARDS]


def not_after(v: int) -> Doc:
    """The filter of a step ``v``'s write: documents written by step ``v`` or an earlier one
    (or before documents carried :data:`VERSION`), not by a later step."""
    return {VERSION: {"$not": {"$gt": v}}}


def versioned_upsert(id: str, doc: Doc, v: int) -> ReplaceOne[Doc]:
    """Replace document ``id`` by ``doc`` unless a step after ``v`` wrote it; insert it if
    there is none. When there is a newer one, the server tries to insert and reports a
    duplicate key (E11000), which :func:`write_versioned` ignores."""
    return ReplaceOne({"_id": id, **not_after(v)}, doc, upsert=True)


def write_versioned(coll: Collection[Doc], ops: list[_Write]) -> None:
    """Run one step's writes to ``coll`` in one round trip (unordered). A duplicate key
    error means an upsert met a document a later step wrote: that write must be skipped.
    Servers differ after one: MongoDB and mongo-java-server run the other writes and report
    it (:class:`BulkWriteError`, code 11000); FerretDB 1.24 stops at it even unordered, and
    its reply lacks the ``nModified`` that PyMongo's bulk result merge reads (a ``KeyError``
    from PyMongo). So after one, the writes run again one by one (they are idempotent),
    skipping exactly those a duplicate key refuses: extra round trips only for a late
    writer. Any other error is raised."""
    try:
        coll.bulk_write(ops, ordered=False)
        return
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(
            e.get("code") != DUPLICATE_KEY for e in errors
        ):
            raise
    except KeyError:
        pass  # FerretDB's reply to an update with a write error: see above
    for op in ops:
        if isinstance(op, DeleteOne):
            coll.delete_one(op._filter)
            continue
        with contextlib.suppress(DuplicateKeyError):  # a later step wrote it
            coll.replace_one(op._filter, op._doc, upsert=True)


def redo_of(entry: Doc) -> Redo:
    """The redo of a log entry (see :meth:`Layout.commit`)."""
    if "z" in entry:
        redo: Redo = json.loads(zlib.decompress(entry["z"]))
        return redo
    return entry["redo"]  # type: ignore[no-any-return]


def tombstone_id(token: str) -> str:
    """The ``_id`` in ``<p>_steps`` of the tombstone of lock token ``token``."""
    return TAKEN_OVER + token


def log_id(version: int) -> str:
    """The ``_id`` of a step in ``<p>_log`` (zero-padded, so it sorts)."""
    return f"{version:016d}"
