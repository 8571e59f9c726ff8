"""eventsourcing's own recorder contract tests, run against the ledger's event store.

``LedgerApplicationRecorder`` replaces the library's insert path, so the library's assertions
about it (insert/select, conflicts, gap-free concurrent notification ids, no interleaving of
concurrent transactions) must hold unchanged.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
)
from psycopg.conninfo import conninfo_to_dict

from adapters.event_store import LedgerApplicationRecorder

pytestmark = pytest.mark.integration


class _OnItsOwnSchema:
    """Each test gets a fresh schema on the test server (pytest fixture in a unittest class)."""

    @pytest.fixture(autouse=True)
    def _schema(self, database_url: str):
        self.database_url = database_url
        self.schema = "contract_" + uuid.uuid4().hex[:10]
        self.datastores: list[PostgresDatastore] = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        yield
        for datastore in self.datastores:
            datastore.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def create_recorder(self) -> LedgerApplicationRecorder:
        params = conninfo_to_dict(self.database_url)
        datastore = PostgresDatastore(
            dbname=str(params.get("dbname") or "postgres"),
            host=str(params.get("host") or "127.0.0.1"),
            port=str(params.get("port") or "5432"),
            user=str(params.get("user") or "postgres"),
            password=str(params.get("password") or ""),
            schema=self.schema,
            pool_size=4,
            max_overflow=4,
            lock_timeout=5,
        )
        self.datastores.append(datastore)
        recorder = LedgerApplicationRecorder(datastore, events_table_name="stored_events")
        recorder.create_table()
        return recorder


class TestLedgerRecorderContract(_OnItsOwnSchema, ApplicationRecorderTestCase):
    def test_performance(self) -> None:
        """Speed lives in bench/, not in tests."""

    def test_concurrent_throughput(self) -> None:
        """Speed lives in bench/, not in tests."""


class TestLedgerRecorderDoesNotInterleave(_OnItsOwnSchema, NonInterleavingNotificationIDsBaseCase):
    pass


class TestLedgerRecorderSerialisesWriters(_OnItsOwnSchema):
    """Inserts take the EXCLUSIVE table lock, so ids are issued in commit order (no gaps seen)."""

    def test_an_insert_waits_for_an_uncommitted_plain_insert_to_finish(self):
        import threading
        import time

        from eventsourcing.persistence import StoredEvent

        recorder = self.create_recorder()
        table = f'"{self.schema}".stored_events'
        blocker = psycopg.connect(self.database_url)
        blocker.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")  # as an open INSERT would
        done = threading.Event()

        def insert() -> None:
            recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "topic", b"{}")])
            done.set()

        writer = threading.Thread(target=insert)
        writer.start()
        with psycopg.connect(self.database_url, autocommit=True) as observer:
            deadline = time.monotonic() + 5
            waiting = False
            while not waiting and time.monotonic() < deadline:
                waiting = (
                    observer.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'ExclusiveLock'"
                        " AND relation = %s::regclass",
                        (table,),
                    ).fetchone()[0]
                    > 0
                )
        assert waiting and not done.is_set()
        blocker.rollback()
        blocker.close()
        writer.join(timeout=10)
        assert done.is_set()
