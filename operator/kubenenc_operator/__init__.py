"""kubenenc_operator: the Kubernetes operator of kubenenc.

TaskDefinition, ConcurrencyPolicy and WorkerPool custom resources (``crds/``, generated from
:mod:`kubenenc_operator.models`) are watched with kopf (:mod:`kubenenc_operator.handlers`)
and reconciled by the leader's loops (:mod:`kubenenc_operator.store`,
:mod:`kubenenc_operator.pools`, :mod:`~kubenenc_operator.policies`,
:mod:`~kubenenc_operator.taskdefs`, :mod:`~kubenenc_operator.enforcer`, over the shared
:mod:`~kubenenc_operator.context`); ``kubenenc operator`` runs them. What they decide lives in
pure functions (:mod:`kubenenc.scaling`, :mod:`kubenenc_operator.resources`,
:mod:`kubenenc_operator.graph`, :mod:`kubenenc.cron`) tested without a cluster.
"""

__all__: list[str] = []
