"""The no-op task as each peer defines it, for ``bench/peers.py`` (imported only in the
bench-only environment that has Dramatiq and Celery; the broker URL comes from PEER_URL)."""
