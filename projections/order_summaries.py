"""The ``order_summaries`` read model: one row per order, for ``GET /v1/orders``.

Chargebacks: ``chargebacks`` holds each one as the order does (``domain.order.chargeback_entry``)
and ``charged_back_minor`` the lost ones' sum; the status comes from the events (``disputed``
while one is open). Rows written before these columns existed read as without chargebacks or
parent until a rebuild (``ledger rebuild order_summaries``) fills them in — no chargeback or
upsell was recorded before they existed, so none is missing.
"""

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

from domain.order import (
    Order,
    chargeback_entry,
    history_requested,
    history_resolved,
    order_number,
)
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
    "charged_back_minor",
    "chargebacks",
    "parent_order_id",
    "lines",
    "attribution",
    "source",
    "attempts",
    "decline_code",
    "payment_outcome",
    "last_attempt_id",
    "payment_history",
    "pending_calls",
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
            " charged_back_minor bigint NOT NULL DEFAULT 0,"
            " chargebacks jsonb NOT NULL DEFAULT '[]',"
            " parent_order_id uuid,"
            " lines jsonb NOT NULL,"
            " attribution jsonb,"
            " source text NOT NULL,"
            " attempts integer NOT NULL,"
            " decline_code text,"
            " payment_outcome text,"
            " last_attempt_id uuid,"
            " payment_history jsonb NOT NULL DEFAULT '[]',"
            " pending_calls jsonb NOT NULL DEFAULT '{{}}',"
            " placed_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL)"
        ).format(orders)
        # Tables created before these columns existed (a rebuild fills them in).
        for column in (
            "payment_outcome text",
            "last_attempt_id uuid",
            "payment_history jsonb NOT NULL DEFAULT '[]'",
            "pending_calls jsonb NOT NULL DEFAULT '{{}}'",
            "charged_back_minor bigint NOT NULL DEFAULT 0",
            "chargebacks jsonb NOT NULL DEFAULT '[]'",
            "parent_order_id uuid",
            "attribution jsonb",
        ):
            yield SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS " + column).format(orders)
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
        self.upsert(
            curs,
            "orders",
            _COLUMNS,
            changes.values(),
            jsonb_columns=frozenset(
                {"lines", "attribution", "payment_history", "pending_calls", "chargebacks"}
            ),
        )

    # Queries ----------------------------------------------------------------------------------

    def get(self, tenant_id: str, order_id: UUID) -> dict[str, Any] | None:
        # One SELECT needs no transaction: a pooled connection in autocommit mode.
        with self.datastore.cursor() as curs:
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
        with self.datastore.cursor() as curs:
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]


