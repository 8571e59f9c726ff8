"""One active runner per projection: a PostgreSQL session-level advisory lock.

The lock lives on a dedicated connection, so it is held exactly as long as that session: a
process that dies, is killed or loses its connection releases it, and a standby runner polling
``try_acquire`` takes over. The server is told to probe the session with TCP keepalives, so
even a holder whose host vanished without closing its socket loses the lock within seconds.
The key is derived from the schema and the projection name: projections of different schemas
(tenants' shards, tests) never contend.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from adapters.postgres import connect

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5


def advisory_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for a projection of a schema."""
    digest = hashlib.blake2b(f"{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ProjectionLock:
    def __init__(self, database_url: str, schema: str, name: str) -> None:
        self.key = advisory_key(schema, name)
        self.name = name
        self._database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits. Raises ``psycopg.OperationalError`` if
        PostgreSQL is unreachable."""
        if self.held and self.still_held():
            return True
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self._database_url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"ledger projection {self.name}"[:63],
            )
            # Probe an idle holder's socket from the server side: a vanished host's session
            # ends (and the lock is released) in about 5 + 3 * 2 seconds.
            self._conn.execute(
                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                " SET tcp_keepalives_count = 3"
            )
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        self.held = bool(row and row[0])
        return self.held

    def still_held(self) -> bool:
        """False once the lock's session is gone (then the lock is free for a standby)."""
        if not self.held or self._conn is None or self._conn.closed:
            self.held = False
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            logger.warning("projection %s lost its lock connection", self.name)
            self.release()
            return False
        return True

    def release(self) -> None:
        """Unlock, then close the session. The unlock is answered before this returns: closing
        alone ends the session on the server a moment later, and a standby trying at once
        would still find the lock taken."""
        was_held, self.held = self.held, False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                if was_held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            with contextlib.suppress(psycopg.Error):
                conn.close()


@contextlib.contextmanager
def schema_setup_lock(database_url: str, schema: str) -> Iterator[None]:
    """Hold the schema's set-up lock (a session advisory lock) for the block: processes that
    bootstrap at the same time create tables one after the other."""
    with connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        key = advisory_key(schema, "schema-setup")
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
