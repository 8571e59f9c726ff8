"""The ``customer_summaries`` read model: each customer with lifetime value figures.

Definitions (one way everywhere): an order *counts* once money was first captured for it.
``lifetime_value_minor`` is captured minus refunded money of counted orders, per currency;
``average_order_value_minor`` is that value divided by the count of counted orders, rounded
down (floor division: the remainder stays unassigned, never invented). The top-level figures are
in the customer's own currency; other currencies appear in ``value_by_currency``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from domain.customer import Customer
from domain.order import Order
from projections.base import BatchProjection, BatchView

_CUSTOMER_COLUMNS = (
    "customer_id",
    "tenant_id",
    "email",
    "name",
    "country",
    "currency",
    "payment_methods",
    "value_by_currency",
    "first_order_at",
    "last_order_at",
    "registered_at",
)
_ORDER_COLUMNS = ("order_id", "customer_id", "currency", "placed_at", "captured_minor")


class CustomerSummariesView(BatchView):
    base_name = "customer_summaries"
    table_suffixes = ("customers", "orders")

    def table_statements(self) -> Iterable[Composed]:
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " customer_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " email text NOT NULL,"
            " name text NOT NULL,"
            " country text NOT NULL,"
            " currency text NOT NULL,"
            " payment_methods integer NOT NULL,"
            " value_by_currency jsonb NOT NULL,"
            " first_order_at timestamptz,"
            " last_order_at timestamptz,"
            " registered_at timestamptz NOT NULL)"
        ).format(self.table("customers"))
        # Which customer an order belongs to, so order events can find their customer.
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " order_id uuid PRIMARY KEY,"
            " customer_id uuid NOT NULL,"
            " currency text NOT NULL,"
            " placed_at timestamptz NOT NULL,"
            " captured_minor bigint NOT NULL)"
        ).format(self.table("orders"))

    def load(
        self, curs: Cursor[DictRow], suffix: str, key: str, ids: Iterable[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        curs.execute(
            SQL("SELECT * FROM {} WHERE " + key + " = ANY(%s)").format(self.table(suffix)), (ids,)
        )
        return {row[key]: dict(row) for row in curs.fetchall()}

    def write(self, curs: Cursor[DictRow], changes: tuple[dict, dict]) -> None:
        customers, orders = changes
        if customers:
            self.upsert(
                curs,
                "customers",
                _CUSTOMER_COLUMNS,
                customers.values(),
                jsonb_columns=frozenset({"value_by_currency"}),
            )
        if orders:
            self.upsert(curs, "orders", _ORDER_COLUMNS, orders.values())

    def get(self, tenant_id: str, customer_id: UUID) -> dict[str, Any] | None:
        # One SELECT needs no transaction: a pooled connection in autocommit mode.
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE customer_id = %s AND tenant_id = %s").format(
                    self.table("customers")
                ),
                (customer_id, tenant_id),
            )
            row = curs.fetchone()
        return with_value_figures(dict(row)) if row else None


def with_value_figures(row: dict[str, Any]) -> dict[str, Any]:
    """Add lifetime value, order count and average order value in the customer's currency."""
    value = row["value_by_currency"].get(row["currency"], {"net_minor": 0, "orders": 0})
    row["lifetime_value_minor"] = value["net_minor"]
    row["order_count"] = value["orders"]
    row["average_order_value_minor"] = (
        value["net_minor"] // value["orders"] if value["orders"] else 0
    )
    return row


class CustomerSummariesProjection(BatchProjection[CustomerSummariesView]):
    name = "customer_summaries"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Customer.Registered,
            Customer.PaymentMethodAttached,
            Order.Placed,
            Order.PaymentCaptured,
            Order.Refunded,
        )
    )

    def fold(self, events: Sequence[Any]) -> tuple[dict, dict]:
        registered = {e.originator_id for e in events if isinstance(e, Customer.Registered)}
        placed = {e.originator_id for e in events if isinstance(e, Order.Placed)}
        order_ids = {
            e.originator_id
            for e in events
            if isinstance(e, (Order.PaymentCaptured, Order.Refunded))
        } - placed
        with self.view.reading() as curs:
            orders = self.view.load(curs, "orders", "order_id", order_ids)
            customer_ids = {
                e.originator_id for e in events if isinstance(e, Customer.PaymentMethodAttached)
            }
            customer_ids |= {e.customer_id for e in events if isinstance(e, Order.Placed)}
            customer_ids |= {row["customer_id"] for row in orders.values()}
            customers = self.view.load(curs, "customers", "customer_id", customer_ids - registered)
        for domain_event in events:
            self.apply(domain_event, customers, orders)
        return customers, orders

    @singledispatchmethod
    def apply(self, domain_event: Any, customers: dict, orders: dict) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Customer.Registered, customers: dict, orders: dict) -> None:
        customers[e.originator_id] = {
            "customer_id": e.originator_id,
            "tenant_id": e.tenant_id,
            "email": e.email,
            "name": e.name,
            "country": e.country,
            "currency": e.currency,
            "payment_methods": 0,
            "value_by_currency": {},
            "first_order_at": None,
            "last_order_at": None,
            "registered_at": e.timestamp,
        }

    @apply.register
    def _(self, e: Customer.PaymentMethodAttached, customers: dict, orders: dict) -> None:
        customers[e.originator_id]["payment_methods"] += 1

    @apply.register
    def _(self, e: Order.Placed, customers: dict, orders: dict) -> None:
        orders[e.originator_id] = {
            "order_id": e.originator_id,
            "customer_id": e.customer_id,
            "currency": e.currency,
            "placed_at": e.timestamp,
            "captured_minor": 0,
        }

    @apply.register
    def _(self, e: Order.PaymentCaptured, customers: dict, orders: dict) -> None:
        order = orders[e.originator_id]
        customer = customers[order["customer_id"]]
        value = customer["value_by_currency"].setdefault(
            order["currency"], {"net_minor": 0, "orders": 0}
        )
        if order["captured_minor"] == 0:
            value["orders"] += 1
            placed_at = order["placed_at"]
            if customer["first_order_at"] is None or placed_at < customer["first_order_at"]:
                customer["first_order_at"] = placed_at
            if customer["last_order_at"] is None or placed_at > customer["last_order_at"]:
                customer["last_order_at"] = placed_at
        value["net_minor"] += e.amount_minor
        order["captured_minor"] += e.amount_minor

    @apply.register
    def _(self, e: Order.Refunded, customers: dict, orders: dict) -> None:
        order = orders[e.originator_id]
        customer = customers[order["customer_id"]]
        customer["value_by_currency"][order["currency"]]["net_minor"] -= e.amount_minor
