"""``kubenenc dashboard``: serve the dashboard with uvicorn (called by the umbrella CLI)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import uvicorn
from kubenenc.backends.registry import open_backend, redact_url
from kubenenc.errors import ConfigurationError

from kubenenc_dashboard.app import create_app
from kubenenc_dashboard.cluster import ClusterView
from kubenenc_dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)


def serve(
    backend_url: str, host: str, port: int, settings: DashboardSettings,
    kubernetes: bool = False, kubeconfig: str | None = None, namespaces: Sequence[str] = (),
) -> int:  # fmt: skip
    """Open the backend (and, with ``kubernetes``, the cluster), serve until interrupted."""
    cluster = None
    if kubernetes:
        try:
            cluster = ClusterView.connect(kubeconfig, namespaces)
        except ImportError as exc:
            raise ConfigurationError(
                f"--kubernetes needs the kubernetes client ({exc}); "
                'pip install "kubenenc[operator]"'
            ) from exc
    backend = open_backend(backend_url)
    try:
        app = create_app(backend, settings, cluster)
        mode = "actions enabled (token)" if settings.token else "read-only"
        print(  # noqa: T201
            f"kubenenc dashboard on http://{host}:{port}/ for {redact_url(backend_url)} ({mode})",
            flush=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        backend.close()
    return 0
