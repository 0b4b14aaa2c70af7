"""``kubenenc dashboard``: serve the dashboard with uvicorn (called by the umbrella CLI)."""

from __future__ import annotations

import logging

import uvicorn
from kubenenc.backends.registry import open_backend, redact_url

from kubenenc_dashboard.app import create_app
from kubenenc_dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)


def serve(backend_url: str, host: str, port: int, settings: DashboardSettings) -> int:
    """Open the backend, serve until interrupted, close it."""
    backend = open_backend(backend_url)
    try:
        app = create_app(backend, settings)
        mode = "actions enabled (token)" if settings.token else "read-only"
        print(  # noqa: T201
            f"kubenenc dashboard on http://{host}:{port}/ for {redact_url(backend_url)} ({mode})",
            flush=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        backend.close()
    return 0
