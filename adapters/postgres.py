"""PostgreSQL wiring: the eventsourcing environment for a URL, and small SQL helpers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def eventsourcing_env(
    database_url: str, *, schema: str, pool_size: int, pool_max_overflow: int
) -> dict[str, str]:
    """The explicit environment handed to eventsourcing (never ``os.environ``).

    ``POSTGRES_ENABLE_DB_FUNCTIONS`` is deliberately absent: with it, inserts skip the table
    lock and a subscriber can pass over a gap that is filled later, missing events.
    """
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "adapters.event_store:LedgerApplicationRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_max_overflow),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "CREATE_TABLE": "y",
    }


def connect(database_url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A plain connection (for LISTEN, advisory locks and administration)."""
    return psycopg.connect(make_conninfo(database_url), **kwargs)


def ensure_schema(database_url: str, schema: str) -> None:
    with connect(database_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema))
        )
