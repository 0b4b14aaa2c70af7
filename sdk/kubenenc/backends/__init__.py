"""Backends: the contract, the registry of implementations, and the embedded ones.

Third parties add a backend by registering its class under the entry-point group
``kubenenc.backends`` (name = URL scheme); nothing here needs to change. What a plugin may
build on is what ``__all__`` lists (with :mod:`kubenenc.records`, :mod:`kubenenc.ids`,
:mod:`kubenenc.status` and :mod:`kubenenc.errors`): the contract and its optional roles, and
for a store with transactions the route the embedded backends take -- implement
:class:`Txn`, subclass :class:`EngineBackend`, and :class:`Engine` applies every rule.
``docs/plugins.md`` walks through both routes; :mod:`kubenenc.testing` checks the result.
"""

from kubenenc.backends.browse import (
    ActivityBucket,
    Browse,
    InvocationFilter,
    InvocationPage,
    KeyUsage,
    Relations,
    RunningKey,
    RunningKeys,
    bucket_index,
    cursor_of,
    matches,
    running_keys_of,
    seq_of,
)
from kubenenc.backends.codec import dumps_record, dumps_worker, loads_record, loads_worker
from kubenenc.backends.contract import (
    Admin,
    Backend,
    Coordination,
    DueTimes,
    FinishAndClaim,
    Overdue,
    Policies,
    Queue,
    Records,
    ResumeEarly,
    TickClaims,
    WorkNotifier,
)
from kubenenc.backends.embedded import EngineBackend, retention_option
from kubenenc.backends.engine import Engine, Txn
from kubenenc.backends.registry import available_backends, open_backend

__all__ = [
    "ActivityBucket",
    "Admin",
    "Backend",
    "Browse",
    "Coordination",
    "DueTimes",
    "Engine",
    "EngineBackend",
    "FinishAndClaim",
    "InvocationFilter",
    "InvocationPage",
    "KeyUsage",
    "Overdue",
    "Policies",
    "Queue",
    "Records",
    "Relations",
    "RunningKey",
    "RunningKeys",
    "ResumeEarly",
    "TickClaims",
    "Txn",
    "WorkNotifier",
    "available_backends",
    "bucket_index",
    "cursor_of",
    "dumps_record",
    "dumps_worker",
    "loads_record",
    "loads_worker",
    "matches",
    "open_backend",
    "retention_option",
    "running_keys_of",
    "seq_of",
]
