"""Redis Cluster plumbing for the sharded backend: its URL, finding the master of each
shard's slot, and following a failover.

URL: ``redis+cluster://[[user]:password@]host:port[,host:port...]/?shards=N&prefix=app``
(``rediss+cluster://`` for TLS). The hosts are where discovery starts (any one reachable
node is enough). ``shards`` (default 1) is how many hash tags the app's data is spread over;
the shard of an invocation is computed from it, so it is recorded in the data and another
N is refused (:mod:`kubenenc_redis.layout`); ``kubenenc reshard`` moves the data to a new N
(:mod:`kubenenc_redis.reshard`). ``address_map=host:port=host:port,...`` connects to the
address on the right wherever the cluster names the node on the left (in its slot map and
redirections): for nodes that announce addresses this process cannot reach as they are (a
NAT, port forwards, one proxy per node); nodes it does not name are used as announced.
``prefix``, ``retention`` and ``retry_for`` are as for ``redis://``; any other option is
refused.

Each shard is a whole single-slot Redis backend (:class:`Shard`, the scripts of
:mod:`kubenenc_redis.scripts` unchanged) on a plain connection to the master that serves
its slot, found with redis-py's :class:`~redis.cluster.RedisCluster` (which reads the slot
map). A call that meets a failover (a connection refused, ``MOVED``, ``CLUSTERDOWN``,
``READONLY``, ``TRYAGAIN``, ``MASTERDOWN``) makes the shard read the slot map again and
reconnect to the slot's current master, then goes through the backend's ordinary retry
(same request id, so applied once). The function library is loaded on a master the first
time a call finds it missing (see :meth:`kubenenc_redis.link.Caller.ensure`), so a replica
promoted by a failover gets it on its first call; ``EVALSHA`` stays the fallback.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

import redis
from kubenenc.backends.registry import redact_url
from kubenenc.backends.urloptions import (
    CLOCK,
    DEFAULT_PREFIX,
    DEFAULT_RETENTION,
    PREFIX,
    RETENTION,
    RETRY_FOR,
    clock_option,
    seconds_option,
)
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import WorkerId
from kubenenc.records import InvocationRecord, NewInvocation, Outcome, RegisterResult
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from kubenenc_redis.backend import RedisBackend
from kubenenc_redis.hints import Head
from kubenenc_redis.link import BLOCK_CHUNK, FAULTS, Caller, Link
from kubenenc_redis.options import DEFAULT_RETRY_FOR
from kubenenc_redis.rows import claimed, finish_flags, outcome_arg

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMES = ("redis+cluster", "rediss+cluster")
ADDRESS_MAP = "address_map"
MAX_SHARDS = 1024
REDIRECTS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
)
"""What a call on a slot's former master (or during an election) gets: re-read the slot
map, reconnect, retry."""
NOWHERE = (redis.ConnectionError, redis.TimeoutError, OSError)
"""Faults of a connection to a node."""
UNBLOCKED = "UNBLOCKED"
"""How a blocked ``BLPOP``/``BLMOVE`` ends when its master turns replica: likewise."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is redis-py's cluster client saying it reached no node: a
    ``RedisClusterException`` (not a ``ConnectionError``) whose cause is the last node's
    connection fault. Its other cluster exceptions are mistakes in the call."""
    return isinstance(exc, redis.exceptions.RedisClusterException) and isinstance(
        exc.__cause__, NOWHERE
    )


@dataclasses.dataclass(frozen=True)
class ClusterURL:
    """What a ``redis+cluster://`` URL says."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    prefix: str
    shards: int
    retention: float
    retry_for: float
    shown: str
    clock: str = "server"
    """As for ``redis://``: ``server`` or ``caller`` (see :mod:`kubenenc_redis.options`)."""
    address_map: tuple[tuple[tuple[str, int], tuple[str, int]], ...] = ()
    """(announced address, address to connect to) of each mapped node."""

    def remap(self, address: tuple[str, int]) -> tuple[str, int]:
        """Where to connect for a node the cluster names ``address``."""
        return next((to for node, to in self.address_map if node == address), address)


