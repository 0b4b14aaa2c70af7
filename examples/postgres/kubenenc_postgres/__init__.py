"""An example kubenenc backend: PostgreSQL through psycopg 3 (see README.md)."""

from kubenenc_postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
