"""The optional :class:`kubenenc.backends.contract.Overdue` role on MongoDB: runs past their
timeout, found from the work workers hold.

Without it the operator's enforcer reads every RUNNING invocation through ``query``, which
on FerretDB decodes every non-final record and on either server walks what is stored. Here
the process's replica (see :mod:`kubenenc_mongodb.layout`), brought up to the last committed
step from the log, already indexes the invocations workers hold (``Replica.held``): only
those are looked at, so the cost follows the work in flight, not what is kept for retention.
Kept apart from :mod:`kubenenc_mongodb.backend`, which binds :func:`overdue` as a method.
"""

from __future__ import annotations

from dataclasses import replace

from kubenenc.records import InvocationRecord
from kubenenc.status import Status

from kubenenc_mongodb.reads import MongoRecords
from kubenenc_mongodb.replica import Replica

OVERDUE_LIMIT = 1000
"""Most invocations one :func:`overdue` call returns (the enforcer calls again later)."""


def late(replica: Replica, now: float, grace: float) -> list[InvocationRecord]:
    """The held invocations of ``replica`` RUNNING past ``timeout + grace`` at ``now`` (the
    run's start is the record's last change: the claim, or the resume after a pause), as
    copies the caller may keep (the replica's records are changed by later steps)."""
    out: list[InvocationRecord] = []
    for id in replica.held:
        rec = replica.records[id]
        if (
            rec.status is Status.RUNNING and rec.timeout is not None
            and now - rec.updated_at > rec.timeout + grace
        ):  # fmt: skip
            out.append(replace(rec, history=list(rec.history)))
            if len(out) >= OVERDUE_LIMIT:
                break
    return out


def overdue(self: MongoRecords, now: float, grace: float) -> list[InvocationRecord]:
    """See :class:`kubenenc.backends.contract.Overdue`: reads only the held invocations of
    this process's replica, current as of the last committed step (no lock taken)."""
    return self._from_replica("overdue", lambda r: late(r, now, grace))
