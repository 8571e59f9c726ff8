"""The ``order_summaries`` read model: one row per order, for ``GET /v1/orders``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from domain.order import Order, order_number
from projections.base import BatchProjection, BatchView

_COLUMNS = (
    "order_id",
    "tenant_id",
    "number",
    "customer_id",
    "status",
    "currency",
    "total_minor",
    "captured_minor",
    "refunded_minor",
    "lines",
    "source",
    "attempts",
    "decline_code",
    "placed_at",
    "updated_at",
)


class OrderSummariesView(BatchView):
    base_name = "order_summaries"
    table_suffixes = ("orders",)

    def table_statements(self) -> Iterable[Composed]:
        orders = self.table("orders")
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " order_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " number text NOT NULL,"
            " customer_id uuid NOT NULL,"
            " status text NOT NULL,"
            " currency text NOT NULL,"
            " total_minor bigint NOT NULL,"
            " captured_minor bigint NOT NULL,"
            " refunded_minor bigint NOT NULL,"
            " lines jsonb NOT NULL,"
            " source text NOT NULL,"
            " attempts integer NOT NULL,"
            " decline_code text,"
            " placed_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL)"
        ).format(orders)
        for suffix, columns in (
            ("tenant", "tenant_id, placed_at DESC, order_id DESC"),
            ("customer", "tenant_id, customer_id, placed_at DESC, order_id DESC"),
            ("status", "tenant_id, status, placed_at DESC, order_id DESC"),
        ):
            yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (" + columns + ")").format(
                SQL(f'"{self.name}_orders_{suffix}_idx"'), orders
            )

    def load(self, curs: Cursor[DictRow], order_ids: Iterable[UUID]) -> dict[UUID, dict[str, Any]]:
        ids = list(order_ids)
        if not ids:
            return {}
        curs.execute(
            SQL("SELECT * FROM {} WHERE order_id = ANY(%s)").format(self.table("orders")), (ids,)
        )
        return {row["order_id"]: dict(row) for row in curs.fetchall()}

    def write(self, curs: Cursor[DictRow], changes: dict[UUID, dict[str, Any]]) -> None:
        self.upsert(curs, "orders", _COLUMNS, changes.values(), jsonb_columns=frozenset({"lines"}))

    # Queries ----------------------------------------------------------------------------------

    def get(self, tenant_id: str, order_id: UUID) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE order_id = %s AND tenant_id = %s").format(
                    self.table("orders")
                ),
                (order_id, tenant_id),
            )
            row = curs.fetchone()
        return dict(row) if row else None

    def list(
        self,
        tenant_id: str,
        *,
        customer_id: UUID | None = None,
        status: str | None = None,
        after: tuple[datetime, UUID] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the (placed_at, order_id) of the last row already seen."""
        conditions = ["tenant_id = %s"]
        params: list[Any] = [tenant_id]
        if customer_id is not None:
            conditions.append("customer_id = %s")
            params.append(customer_id)
        if status is not None:
            conditions.append("status = %s")
            params.append(status)
        if after is not None:
            conditions.append("(placed_at, order_id) < (%s, %s)")
            params.extend(after)
        params.append(limit)
        statement = SQL(
            "SELECT * FROM {} WHERE " + " AND ".join(conditions) + " "
            "ORDER BY placed_at DESC, order_id DESC LIMIT %s"
        ).format(self.table("orders"))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]


class OrderSummariesProjection(BatchProjection[OrderSummariesView]):
    name = "order_summaries"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Order.Placed,
            Order.PaymentCaptured,
            Order.PaymentDeclined,
            Order.Refunded,
            Order.Cancelled,
        )
    )

    def fold(self, events: Sequence[Any]) -> dict[UUID, dict[str, Any]]:
        placed = {e.originator_id for e in events if isinstance(e, Order.Placed)}
        missing = {e.originator_id for e in events} - placed
        with self.view.datastore.transaction(commit=False) as curs:
            rows = self.view.load(curs, missing)
        for domain_event in events:
            self.apply(domain_event, rows)
        return rows

    @singledispatchmethod
    def apply(self, domain_event: Any, rows: dict[UUID, dict[str, Any]]) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Order.Placed, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id] = {
            "order_id": e.originator_id,
            "tenant_id": e.tenant_id,
            "number": order_number(e.originator_id),
            "customer_id": e.customer_id,
            "status": "pending",
            "currency": e.currency,
            "total_minor": e.total_minor,
            "captured_minor": 0,
            "refunded_minor": 0,
            "lines": e.lines,
            "source": e.source,
            "attempts": 0,
            "decline_code": None,
            "placed_at": e.timestamp,
            "updated_at": e.timestamp,
        }

    @apply.register
    def _(self, e: Order.PaymentCaptured, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row.update(
            captured_minor=e.captured_minor,
            status=e.status,
            attempts=row["attempts"] + 1,
            decline_code=None,
            updated_at=e.timestamp,
        )

    @apply.register
    def _(self, e: Order.PaymentDeclined, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row.update(
            status="declined",
            attempts=row["attempts"] + 1,
            decline_code=e.decline_code,
            updated_at=e.timestamp,
        )

    @apply.register
    def _(self, e: Order.Refunded, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id].update(
            refunded_minor=e.refunded_minor, status=e.status, updated_at=e.timestamp
        )

    @apply.register
    def _(self, e: Order.Cancelled, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id].update(status="cancelled", updated_at=e.timestamp)
