"""PostgreSQL wiring: the eventsourcing environment for a URL, and small SQL helpers."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import psycopg
from eventsourcing.application import Application
from eventsourcing.utils import Environment, EnvType
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TApplication = TypeVar("TApplication", bound=Application[Any])


def eventsourcing_env(
    database_url: str, *, schema: str, pool_size: int, pool_max_overflow: int
) -> dict[str, str]:
    """The explicit environment handed to eventsourcing (never ``os.environ``: see
    ``configured_by_env_only``).

    ``POSTGRES_ENABLE_DB_FUNCTIONS`` is off, stated here so nothing else can turn it on: with it,
    inserts skip the table lock and a subscriber can pass over a gap that is filled later,
    missing events.
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
        # eventsourcing passes this to psycopg_pool as the wait for a pooled connection: when
        # PostgreSQL is unreachable a request fails after 1 s (and answers 503), not after 10 s.
        "POSTGRES_CONNECT_TIMEOUT": "1",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "CREATE_TABLE": "y",
    }


@functools.cache
def configured_by_env_only(application_class: type[TApplication]) -> type[TApplication]:
    """``application_class``, configured by the env it is given and by nothing else.

    eventsourcing's ``Application.construct_env`` merges ``os.environ`` under the env it is
    given, and its lookups prefer ``<NAME>_<KEY>`` to ``<KEY>``: a ``LEDGER_POSTGRES_SCHEMA`` in
    the process environment would override the schema of our settings, and any stray
    ``POSTGRES_*``, ``CIPHER_*`` or ``PERSISTENCE_MODULE`` variable would configure persistence.
    The subclass keeps the class's own defaults and the snapshotting switch, and drops the
    process environment.
    """

    class ConfiguredByEnvOnly(application_class):  # type: ignore[valid-type,misc]
        name = application_class.name

        def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
            explicit = dict(type(self).env)
            if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
                explicit["IS_SNAPSHOTTING_ENABLED"] = "y"
            explicit.update(env or {})
            return Environment(name, explicit)

    ConfiguredByEnvOnly.__name__ = application_class.__name__
    ConfiguredByEnvOnly.__qualname__ = application_class.__qualname__
    return ConfiguredByEnvOnly


def connect(database_url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A plain connection (for LISTEN, advisory locks and administration)."""
    return psycopg.connect(make_conninfo(database_url), **kwargs)


def ensure_schema(database_url: str, schema: str) -> None:
    with connect(database_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema))
        )
