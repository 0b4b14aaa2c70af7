"""Backends: the contract, the registry of implementations, and the embedded ones.

Third parties add a backend by registering its class under the entry-point group
``kubenenc.backends`` (name = URL scheme); nothing here needs to change.
"""

from kubenenc.backends.browse import Browse, KeyUsage
from kubenenc.backends.contract import Backend, Coordination, Policies, Queue, Records
from kubenenc.backends.registry import available_backends, open_backend

__all__ = [
    "Backend",
    "Browse",
    "Coordination",
    "KeyUsage",
    "Policies",
    "Queue",
    "Records",
    "available_backends",
    "open_backend",
]
