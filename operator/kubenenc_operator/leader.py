"""Leader election with a ``coordination.k8s.io/v1`` Lease.

One operator replica holds the Lease and runs the timers (scaling, statuses, schedules) and
the enforcer sweep; the others wait and take over when the holder stops renewing for
``lease_duration`` seconds. Writes are optimistic (the ``resourceVersion`` read is sent
back), so two replicas can never both believe they took the same expired Lease. The
decision itself is :func:`kubenenc_operator.resources.lease_action`, a pure function.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from kubenenc_operator.kube import KubeApi, KubeError, lease_path
from kubenenc_operator.metrics import Metrics
from kubenenc_operator.resources import LeaseView, lease_action

log = logging.getLogger(__name__)


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _view(lease: dict[str, Any]) -> LeaseView:
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime")
    return LeaseView(
        holder=spec.get("holderIdentity"),
        renewed=dt.datetime.fromisoformat(renewed.replace("Z", "+00:00")) if renewed else None,
        duration=float(spec.get("leaseDurationSeconds") or 15),
    )


class Leadership:
    """Whether this replica leads; :meth:`run` keeps trying to lead until cancelled."""

    def __init__(
        self,
        kube: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.metrics = metrics
        self._leader = False

    @property
    def is_leader(self) -> bool:
        """True while the Lease is ours and was renewed in time."""
        return self._leader

    def _set(self, value: bool) -> None:
        if value != self._leader:
            log.info("%s leadership of lease %s/%s", "took" if value else "lost",
                     self.namespace, self.name)  # fmt: skip
        self._leader = value
        if self.metrics is not None:
            self.metrics.set("kubenenc_operator_leader", 1 if value else 0)

    def try_once(self, now: dt.datetime | None = None) -> bool:
        """One election round (blocking); returns whether this replica leads now."""
        now = now or dt.datetime.now(dt.UTC)
        lease = self.kube.get(lease_path(self.namespace, self.name))
        action = lease_action(_view(lease) if lease else None, self.identity, now)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _micro(now),
        }
        try:
            if action == "create":
                self.kube.create(
                    lease_path(self.namespace),
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": {**spec, "acquireTime": _micro(now)},
                    },
                )
            elif action in ("renew", "take"):
                assert lease is not None
                if action == "take":
                    spec["acquireTime"] = _micro(now)
                    transitions = (lease.get("spec") or {}).get("leaseTransitions") or 0
                    spec["leaseTransitions"] = transitions + 1
                self.kube.put(
                    lease_path(self.namespace, self.name),
                    {**lease, "spec": {**(lease.get("spec") or {}), **spec}},
                )
            else:
                self._set(False)
                return False
        except KubeError as exc:
            if exc.status not in (409, 422):
                raise
            self._set(False)  # someone else wrote first
            return False
        self._set(True)
        return True

    def release(self) -> None:
        """Give the Lease up at shutdown, so another replica takes over at once."""
        if not self._leader:
            return
        lease = self.kube.get(lease_path(self.namespace, self.name))
        if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            spec = {**lease["spec"], "holderIdentity": None}
            try:
                self.kube.put(lease_path(self.namespace, self.name), {**lease, "spec": spec})
            except KubeError:
                log.warning("could not release the lease", exc_info=True)
        self._set(False)

    async def run(self) -> None:
        """Renew (or try to take) the Lease every third of its duration, until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.try_once)
            except Exception:
                log.exception("leader election failed; not leading until the next round")
                self._set(False)
            await asyncio.sleep(max(self.duration / 3, 0.2))
