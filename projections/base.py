"""What every read model shares: batched, exactly-once application of events.

A ``BatchView`` is an eventsourcing ``PostgresTrackingRecorder``: its tables and its tracking row
live in the same database, and a batch writes both in one transaction (``batch``), so a crash
mid-batch leaves neither. The batch *starts* with a compare-and-set of the tracking row from the
position the batch was read after to its last notification: a runner whose view of the position
is stale (another runner moved it) fails with ``StaleRunner`` before it writes anything, and the
row lock it takes serialises the batch with every other writer of the view (a retry of parked
events), so what the projection reads inside the batch is current. The batch also notifies the
schema's positions channel, which lets readers wait for their own writes without polling.

An event the projection cannot apply (a poison event) is *parked* in the view's dead-letter
table with its error, together with every later event of the same aggregate, in the same
transaction that advances the position: the read model goes on, nothing is lost, and parked
events can be retried once the cause is fixed.

A ``BatchProjection`` folds a batch of domain events into rows in memory (one dispatch per event
class), then hands the changed rows to its view. Folding never reads the clock or the outside
world, so rebuilding from the same log yields identical tables.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar
from uuid import UUID

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

POSITIONS_CHANNEL_PREFIX = "ledger_positions"
IDENTIFIER_LENGTH_MAX_BYTES = 63


def schema_channel(prefix: str, schema: str) -> str:
    """The name of a notification channel of one schema.

    ``NOTIFY`` channels are database-wide; schemas are not. A channel per schema keeps one
    schema's announcements from advancing another schema's waiters. Long schema names are hashed
    to stay within PostgreSQL's identifier length.
    """
    channel = f"{prefix}_{schema}"
    if len(channel.encode()) > IDENTIFIER_LENGTH_MAX_BYTES:
        channel = f"{prefix}_{hashlib.blake2b(schema.encode(), digest_size=12).hexdigest()}"
    return channel


def positions_channel(schema: str) -> str:
    """Where committed read-model positions of ``schema`` are announced (``view_name:position``)."""
    return schema_channel(POSITIONS_CHANNEL_PREFIX, schema)


class StaleRunner(Exception):
    """The tracking row is not at the position a batch started from: another runner moved it.

    The batch's transaction is rolled back; the runner reloads its position from the database.
    """


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
        # The cursor of the batch (or retry) transaction open in this thread, if any: reads made
        # while folding go through it, after the tracking row is locked.
        self._open = threading.local()
        self.positions_channel = positions_channel(datastore.schema or "public")
        tracking = SQL("{}.{}").format(
            Identifier(datastore.schema or "public"), Identifier(self.tracking_table_name)
        )
        self._claim_tracking = SQL(
            "INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)"
            " ON CONFLICT (application_name) DO NOTHING"
        ).format(tracking)
        self._advance_tracking = SQL(
            "UPDATE {} SET notification_id = %s"
            " WHERE application_name = %s AND notification_id = %s"
        ).format(tracking)
        self._lock_tracking = SQL(
            "SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE"
        ).format(tracking)
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
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (originator_id)").format(
                Identifier(f"{self.name}_dead_letters_originator_idx"), self.dead_letters
            )
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

    # Transactions ------------------------------------------------------------------------------

    @contextmanager
    def batch(
        self, application_name: str, start_position: int, end_position: int
    ) -> Iterator[Cursor[DictRow]]:
        """One transaction applying the notifications after ``start_position`` up to
        ``end_position``; it commits when the block exits, rolls back if it raises.

        Raises ``StaleRunner`` (before anything is written) if the tracking row is not at
        ``start_position``: another runner applied those notifications already.
        """
        with self.datastore.transaction(commit=True) as curs:
            if start_position == 0:
                curs.execute(self._claim_tracking, (application_name, end_position))
            else:
                curs.execute(
                    self._advance_tracking, (end_position, application_name, start_position)
                )
            if curs.rowcount != 1:
                raise StaleRunner(
                    f"{self.name}: the tracked position of {application_name} is no longer "
                    f"{start_position}"
                )
            with self._opened(curs, end_position):
                yield curs
            curs.execute(
                "SELECT pg_notify(%s, %s)", (self.positions_channel, f"{self.name}:{end_position}")
            )

    @contextmanager
    def retrying(self, application_name: str) -> Iterator[Cursor[DictRow]]:
        """A transaction that writes without moving the position (a retry of parked events).

        It locks the tracking row first, as a batch does, so it never interleaves with a batch.
        """
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._lock_tracking, (application_name,))
            with self._opened(curs, None):
                yield curs

    @contextmanager
    def _opened(self, curs: Cursor[DictRow], end_position: int | None) -> Iterator[None]:
        self._open.cursor, self._open.end_position = curs, end_position
        try:
            yield
        finally:
            self._open.cursor = self._open.end_position = None

    @contextmanager
    def reading(self) -> Iterator[Cursor[DictRow]]:
        """A cursor for the projection's reads: the open batch's, else a read-only transaction."""
        curs = getattr(self._open, "cursor", None)
        if curs is not None:
            yield curs
            return
        with self.datastore.transaction(commit=False) as curs:
            yield curs

    def commit_batch(self, changes: Any, tracking: Tracking, parked: Sequence[Parked] = ()) -> None:
        """Write the changes and park poison events in the open batch (see ``batch``), which
        commits them together with the tracking position ``tracking``."""
        curs = getattr(self._open, "cursor", None)
        if curs is None or self._open.end_position != tracking.notification_id:
            raise RuntimeError(f"{self.name}: commit_batch runs inside batch(..., {tracking})")
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

    # Positions and dead letters ----------------------------------------------------------------

    def position(self, application_name: str) -> int:
        return self.max_tracking_id(application_name) or 0

    def parked(self) -> list[dict[str, Any]]:
        """Parked events, oldest first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} ORDER BY notification_id").format(self.dead_letters))
            return [dict(row) for row in curs.fetchall()]

    def parked_aggregate_count(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT count(DISTINCT originator_id) AS n FROM {}").format(self.dead_letters)
            )
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    def parked_among(self, curs: Cursor[DictRow], originator_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregates have parked events (read inside the batch)."""
        ids = list(set(originator_ids))
        if not ids:
            return set()
        curs.execute(
            SQL("SELECT DISTINCT originator_id FROM {} WHERE originator_id = ANY(%s)").format(
                self.dead_letters
            ),
            (ids,),
        )
        return {row["originator_id"] for row in curs.fetchall()}

    def unpark(self, curs: Cursor[DictRow], notification_ids: Sequence[int]) -> int:
        """Take these notifications out of the dead letters; return how many were there."""
        curs.execute(
            SQL("DELETE FROM {} WHERE notification_id = ANY(%s)").format(self.dead_letters),
            (list(notification_ids),),
        )
        return curs.rowcount

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
        """Return the row changes for a batch of events (reading rows through ``view.reading``)."""

    def process_batch(
        self, events: Sequence[Any], tracking: Tracking, parked: Sequence[Parked] = ()
    ) -> None:
        """Apply a batch inside the view's open batch transaction (see ``BatchView.batch``)."""
        changes = self.fold(events) if events else None
        self.view.commit_batch(changes, tracking, parked)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Not supported: events are applied in batches, by ``ProjectionRunner``, whose batch
        transaction holds the compare-and-set of the position."""
        raise NotImplementedError("apply events through adapters.projection_runner")

    def for_view(self, view: TView) -> Self:
        """The same projection writing into another version of its view."""
        clone = copy.copy(self)
        clone._view = view
        return clone
