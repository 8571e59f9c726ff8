"""Which version of each read model serves: blue/green rebuilds switch it in one transaction.

``ledger_projection_versions`` holds one row per projection: its name and the version readers,
the live runner and the position waiter use. A rebuild replays the log into version N+1 beside
the serving N, then ``switch`` moves the row from N to N+1 — only once N+1 has applied the
whole log, checked with the log's table locked against writers for that instant — and notifies
the schema's versions channel. Each process keeps the serving versions in memory (readers pay no
query for them) and refreshes them on that notification, on every (re)connection of its LISTEN
connection and on each poll of its runners, so a lost notification delays a switch by at most a
poll interval. Old versions stay until dropped explicitly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from projections.base import BatchView, schema_channel

VERSIONS_TABLE = "ledger_projection_versions"
SWITCH_LOCK_TIMEOUT_S = 5


class VersionConflict(Exception):
    """The serving version changed under a switch (another rebuild switched first)."""


class ServingVersions:
    def __init__(
        self, datastore: PostgresDatastore, views: Mapping[str, Callable[[int], BatchView]]
    ) -> None:
        """``views`` maps a projection name to a factory of its view at a version."""
        self.datastore = datastore
        self.schema = datastore.schema or "public"
        self.channel = schema_channel("ledger_versions", self.schema)
        self._factories = dict(views)
        self._views: dict[tuple[str, int], BatchView] = {}
        self._serving = dict.fromkeys(self._factories, 1)
        self._changed = threading.Condition()
        self._table = SQL("{}.{}").format(Identifier(self.schema), Identifier(VERSIONS_TABLE))

    def create_tables(self) -> None:
        """The versions table (every projection starts at version 1) and the serving views."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY,"
                    " serving_version integer NOT NULL,"
                    " switched_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._table)
            )
            curs.executemany(
                SQL(
                    "INSERT INTO {} (name, serving_version) VALUES (%s, 1) ON CONFLICT DO NOTHING"
                ).format(self._table),
                [(name,) for name in self._factories],
            )
        self.refresh()
        for name in self._factories:
            self.serving_view(name).create_table()

    @property
    def names(self) -> list[str]:
        return list(self._factories)

    def view(self, name: str, version: int) -> BatchView:
        """The view object of ``name`` at ``version`` (one object per version, reused)."""
        key = (name, version)
        view = self._views.get(key)
        if view is None:
            view = self._views.setdefault(key, self._factories[name](version))
        return view

    def serving_version(self, name: str) -> int:
        return self._serving[name]

    def serving_view(self, name: str) -> BatchView:
        return self.view(name, self._serving[name])

    def refresh(self) -> None:
        """Read the serving versions again (after a notification, a reconnection, a poll)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT name, serving_version FROM {}").format(self._table))
            rows = {row["name"]: row["serving_version"] for row in curs.fetchall()}
        with self._changed:
            for name, version in rows.items():
                if name in self._serving and self._serving[name] != version:
                    self._serving[name] = version
                    self._changed.notify_all()

    def on_notify(self, _payload: str = "") -> None:
        self.refresh()

    def wait_for_version(self, name: str, version: int, timeout_s: float) -> bool:
        """True once this process serves ``version`` of ``name`` (refreshing as it waits)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._serving[name] != version:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not self._changed.wait(min(remaining, 0.25)):
                    self._changed.release()
                    try:
                        self.refresh()
                    finally:
                        self._changed.acquire()
        return True

    def existing_versions(self, name: str) -> list[int]:
        """Versions of ``name`` whose tables exist, found by their tracking tables."""
        base = self.serving_view(name).base_name
        pattern = re.compile(rf"^{re.escape(base)}_v(\d+)_tracking$")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.schema,),
            )
            names = [row["table_name"] for row in curs.fetchall()]
        return sorted(int(m.group(1)) for n in names if (m := pattern.match(n)))

    def switch(
        self,
        name: str,
        from_version: int,
        to_version: int,
        *,
        events_table: Composed,
        application_name: str,
    ) -> bool:
        """Serve ``to_version`` instead of ``from_version``, in one transaction, if it has
        applied every event recorded; False (nothing changed) if it is behind the log.

        The log's table is locked in SHARE mode for the check, so no event can be recorded
        between the check and the switch (writers wait for a few milliseconds).
        Raises ``VersionConflict`` if ``from_version`` is no longer the serving version.
        """
        target = self.view(name, to_version)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SET LOCAL lock_timeout = '{}s'").format(SQL(str(SWITCH_LOCK_TIMEOUT_S)))
            )
            curs.execute(SQL("LOCK TABLE {} IN SHARE MODE").format(events_table))
            curs.execute(SQL("SELECT max(notification_id) AS head FROM {}").format(events_table))
            head = (curs.fetchone() or {}).get("head") or 0
            curs.execute(target.max_tracking_id_statement, (application_name,))
            position = (curs.fetchone() or {}).get("max") or 0
            if position < head:
                return False
            curs.execute(
                SQL(
                    "UPDATE {} SET serving_version = %s, switched_at = now()"
                    " WHERE name = %s AND serving_version = %s"
                ).format(self._table),
                (to_version, name, from_version),
            )
            if curs.rowcount != 1:
                raise VersionConflict(f"{name} no longer serves version {from_version}")
            curs.execute("SELECT pg_notify(%s, %s)", (self.channel, f"{name}:{to_version}"))
        self.refresh()
        return True
