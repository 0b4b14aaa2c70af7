"""kubenenc_operator: the Kubernetes operator of kubenenc.

TaskDefinition, ConcurrencyPolicy and WorkerPool custom resources (``crds/``, generated from
:mod:`kubenenc_operator.models`) reconciled by kopf handlers (:mod:`kubenenc_operator.handlers`);
``kubenenc operator`` runs them. The handlers are thin: what they decide lives in pure
functions (:mod:`kubenenc.scaling`, :mod:`kubenenc_operator.resources`,
:mod:`kubenenc_operator.graph`, :mod:`kubenenc_operator.cron`) tested without a cluster.
"""

__all__: list[str] = []