class OrderSummariesProjection(BatchProjection[OrderSummariesView]):
    name = "order_summaries"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Order.Placed,
            Order.PaymentRequested,
            Order.PaymentOutcomeUnknown,
            Order.PaymentAuthorized,
            Order.PaymentVoided,
            Order.CaptureRequested,
            Order.VoidRequested,
            Order.OperationFailed,
            Order.RefundRequested,
            Order.RefundFailed,
            Order.PaymentCaptured,
            Order.PaymentDeclined,
            Order.Refunded,
            Order.Cancelled,
            Order.ChargebackOpened,
            Order.ChargebackResolved,
        )
    )

    def fold(self, events: Sequence[Any]) -> dict[UUID, dict[str, Any]]:
        placed = {e.originator_id for e in events if isinstance(e, Order.Placed)}
        missing = {e.originator_id for e in events} - placed
        with self.view.reading() as curs:
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
            "charged_back_minor": 0,
            "chargebacks": [],
            "parent_order_id": e.parent_order_id,
            "lines": e.lines,
            "attribution": e.attribution,
            "source": e.source,
            "attempts": 0,
            "decline_code": None,
            "payment_outcome": None,
            "last_attempt_id": None,
            "payment_history": [],
            # Captures, voids and refunds sent to the gateway and not yet answered (for the
            # reconciler): id -> {kind, since}.
            "pending_calls": {},
            "placed_at": e.timestamp,
            "updated_at": e.timestamp,
        }

    @apply.register
    def _(self, e: Order.PaymentRequested, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row.update(
            status="processing",
            attempts=row["attempts"] + 1,
            last_attempt_id=e.attempt_id,
            payment_outcome="requested",
            updated_at=e.timestamp,
        )
        history_requested(
            row["payment_history"],
            attempt_id=e.attempt_id,
            gateway=e.gateway,
            kind=e.kind,
            amount_minor=e.amount_minor,
        )

    @apply.register
    def _(self, e: Order.PaymentOutcomeUnknown, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row.update(payment_outcome="unknown", updated_at=e.timestamp)
        history_resolved(row["payment_history"], attempt_id=e.attempt_id, outcome="unknown")

    @apply.register
    def _(self, e: Order.PaymentAuthorized, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        self._resolve_attempt(row, e.attempt_id)
        history_resolved(row["payment_history"], attempt_id=e.attempt_id, outcome="succeeded")
        row.update(
            status="authorized",
            decline_code=None,
            payment_outcome="succeeded",
            updated_at=e.timestamp,
        )

    @apply.register
    def _(self, e: Order.PaymentVoided, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row["pending_calls"].pop(e.operation_id, None)
        row.update(status="voided", updated_at=e.timestamp)

    @staticmethod
    def _call_sent(row: dict[str, Any], call_id: str, kind: str, at: datetime) -> None:
        row["pending_calls"][call_id] = {"kind": kind, "since": at.isoformat()}

    @apply.register
    def _(self, e: Order.CaptureRequested, rows: dict[UUID, dict[str, Any]]) -> None:
        self._call_sent(rows[e.originator_id], e.operation_id, "capture", e.timestamp)

    @apply.register
    def _(self, e: Order.VoidRequested, rows: dict[UUID, dict[str, Any]]) -> None:
        self._call_sent(rows[e.originator_id], e.operation_id, "void", e.timestamp)

    @apply.register
    def _(self, e: Order.RefundRequested, rows: dict[UUID, dict[str, Any]]) -> None:
        self._call_sent(rows[e.originator_id], e.refund_id, "refund", e.timestamp)

    @apply.register
    def _(self, e: Order.OperationFailed, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id]["pending_calls"].pop(e.operation_id, None)

    @apply.register
    def _(self, e: Order.RefundFailed, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id]["pending_calls"].pop(e.refund_id, None)

    @staticmethod
    def _resolve_attempt(row: dict[str, Any], attempt_id: UUID) -> None:
        # Orders recorded before payment intents existed count their attempt on its outcome.
        if row["last_attempt_id"] != attempt_id:
            row.update(attempts=row["attempts"] + 1, last_attempt_id=attempt_id)

    @apply.register
    def _(self, e: Order.PaymentCaptured, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        self._resolve_attempt(row, e.attempt_id)
        history_resolved(
            row["payment_history"],
            attempt_id=e.attempt_id,
            outcome="succeeded",
            amount_minor=e.amount_minor,
        )
        row["pending_calls"] = {
            k: v for k, v in row["pending_calls"].items() if v["kind"] != "capture"
        }
        row.update(
            captured_minor=e.captured_minor,
            status=e.status,
            decline_code=None,
            payment_outcome="succeeded",
            updated_at=e.timestamp,
        )

    @apply.register
    def _(self, e: Order.PaymentDeclined, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        self._resolve_attempt(row, e.attempt_id)
        history_resolved(
            row["payment_history"],
            attempt_id=e.attempt_id,
            outcome="declined",
            decline_code=e.decline_code,
        )
        row.update(
            status="declined",
            decline_code=e.decline_code,
            payment_outcome="declined",
            updated_at=e.timestamp,
        )

    @apply.register
    def _(self, e: Order.Refunded, rows: dict[UUID, dict[str, Any]]) -> None:
        if e.refund_id is not None:
            rows[e.originator_id]["pending_calls"].pop(e.refund_id, None)
        rows[e.originator_id].update(
            refunded_minor=e.refunded_minor, status=e.status, updated_at=e.timestamp
        )

    @apply.register
    def _(self, e: Order.Cancelled, rows: dict[UUID, dict[str, Any]]) -> None:
        rows[e.originator_id].update(status="cancelled", updated_at=e.timestamp)

    @apply.register
    def _(self, e: Order.ChargebackOpened, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        row["chargebacks"].append(
            chargeback_entry(
                chargeback_id=e.chargeback_id,
                amount_minor=e.amount_minor,
                reason_code=e.reason_code,
            )
        )
        row.update(status="disputed", updated_at=e.timestamp)

    @apply.register
    def _(self, e: Order.ChargebackResolved, rows: dict[UUID, dict[str, Any]]) -> None:
        row = rows[e.originator_id]
        for chargeback in row["chargebacks"]:
            if chargeback["id"] == e.chargeback_id:
                chargeback["status"] = e.outcome
        row.update(charged_back_minor=e.charged_back_minor, status=e.status, updated_at=e.timestamp)
