"""What the dashboard is told at start (read from flags and the environment by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Options of one dashboard process."""

    token: str | None = None
    """Actions (cancel, retry) are enabled only with a token, which a person gives once on
    the sign-in page (or a client as ``Authorization: Bearer <token>``). None: read-only."""
    app: str | None = None
    """Show only this app's invocations (its name); None: every app in the backend."""
    refresh: float = 1.0
    """Seconds between checks for changes that the live pages are told about."""
    page_size: int = 50
    """Invocations per page of the list."""
    budget: int = 2500
    """Stored invocations one page of the list examines at most (see Browse.browse)."""
