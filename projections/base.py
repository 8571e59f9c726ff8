"""What every read model shares: batched, exactly-once application of events.

A ``BatchView`` is an eventsourcing ``PostgresTrackingRecorder``: its tables and its tracking row
live in the same database, and ``commit_batch`` writes both in one transaction, so a crash
mid-batch leaves neither (exactly-once). It also notifies ``ledger_positions`` in that
transaction, which lets readers wait for their own writes without polling.

A ``BatchProjection`` folds a batch of domain events into rows in memory (one dispatch per event
class), then hands the changed rows to its view. Folding never reads the clock or the outside
world, so rebuilding from the same log yields identical tables.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

POSITIONS_CHANNEL = "ledger_positions"


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

    def commit_batch(self, changes: Any, tracking: Tracking) -> None:
        """Write the changes and advance the tracking position atomically.

        Raises eventsourcing's ``IntegrityError`` if the position does not advance (another
        runner got there first); the transaction then rolls back and nothing is applied twice.
        """
        with self.datastore.transaction(commit=True) as curs:
            if changes:
                self.write(curs, changes)
            self._insert_tracking(curs, tracking)
            curs.execute(
                "SELECT pg_notify(%s, %s)",
                (POSITIONS_CHANNEL, f"{self.name}:{tracking.notification_id}"),
            )

    def position(self, application_name: str) -> int:
        return self.max_tracking_id(application_name) or 0

    def drop(self) -> None:
        """Drop this version's tables (a rebuild replays into a fresh version)."""
        with self.datastore.transaction(commit=True) as curs:
            for table in self.owned_tables():
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

    def process_batch(self, events: Sequence[Any], tracking: Tracking) -> None:
        changes = self.fold(events) if events else None
        self.view.commit_batch(changes, tracking)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One event at a time (the stock runner's interface): a batch of one."""
        self.process_batch([domain_event], tracking)