def parse_cluster_url(url: str) -> ClusterURL:
    """Read ``url``; ConfigurationError saying what to change when it is malformed."""
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if scheme not in SCHEMES or not sep:
        raise ConfigurationError(
            f"bad Redis Cluster URL {shown!r}: use redis+cluster://host:port[,host:port]/"
            "?shards=N (rediss+cluster:// for TLS)"
        )
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ConfigurationError(f"bad Redis Cluster URL {shown!r}: a cluster has database 0 only")
    user_info, at, host_list = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = user_info.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = [_address(item, shown) for item in host_list.split(",")]
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {PREFIX, "shards", RETENTION, RETRY_FOR, CLOCK, ADDRESS_MAP}
    if unknown:
        raise ConfigurationError(
            f"bad Redis Cluster URL {shown!r}: unknown options {sorted(unknown)} (known: "
            "prefix, shards, retention, retry_for, clock, address_map)"
        )
    clock = clock_option(options, shown)
    prefix = options.get(PREFIX, DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}"):
        raise ConfigurationError(
            f"bad Redis Cluster URL {shown!r}: prefix={prefix!r} must be non-empty, no braces"
        )
    raw = options.get("shards", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SHARDS:
        raise ConfigurationError(
            f"bad Redis Cluster URL {shown!r}: shards={raw!r} must be a whole number from 1 "
            f"to {MAX_SHARDS}"
        )
    return ClusterURL(
        tuple(hosts), username, password, scheme.startswith("rediss"), prefix, int(raw),
        seconds_option(options, RETENTION, DEFAULT_RETENTION, shown),
        seconds_option(options, RETRY_FOR, DEFAULT_RETRY_FOR, shown), shown, clock,
        _address_map(options.get(ADDRESS_MAP, ""), shown),
    )  # fmt: skip


def _address(item: str, shown: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) read, or ConfigurationError."""
    host, colon, port = item.strip().rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ConfigurationError(f"bad Redis Cluster URL {shown!r}: {item!r} is not host:port")
    return host.strip("[]"), int(port)


def _address_map(raw: str, shown: str) -> tuple[tuple[tuple[str, int], tuple[str, int]], ...]:
    """``address_map``'s ``host:port=host:port`` pairs, comma-separated, read."""
    pairs = []
    for item in filter(None, raw.split(",")):
        node, equals, to = item.partition("=")
        if not equals:
            raise ConfigurationError(
                f"bad Redis Cluster URL {shown!r}: address_map item {item!r} is not "
                "host:port=host:port"
            )
        pairs.append((_address(node, shown), _address(to, shown)))
    return tuple(pairs)


class SlotMap:
    """Which master serves a key's slot, read through redis-py's cluster client and read
    again on :meth:`refresh` (after a failover). Thread-safe."""

    def __init__(self, url: ClusterURL) -> None:
        self.url = url
        self._lock = threading.Lock()
        try:
            self._cluster = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in url.hosts],  # type: ignore[no-untyped-call]
                username=url.username, password=url.password, ssl=url.tls,
                decode_responses=True, socket_connect_timeout=5.0, socket_timeout=10.0,
                address_remap=url.remap if url.address_map else None,
            )  # fmt: skip
        except redis.AuthenticationError as exc:
            raise ConfigurationError(
                f"Redis Cluster at {url.shown} refused the credentials: {exc}"
            ) from exc
        except (redis.RedisError, OSError, redis.exceptions.RedisClusterException) as exc:
            if isinstance(exc, redis.exceptions.RedisClusterException) and not unreachable(exc):
                raise
            raise BackendUnavailable(f"cannot reach Redis Cluster at {url.shown}: {exc}") from exc

    def master(self, key: str) -> tuple[str, int]:
        """``(host, port)`` of the master serving ``key``'s slot, as last read."""
        with self._lock:
            node = self._cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
        return str(node.host), int(node.port)

    def run(self, command: Callable[[RedisCluster], T]) -> T:
        """``command(client)`` on redis-py's cluster client (which routes each key to its
        slot's master): for the few reads and writes outside the shards' scripts (the
        layout record, a reshard's scans). A fault raises BackendUnavailable."""
        try:
            with self._lock:
                return command(self._cluster)
        except (redis.ConnectionError, redis.TimeoutError, *REDIRECTS) as exc:
            raise BackendUnavailable(f"Redis Cluster at {self.url.shown}: {exc}") from exc
        except redis.exceptions.RedisClusterException as exc:
            if not unreachable(exc):
                raise
            raise BackendUnavailable(f"Redis Cluster at {self.url.shown}: {exc}") from exc

    def node_of(self, key: str) -> redis.Redis:
        """A plain client on the master serving ``key``'s slot (for ``SCAN``, which a
        cluster client sends to every node)."""
        with self._lock:
            node = self._cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self._cluster.get_redis_connection(node)

    def refresh(self) -> None:
        """Read the slot map again from any reachable node (a fault raises; no node
        reachable: see :func:`unreachable`)."""
        with self._lock:
            self._cluster.nodes_manager.initialize()

    def close(self) -> None:
        with self._lock:
            self._cluster.close()


