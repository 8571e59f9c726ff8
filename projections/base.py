"""What every read model shares: batched, exactly-once application of events.

A ``BatchView`` is an eventsourcing ``PostgresTrackingRecorder``: its tables and its tracking row
live in the same database, and ``commit_batch`` writes both in one transaction, so a crash
mid-batch leaves neither (exactly-once). It also notifies ``ledger_positions`` in that
transaction, which lets readers wait for their own writes without polling.

An event the projection cannot apply (a poison event) is *parked* in the view's dead-letter
table with its error, together with every later event of the same aggregate, in the same
transaction that advances the position: the read model goes on, nothing is lost, and parked
events can be retried once the cause is fixed.

A ``BatchProjection`` folds a batch of domain events into rows in memory (one dispatch per event
class), then hands the changed rows to its view. Folding never reads the clock or the outside
world, so rebuilding from the same log yields identical tables.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

POSITIONS_CHANNEL = "ledger_positions"


@dataclass(frozen=True, slots=True)
class Parked:
    """A notification set aside, and why."""

    notification_id: int
    originator_id: UUID
    originator_version: int
    topic: str
    error: str


class BatchView(PostgresTrackingRecorder):
    """Tables of one read model plus its tracking row, versioned so it can be rebuilt beside."""

    base_name: ClassVar[str] = ""
    table_suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, datastore: PostgresDatastore, *, version: int = 1) -> None:
        self.version = version
        self.name = f"{self.base_name}_v{version}"
        super().__init__(datastore, tracking_table_name=f"{self.name}_tracking")
        for statement in self.table_statements():
            self.sql_create_statements.append(statement)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " notification_id bigint PRIMARY KEY,"
                " originator_id uuid NOT NULL,"
                " originator_version bigint NOT NULL,"
                " topic text NOT NULL,"
                " error text NOT NULL,"
                " parked_at timestamptz NOT NULL DEFAULT now())"
            ).format(self.dead_letters)
        )

    @abstractmethod
    def table_statements(self) -> Iterable[Composed]:
        """CREATE TABLE/INDEX statements of the read model's own tables."""

    def table(self, suffix: str) -> Composed:
        """A schema-qualified identifier of one of this view's tables."""
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema or "public"), Identifier(f"{self.name}_{suffix}")
        )

    @abstractmethod
    def write(self, curs: Cursor[DictRow], changes: Any) -> None:
        """Write folded changes (inside the batch transaction)."""

    def upsert(
        self,
        curs: Cursor[DictRow],
        suffix: str,
        columns: Sequence[str],
        rows: Iterable[dict[str, Any]],
        *,
        jsonb_columns: frozenset[str] = frozenset(),
    ) -> None:
        """Insert or replace whole rows keyed by the first column (one pipelined executemany).

        JSONB values are encoded with sorted keys, so equal documents are equal bytes.
        """
        placeholders = ", ".join("%s::jsonb" if c in jsonb_columns else "%s" for c in columns)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
        statement = SQL(
            "INSERT INTO {} (" + ", ".join(columns) + ") VALUES (" + placeholders + ")"
            " ON CONFLICT (" + columns[0] + ") DO UPDATE SET " + updates
        ).format(self.table(suffix))
        curs.executemany(
            statement,
            [
                tuple(
                    orjson.dumps(row[c], option=orjson.OPT_SORT_KEYS).decode()
                    if c in jsonb_columns
                    else row[c]
                    for c in columns
                )
                for row in rows
            ],
        )

    @property
    def dead_letters(self) -> Composed:
        return self.table("dead_letters")

    def commit_batch(self, changes: Any, tracking: Tracking, parked: Sequence[Parked] = ()) -> None:
        """Write the changes, park poison events and advance the tracking position atomically.

        Raises eventsourcing's ``IntegrityError`` if the position does not advance (another
        runner got there first); the transaction then rolls back and nothing is applied twice.
        """
        with self.datastore.transaction(commit=True) as curs:
            if changes:
                self.write(curs, changes)
            if parked:
                curs.executemany(
                    SQL(
                        "INSERT INTO {} (notification_id, originator_id, originator_version,"
                        " topic, error) VALUES (%s, %s, %s, %s, %s)"
                    ).format(self.dead_letters),
                    [
                        (p.notification_id, p.originator_id, p.originator_version, p.topic, p.error)
                        for p in parked
                    ],
                )
            self._insert_tracking(curs, tracking)
            curs.execute(
                "SELECT pg_notify(%s, %s)",
                (POSITIONS_CHANNEL, f"{self.name}:{tracking.notification_id}"),
            )

    def commit_retry(self, changes: Any, notification_ids: Sequence[int]) -> None:
        """Write changes folded from parked events and take them out of the dead letters."""
        with self.datastore.transaction(commit=True) as curs:
            if changes:
                self.write(curs, changes)
            self.unpark(curs, notification_ids)

    def position(self, application_name: str) -> int:
        return self.max_tracking_id(application_name) or 0

    def parked(self) -> list[dict[str, Any]]:
        """Parked events, oldest first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} ORDER BY notification_id").format(self.dead_letters))
            return [dict(row) for row in curs.fetchall()]

    def unpark(self, curs: Cursor[DictRow], notification_ids: Sequence[int]) -> None:
        curs.execute(
            SQL("DELETE FROM {} WHERE notification_id = ANY(%s)").format(self.dead_letters),
            (list(notification_ids),),
        )

    def drop(self) -> None:
        """Drop this version's tables (a rebuild replays into a fresh version)."""
        with self.datastore.transaction(commit=True) as curs:
            for table in (*self.owned_tables(), self.dead_letters):
                curs.execute(SQL("DROP TABLE IF EXISTS {} CASCADE").format(table))
            curs.execute(
                SQL("DROP TABLE IF EXISTS {}.{}").format(
                    Identifier(self.datastore.schema or "public"),
                    Identifier(self.tracking_table_name),
                )
            )

    def owned_tables(self) -> Sequence[Composed]:
        """The tables this view owns (for drop and for comparisons)."""
        return [self.table(suffix) for suffix in self.table_suffixes]


TView = TypeVar("TView", bound=BatchView)


class BatchProjection(Projection[TView], Generic[TView]):
    """Folds events into row changes; the view commits them with the tracking position."""

    @abstractmethod
    def fold(self, events: Sequence[Any]) -> Any:
        """Return the row changes for a batch of events (reading current rows as needed)."""

    def process_batch(
        self, events: Sequence[Any], tracking: Tracking, parked: Sequence[Parked] = ()
    ) -> None:
        changes = self.fold(events) if events else None
        self.view.commit_batch(changes, tracking, parked)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One event at a time (the stock runner's interface): a batch of one."""
        self.process_batch([domain_event], tracking)
