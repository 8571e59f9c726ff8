"""The sandbox processor's own books: every charge and refund it executed.

``PgSandboxBook`` keeps them in PostgreSQL (table ``sandbox_transactions``), as a real processor's
dashboard would; ``MemorySandboxBook`` keeps them in a list for unit tests. Both are idempotent on
the transaction's idempotency key: a repeated key returns the stored transaction. A refund is
decided while its charge is locked, so two concurrent refunds never give back more than was
charged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from application.ports import ProcessorTransaction


@dataclass(frozen=True, slots=True)
class SandboxTransaction:
    id: str
    account_id: str
    kind: str  # charge | authorization | capture | void | refund
    status: str  # succeeded | declined
    idempotency_key: UUID
    amount_minor: int
    currency: str
    reference: str
    decline_code: str | None
    charge_id: str | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_processor_transaction(self) -> ProcessorTransaction:
        """In the words of reconciliation: a charge is a purchase, an authorization authorize."""
        return ProcessorTransaction(
            transaction_id=self.id,
            idempotency_key=self.idempotency_key,
            kind=_OUR_KINDS.get(self.kind, self.kind),
            amount_minor=self.amount_minor,
            currency=self.currency,
            state=self.status,
            created_at=self.created_at,
            reference=self.reference,
            account_id=self.account_id,
        )


_OUR_KINDS = {"charge": "purchase", "authorization": "authorize"}


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


# Decides a follow-up from its parent (None if unknown) and the parent's succeeded follow-ups.
BuildFollowUp = Callable[[SandboxTransaction | None, list[SandboxTransaction]], SandboxTransaction]


class SandboxBook(Protocol):
    def add_charge(self, charge: SandboxTransaction) -> SandboxTransaction:
        """Keep a charge; if its idempotency key is known, return the stored one instead."""
        ...

    def add_follow_up(
        self, idempotency_key: UUID, parent_id: str, build: BuildFollowUp
    ) -> SandboxTransaction:
        """The stored follow-up of this key (capture, void, refund), or
        ``build(parent, its succeeded follow-ups)`` kept atomically."""
        ...

    def find(self, idempotency_key: UUID) -> SandboxTransaction | None:
        """The transaction made with this idempotency key, if any."""
        ...

    def transactions(
        self, account_id: str | Collection[str], *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, SandboxTransaction]]:
        """(sequence number, transaction) of an account (or of any of several) in execution
        order, after a sequence number."""
        ...

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        """The ``ProcessorBooks`` listing: what was executed on a UTC day, in execution order."""
        ...


class MemorySandboxBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[SandboxTransaction] = []

    def _by_key(self, idempotency_key: UUID) -> SandboxTransaction | None:
        return next((t for t in self._rows if t.idempotency_key == idempotency_key), None)

    def add_charge(self, charge: SandboxTransaction) -> SandboxTransaction:
        with self._lock:
            existing = self._by_key(charge.idempotency_key)
            if existing is None:
                self._rows.append(charge)
            return existing or charge

    def add_follow_up(
        self, idempotency_key: UUID, parent_id: str, build: BuildFollowUp
    ) -> SandboxTransaction:
        with self._lock:
            existing = self._by_key(idempotency_key)
            if existing is not None:
                return existing
            parent = next((t for t in self._rows if t.id == parent_id), None)
            children = [
                t for t in self._rows if t.charge_id == parent_id and t.status == "succeeded"
            ]
            follow_up = build(parent, children)
            self._rows.append(follow_up)
            return follow_up

    def find(self, idempotency_key: UUID) -> SandboxTransaction | None:
        with self._lock:
            return self._by_key(idempotency_key)

    def transactions(
        self, account_id: str | Collection[str], *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, SandboxTransaction]]:
        accounts = _accounts(account_id)
        with self._lock:
            numbered = list(enumerate(self._rows, start=1))
        return [(n, t) for n, t in numbered if n > after and t.account_id in accounts][:limit]

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        start, end = _day_bounds(day)
        with self._lock:
            rows = list(self._rows)
        return [
            t.as_processor_transaction()
            for t in rows
            if start <= t.created_at < end and account_id in (None, t.account_id)
        ]


_COLUMNS = (
    "id, account_id, kind, status, idempotency_key, amount_minor, currency, reference,"
    " decline_code, charge_id, created_at"
)


class PgSandboxBook:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.table: Composed = SQL("{}.{}").format(
            Identifier(datastore.schema or "public"), Identifier("sandbox_transactions")
        )

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " seq bigserial PRIMARY KEY,"
                    " id text NOT NULL UNIQUE,"
                    " account_id text NOT NULL,"
                    " kind text NOT NULL,"
                    " status text NOT NULL,"
                    " idempotency_key uuid NOT NULL UNIQUE,"
                    " amount_minor bigint NOT NULL,"
                    " currency text NOT NULL,"
                    " reference text NOT NULL,"
                    " decline_code text,"
                    " charge_id text,"
                    " created_at timestamptz NOT NULL)"
                ).format(self.table)
            )
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS sandbox_transactions_account_idx"
                    " ON {} (account_id, seq)"
                ).format(self.table)
            )
            # Reconciliation reads a day at a time.
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS sandbox_transactions_created_idx ON {} (created_at)"
                ).format(self.table)
            )

    def _insert(self, curs: Any, txn: SandboxTransaction) -> SandboxTransaction:
        curs.execute(
            SQL(
                "INSERT INTO {} (" + _COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
            ).format(self.table),
            tuple(asdict(txn).values()),
        )
        if curs.rowcount == 1:
            return txn
        found = self._by_key(curs, txn.idempotency_key)
        assert found is not None  # the conflicting row is committed before DO NOTHING returns
        return found

    def _by_key(self, curs: Any, idempotency_key: UUID) -> SandboxTransaction | None:
        curs.execute(
            SQL("SELECT " + _COLUMNS + " FROM {} WHERE idempotency_key = %s").format(self.table),
            (idempotency_key,),
        )
        row = curs.fetchone()
        return SandboxTransaction(**row) if row else None

    def add_charge(self, charge: SandboxTransaction) -> SandboxTransaction:
        # One statement in autocommit mode: one round trip (a repeated key reads the original).
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self._insert(curs, charge)

    def add_follow_up(
        self, idempotency_key: UUID, parent_id: str, build: BuildFollowUp
    ) -> SandboxTransaction:
        with self.datastore.transaction(commit=True) as curs:
            existing = self._by_key(curs, idempotency_key)
            if existing is not None:
                return existing
            # The parent's row lock serialises its follow-ups (two refunds, capture and void).
            curs.execute(
                SQL("SELECT " + _COLUMNS + " FROM {} WHERE id = %s FOR UPDATE").format(self.table),
                (parent_id,),
            )
            row = curs.fetchone()
            curs.execute(
                SQL(
                    "SELECT " + _COLUMNS + " FROM {} WHERE charge_id = %s AND status = 'succeeded'"
                    " ORDER BY seq"
                ).format(self.table),
                (parent_id,),
            )
            children = [SandboxTransaction(**child) for child in curs.fetchall()]
            return self._insert(curs, build(SandboxTransaction(**row) if row else None, children))

    def find(self, idempotency_key: UUID) -> SandboxTransaction | None:
        with self.datastore.cursor() as curs:
            return self._by_key(curs, idempotency_key)

    def transactions(
        self, account_id: str | Collection[str], *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, SandboxTransaction]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT seq, " + _COLUMNS + " FROM {} WHERE account_id = ANY(%s) AND seq > %s"
                    " ORDER BY seq LIMIT %s"
                ).format(self.table),
                (sorted(_accounts(account_id)), after, limit),
            )
            rows = curs.fetchall()
        return [(row.pop("seq"), SandboxTransaction(**row)) for row in (dict(r) for r in rows)]

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        start, end = _day_bounds(day)
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT " + _COLUMNS + " FROM {} WHERE created_at >= %s AND created_at < %s"
                    " AND (%s::text IS NULL OR account_id = %s) ORDER BY seq"
                ).format(self.table),
                (start, end, account_id, account_id),
            )
            rows = curs.fetchall()
        return [SandboxTransaction(**row).as_processor_transaction() for row in rows]


def _accounts(account_id: str | Collection[str]) -> frozenset[str]:
    return frozenset({account_id} if isinstance(account_id, str) else account_id)