def node_clients(url: ClusterURL, host: str, port: int) -> tuple[redis.Redis, redis.Redis]:
    """The two clients a :class:`Shard` uses on one node: for calls, and for blocking
    reads (a socket timeout longer than the longest block)."""
    common: dict[str, Any] = {
        "host": host, "port": port, "username": url.username, "password": url.password,
        "ssl": url.tls, "decode_responses": True, "socket_connect_timeout": 5.0,
        "socket_keepalive": True, "health_check_interval": 30, "retry": Retry(NoBackoff(), 0),
    }  # fmt: skip
    return (
        redis.Redis(socket_timeout=30.0, **common),
        redis.Redis(socket_timeout=BLOCK_CHUNK + 30.0, **common),
    )


class ShardCaller(Caller):
    """A :class:`~kubenenc_redis.link.Caller` that follows its slot to a new master: a
    redirection (see :data:`REDIRECTS`) or a lost connection re-reads the slot map and
    reconnects the shard before the ordinary retry sends the call again."""

    follow: Callable[[], None] = staticmethod(lambda: None)

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return call()
            except REDIRECTS as exc:
                self._follow(exc)
                raise redis.ConnectionError(f"slot moved: {exc}") from exc
            except redis.ResponseError as exc:
                if not str(exc).startswith(UNBLOCKED):
                    raise
                self._follow(exc)  # a blocked read on a master that became a replica
                raise redis.ConnectionError(f"slot moved: {exc}") from exc
            except FAULTS as exc:
                self._follow(exc)
                raise

        return super().retrying(what, guarded)

    def _follow(self, exc: BaseException) -> None:
        """Follow the slot if the map can be read; if not (no node reachable either), the
        call's own fault stands and the ordinary retry tries again."""
        try:
            self.follow()
        except (redis.RedisError, OSError, redis.exceptions.RedisClusterException) as again:
            if isinstance(again, redis.exceptions.RedisClusterException) and not unreachable(again):
                raise
            log.info("Redis Cluster slot map not readable yet (%s after %s)", again, exc)


