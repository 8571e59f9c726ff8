"""The ledger's event store: eventsourcing's PostgreSQL application recorder, with group commit.

The library's recorder takes an EXCLUSIVE lock on the events table for each save and holds it
through the commit's fsync, so saves commit one fsync at a time however many callers there are.
This recorder keeps every guarantee — the same table lock (notification ids are issued in commit
order and subscribers never pass over a gap), the same NOTIFY, the same errors and retries — but
commits the events of many concurrent saves in **one** transaction (group commit, as PostgreSQL's
``commit_delay`` and TigerBeetle's batches do):

- A save enqueues its events. If no commit is in flight it commits at once (a lone command waits
  for nothing); otherwise it waits, and the saves that arrived meanwhile form the next batch,
  committed by the oldest of them as soon as the current commit ends.
- The batch is sent as one pipeline — BEGIN, the lock, NOTIFY, one multi-row
  ``INSERT ... RETURNING``, COMMIT — so the section that holds the lock costs one round trip and
  the fsync. Each save gets its own notification ids.
- If that insert hits a taken aggregate version (rare: a concurrent write of the same aggregate),
  the batch is rolled back and committed again the careful way: under the table lock no other
  writer can insert, so the versions the batch would take are checked first, in one query; a save
  whose version is taken (by the log or by a batch-mate) fails alone with eventsourcing's
  ``IntegrityError``, and the others are inserted.
- A batch is all or nothing: if its transaction fails, every save of it gets the error.

eventsourcing's own recorder contract tests run against it
(``tests/integration/test_event_store_contract.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

# One retry covers a pooled connection that died since its last use; more would keep a request
# waiting through an outage (the library retries 10 times), where a fast 503 is the answer.
FAIL_FAST = retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)

# Above this many events one save falls back to the library's path (PostgreSQL allows 65,535
# parameters per statement; commands write a handful of events).
EVENTS_PER_STATEMENT_MAX = 1000
# Saves per batch, and events per batch, at most (the statement's parameter limit).
BATCH_SAVES_MAX = 200


@dataclass(eq=False)
class _Save:
    """One caller's events waiting to be committed, and what became of them."""

    stored_events: Sequence[StoredEvent]
    notification_ids: list[int] | None = None
    error: BaseException | None = None
    lead: bool = False
    woken: threading.Event = field(default_factory=threading.Event)

    @property
    def settled(self) -> bool:
        return self.notification_ids is not None or self.error is not None


class LedgerApplicationRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        self._preamble = SQL(
            "BEGIN; SET LOCAL lock_timeout = '{}s'; LOCK TABLE {} IN EXCLUSIVE MODE; NOTIFY {}"
        ).format(SQL(str(int(self.datastore.lock_timeout))), table, Identifier(self.channel_name))
        # The same preamble as separate statements, for a pipeline (extended protocol).
        self._pipelined_preamble = [
            SQL("BEGIN"),
            SQL("SET LOCAL lock_timeout = '{}s'").format(
                SQL(str(int(self.datastore.lock_timeout)))
            ),
            SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table),
            SQL("NOTIFY {}").format(Identifier(self.channel_name)),
        ]
        self._insert_prefix = SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES "
        ).format(table)
        self._taken_versions = SQL(
            "SELECT originator_id, originator_version, topic, state, notification_id FROM {}"
            " WHERE (originator_id, originator_version) IN"
            " (SELECT * FROM unnest(%s::uuid[], %s::bigint[]))"
        ).format(table)
        self._events_of = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(table)
        self._insert_statements: dict[int, Composed] = {}
        self.batch_saves_max = BATCH_SAVES_MAX
        self._queue: list[_Save] = []
        self._queue_lock = threading.Lock()
        self._committing = False
        # Versions a batch wrote when its connection failed with COMMIT sent: they may be
        # committed. Only their retry may find its own events stored and call it success;
        # storing the same event twice otherwise fails, as the recorder contract requires.
        self._maybe_committed: set[tuple[Any, int]] = set()
        # Counters for tests and benchmarks: how many saves, in how many transactions.
        self.saves_committed = 0
        self.batches_committed = 0

    def select_events_of(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every stored event of these aggregates, in one round trip (for read-ahead)."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._events_of, (list(originator_ids),), prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def _insert_statement(self, count: int) -> Composed:
        statement = self._insert_statements.get(count)
        if statement is None:
            rows = SQL(", ").join([SQL("(%s, %s, %s, %s)")] * count)
            statement = self._insert_prefix + rows + SQL(" RETURNING notification_id")
            self._insert_statements[count] = statement
        return statement

    # The library's reads, with its retry replaced by the fail-fast one.
    select_events = FAIL_FAST(PostgresApplicationRecorder.select_events.__wrapped__)
    select_notifications = FAIL_FAST(PostgresApplicationRecorder.select_notifications.__wrapped__)
    max_notification_id = FAIL_FAST(PostgresApplicationRecorder.max_notification_id.__wrapped__)

    @FAIL_FAST
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # An application's save passes ``tracking=None``; a process recorder's tracking is not ours.
        if (
            not stored_events
            or len(stored_events) > EVENTS_PER_STATEMENT_MAX
            or any(value is not None for value in kwargs.values())
        ):
            return super().insert_events(stored_events, **kwargs)
        save = _Save(stored_events)
        with self._queue_lock:
            self._queue.append(save)
            save.lead = not self._committing
            self._committing = True
        try:
            while not save.settled:
                if save.lead:
                    save.lead = False
                    self._commit_next_batch()
                else:
                    save.woken.wait()
                    save.woken.clear()
        except BaseException:
            self._abandon(save)
            raise
        if save.error is not None:
            raise save.error
        return save.notification_ids

    def _abandon(self, save: _Save) -> None:
        """A caller interrupted while waiting (a signal, a timeout): take its save out of the
        queue, and if it had just been given the lead, pass the lead on — no one else would."""
        with self._queue_lock:
            if save in self._queue:
                self._queue.remove(save)
            if save.lead:
                save.lead = False
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].woken.set()
                else:
                    self._committing = False

    def _commit_next_batch(self) -> None:
        """Commit the oldest waiting saves (this leader's among them), then pass the lead on."""
        with self._queue_lock:
            batch, events = [], 0
            while self._queue and len(batch) < self.batch_saves_max:
                size = len(self._queue[0].stored_events)
                if batch and events + size > EVENTS_PER_STATEMENT_MAX:
                    break
                batch.append(self._queue.pop(0))
                events += size
        try:
            self._commit(batch)
        finally:
            with self._queue_lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].woken.set()
                else:
                    self._committing = False
            for save in batch:
                save.woken.set()

    def _commit(self, batch: list[_Save]) -> None:
        try:
            try:
                self._commit_pipelined(batch)
            except IntegrityError:
                # A version was taken: commit again, failing only the saves that took it.
                for save in batch:
                    save.notification_ids = None
                self._commit_checked(batch)
        except BaseException as error:
            if isinstance(error, (OperationalError, InterfaceError)):
                with self._queue_lock:
                    self._maybe_committed.update(
                        (e.originator_id, e.originator_version)
                        for save in batch
                        for e in save.stored_events
                    )
            for save in batch:
                save.notification_ids = None
                # An interrupt of the leader (a signal) is its own; its batch-mates learn only
                # that the batch's outcome is unknown, never the interrupt itself.
                save.error = save.error or (
                    _copy(error)
                    if isinstance(error, Exception)
                    else OperationalError("the batch was interrupted; its outcome is unknown")
                )
            if not isinstance(error, Exception):
                raise
            return
        self.batches_committed += 1
        self.saves_committed += len(batch)

    def _commit_pipelined(self, batch: list[_Save]) -> None:
        """The whole batch in one round trip (the pooled connection is in autocommit mode)."""
        with self.datastore.get_connection() as conn:
            try:
                with conn.cursor() as curs, conn.cursor() as insert:
                    with conn.pipeline():
                        for statement in self._pipelined_preamble:
                            curs.execute(statement)
                        self._insert(insert, batch, fetch=False)
                        curs.execute("COMMIT")
                    self._assign_ids(batch, insert.fetchall())
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise

    def _commit_checked(self, batch: list[_Save]) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            try:
                curs.execute(self._preamble)
                accepted = self._reject_taken_versions(curs, batch)
                if accepted:
                    self._insert(curs, accepted)
                curs.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise

    def _reject_taken_versions(self, curs: Any, batch: list[_Save]) -> list[_Save]:
        """The saves whose versions are free, in order; the others are settled here.

        A retried save whose earlier try lost its connection with COMMIT sent, and whose every
        event is stored byte for byte, was committed by that try: it is answered with the stored
        ids, not failed. Any other taken version fails its save with ``IntegrityError``.
        """
        ids = [e.originator_id for save in batch for e in save.stored_events]
        versions = [e.originator_version for save in batch for e in save.stored_events]
        curs.execute(self._taken_versions, (ids, versions), prepare=True)
        stored = {(row["originator_id"], row["originator_version"]): row for row in curs.fetchall()}
        taken = set(stored)
        accepted = []
        for save in batch:
            keys = [(e.originator_id, e.originator_version) for e in save.stored_events]
            with self._queue_lock:
                retried = all(key in self._maybe_committed for key in keys)
                self._maybe_committed.difference_update(keys)
            if retried and all(
                _same(stored.get(k), e) for k, e in zip(keys, save.stored_events, strict=True)
            ):
                save.notification_ids = [stored[key]["notification_id"] for key in keys]
                continue
            if set(keys) & taken:
                save.error = IntegrityError(
                    "duplicate key value violates unique constraint (aggregate version taken)"
                )
                continue
            taken |= set(keys)  # a later batch-mate writing the same version loses to this one
            accepted.append(save)
        return accepted

    def _insert(self, curs: Any, saves: list[_Save], *, fetch: bool = True) -> None:
        events = [e for save in saves for e in save.stored_events]
        params: list[Any] = []
        for event in events:
            params += (event.originator_id, event.originator_version, event.topic, event.state)
        # Not prepared inside a pipeline: psycopg may then send the statement again to prepare it.
        prepare = fetch and len(saves) == 1
        curs.execute(self._insert_statement(len(events)), params, prepare=prepare)
        if fetch:
            self._assign_ids(saves, curs.fetchall())

    @staticmethod
    def _assign_ids(saves: list[_Save], rows: list[Any]) -> None:
        # Rows of a multi-row VALUES insert are numbered and returned in the order given.
        ids = [row["notification_id"] for row in rows]
        start = 0
        for save in saves:
            end = start + len(save.stored_events)
            save.notification_ids = ids[start:end]
            start = end


def _same(row: Any, event: StoredEvent) -> bool:
    """Whether a stored row is this very event (same topic and state bytes)."""
    return row is not None and row["topic"] == event.topic and bytes(row["state"]) == event.state


def _copy(error: BaseException) -> BaseException:
    """An error of the same class for each caller (one instance raised in many threads would
    collect everybody's tracebacks)."""
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error.__cause__ or error
    return copy
