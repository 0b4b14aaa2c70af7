"""kubenenc's web dashboard: every invocation, wait graph, worker and pool, in a browser.

A small Starlette app with server-rendered Jinja2 pages, one CSS file and one script of its
own (live updates over server-sent events); the wait graph is drawn as SVG on the server.
Nothing is loaded from elsewhere at run time. It reads a backend through the bounded
queries of :mod:`kubenenc.backends.browse`; it is read-only unless started with a token
(see :mod:`kubenenc_dashboard.security`). Run it with ``kubenenc dashboard``.
"""

from __future__ import annotations

from kubenenc_dashboard.app import create_app
from kubenenc_dashboard.settings import DashboardSettings

__all__ = ["DashboardSettings", "create_app"]