class Shard(RedisBackend):
    """One shard of a sharded app: the single-slot backend (every key tagged
    ``{prefix:shard:salt}``) on the master that serves that slot."""

    def __init__(self, url: ClusterURL, slots: SlotMap, prefix: str) -> None:
        self._slots = slots
        self._url = url
        host, port = slots.master("{" + prefix + "}")
        self.node = (host, port)
        client, blocking = node_clients(url, host, port)
        super().__init__(
            client, blocking, prefix=prefix, retention=url.retention, retry_for=url.retry_for,
            clock=url.clock, name=f"{url.shown} shard {prefix}",
        )  # fmt: skip
        caller = ShardCaller(client, self._p, url.retention, url.retry_for, self._name)
        caller.follow = self._follow
        self._caller = caller
        self._moving = threading.Lock()

    def register(
        self, new: Sequence[NewInvocation], now: float, *, floors: Sequence[int] | None = None
    ) -> list[RegisterResult]:
        """See :meth:`RedisBackend.register`; on a shard that a reshard closed (its sequence
        counter set to text, see :mod:`kubenenc_redis.reshard`) the register step fails,
        and the layout record's message says why (a ConfigurationError)."""
        try:
            return super().register(new, now, floors=floors)
        except redis.ResponseError as exc:
            if "not an integer" in str(exc):
                from kubenenc_redis.layout import check_layout  # layout imports this module

                check_layout(self._slots, self._url)
            raise

    def claim_head(
        self, pool: str, worker: WorkerId, limit: int, now: float, bound: str | None
    ) -> tuple[list[InvocationRecord], Head | None]:
        """:meth:`RedisBackend.claim`, and the pool's queue head after it, read in the same
        step (``lua/claim.lua``; None when the reply was a replay, which holds only ids)."""
        reply, replayed = self._caller.run("claim", now, pool, worker, limit, bound or "", 1)
        if replayed:
            return self._claimed_again(reply, worker), None
        head = (reply[2] or None, float(reply[3]) if reply[3] else None)
        return (claimed(reply[:2]) if reply[0] else []), head

    def finish_noting(
        self, outcomes: Sequence[Outcome], worker: WorkerId, now: float
    ) -> tuple[list[bool], str]:
        """:meth:`RedisBackend.finish`, and what else the step did (``lua/finish.lua``):
        ``x`` in the notes when it wrote news for dependents, ``q`` when it put calls in a
        queue."""
        if not outcomes:
            return [], ""
        reply, _ = self._caller.run("finish", now, worker, outcome_arg(outcomes), 1)
        return finish_flags(reply[: len(outcomes)]), str(reply[len(outcomes) :])

    def finish_and_claim_head(
        self,
        outcomes: Sequence[Outcome],
        pool: str,
        worker: WorkerId,
        limit: int,
        now: float,
        bound: str | None,
    ) -> tuple[list[bool], str, list[InvocationRecord], Head | None]:
        """:meth:`RedisBackend.finish_and_claim` with the claim bounded by ``bound``: the
        flags, the finish's notes (as :meth:`finish_noting`), the claimed records and the
        pool's queue head after the step (as :meth:`claim_head`; None after a replay)."""
        reply, replayed = self._caller.run(
            "finish_and_claim", now, pool, worker, max(limit, 0), outcome_arg(outcomes),
            bound or "", 1,
        )  # fmt: skip
        n = len(outcomes)
        flags, notes = finish_flags(reply[0][:n]), str(reply[0][n:])
        if replayed:
            return flags, notes, self._claimed_again(reply[1], worker), None
        head = (reply[3] or None, float(reply[4]) if reply[4] else None)
        return flags, notes, (claimed(reply[1:3]) if reply[1] else []), head

    def _follow(self) -> None:
        """Re-read the slot map; when the slot has a new master, reconnect to it (the
        connections to the old one are closed; calls in flight on them fail and retry)."""
        with self._moving:
            self._slots.refresh()
            node = self._slots.master(self._p)
            if node == self.node:
                return
            log.warning("Redis Cluster shard %s moved from %s to %s", self._p, self.node, node)
            old = (self._r, self._block, self._caller.link, self._block_link)
            self._r, self._block = node_clients(self._url, *node)
            self._caller.link = Link(self._r)
            self._block_link = Link(self._block)
            self._caller.functions = None  # the new master may lack the library
            self._loaded = False
            self.node = node
            old[2].close()
            old[3].close()
            old[0].close()
            old[1].close()


__all__ = [
    "REDIRECTS", "SCHEMES", "ClusterURL", "Shard", "ShardCaller", "SlotMap", "node_clients",
    "parse_cluster_url",
]  # fmt: skip
