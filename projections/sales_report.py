"""The ``sales_report`` read model: money taken and given back per UTC day and dimension.

Definitions (one way everywhere):
- *gross* is money captured (``Order.PaymentCaptured``), on the UTC day of the capture;
- *refunds* is money refunded (``Order.Refunded``), on the UTC day of the refund, under the
  dimensions of the order (its country, campaign and the gateway that captured it);
- *chargebacks* is money taken back by chargebacks: a chargeback counts when it is opened
  (``Order.ChargebackOpened``, on its UTC day: the card network debits the merchant then) and
  is reversed when the merchant wins it (``Order.ChargebackResolved`` won, on the day of the
  decision: the network credits the money back); a lost one stays counted. Over any period
  that contains both, chargebacks are therefore the lost ones plus those still open;
- *net* is gross − refunds − chargebacks;
- an order *counts* once, on the day and gateway of its first capture; the average order value
  is net ÷ counted orders, rounded down (floor division), 0 without orders.

Dimensions: the order's currency; the country of its customer at registration; the gateway of
the attempt whose capture it was; its campaign — orders carry no attribution yet, so every
order is in campaign ``none`` until ``Order.Placed`` gains a ``campaign`` field. A dimension the
report never learnt is ``unknown`` (see ``projections.report_rows``).

Tables: ``figures`` (one row per tenant, day, currency, country, gateway and campaign, grown by
increments) and lookups ``customers`` (country), ``orders`` (dimensions, counted) and
``attempts`` (gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.customer import Customer
from domain.order import ChargebackStatus, Order
from domain.payment_attempt import PaymentAttempt
from projections.base import BatchProjection
from projections.report_rows import (
    ORDER_MONEY_EVENTS,
    UNKNOWN,
    Increments,
    Lookup,
    ReportView,
    add,
    defining_first,
    utc_day,
)

NO_CAMPAIGN = "none"
GROUPS = ("day", "country", "gateway", "campaign")
KEY_COLUMNS = ("tenant_id", "day", "currency", "country", "gateway", "campaign")
COUNTERS = ("gross_minor", "refunds_minor", "chargebacks_minor", "orders")
_CUSTOMER_COLUMNS = ("customer_id", "tenant_id", "country")
_ORDER_COLUMNS = ("order_id", "tenant_id", "currency", "country", "campaign", "gateway", "counted")
_ATTEMPT_COLUMNS = ("attempt_id", "tenant_id", "gateway")


class SalesReportView(ReportView):
    base_name = "sales_report"
    table_suffixes = ("figures", "customers", "orders", "attempts")

    def table_statements(self) -> Iterable[Composed]:
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " tenant_id text NOT NULL,"
            " day date NOT NULL,"
            " currency text NOT NULL,"
            " country text NOT NULL,"
            " gateway text NOT NULL,"
            " campaign text NOT NULL,"
            " gross_minor bigint NOT NULL,"
            " refunds_minor bigint NOT NULL,"
            " chargebacks_minor bigint NOT NULL,"
            " orders bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, day, currency, country, gateway, campaign))"
        ).format(self.table("figures"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " customer_id uuid PRIMARY KEY, tenant_id text NOT NULL, country text NOT NULL)"
        ).format(self.table("customers"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " order_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " currency text NOT NULL,"
            " country text NOT NULL,"
            " campaign text NOT NULL,"
            " gateway text,"
            " counted boolean NOT NULL)"
        ).format(self.table("orders"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " attempt_id uuid PRIMARY KEY, tenant_id text NOT NULL, gateway text NOT NULL)"
        ).format(self.table("attempts"))

    def write(self, curs: Cursor[DictRow], changes: SalesChanges) -> None:
        for suffix, columns, lookup in (
            ("customers", _CUSTOMER_COLUMNS, changes.customers),
            ("orders", _ORDER_COLUMNS, changes.orders),
            ("attempts", _ATTEMPT_COLUMNS, changes.attempts),
        ):
            if lookup.changed:
                self.upsert(curs, suffix, columns, lookup.written())
        self.increment(curs, "figures", KEY_COLUMNS, COUNTERS, changes.figures)

    # Queries ----------------------------------------------------------------------------------

    def report(
        self,
        tenant_id: str,
        *,
        date_from: date,
        date_to: date,
        group_by: str,
        currency: str | None = None,
    ) -> list[dict[str, Any]]:
        """Summed figures per group and currency over the days ``date_from`` to ``date_to``
        (both included), ordered by group then currency. ``group_by`` is one of ``GROUPS``."""
        if group_by not in GROUPS:
            raise ValueError(f"group_by is one of {GROUPS}")
        conditions = "tenant_id = %s AND day BETWEEN %s AND %s"
        params: list[Any] = [tenant_id, date_from, date_to]
        if currency is not None:
            conditions += " AND currency = %s"
            params.append(currency)
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
        statement = SQL(
            "SELECT {group} AS grp, currency, "
            + sums
            + " FROM {table} WHERE "
            + conditions
            + " GROUP BY grp, currency ORDER BY grp, currency"
        ).format(group=Identifier(group_by), table=self.table("figures"))
        with self.datastore.cursor() as curs:
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]


@dataclass
class SalesChanges:
    customers: Lookup = field(default_factory=Lookup)
    orders: Lookup = field(default_factory=Lookup)
    attempts: Lookup = field(default_factory=Lookup)
    figures: Increments = field(default_factory=dict)


_DEFINITIONS = (Customer.Registered, PaymentAttempt.Requested)


class SalesReportProjection(BatchProjection[SalesReportView]):
    name = "sales_report"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Customer.Registered,
            PaymentAttempt.Requested,
            Order.Placed,
            Order.PaymentCaptured,
            Order.Refunded,
            Order.ChargebackOpened,
            Order.ChargebackResolved,
        )
    )

    def fold(self, events: Sequence[Any]) -> SalesChanges:
        def new(kind: type) -> set[Any]:
            return {e.originator_id for e in events if isinstance(e, kind)}

        customer_ids = {e.customer_id for e in events if isinstance(e, Order.Placed)}
        order_ids = {e.originator_id for e in events if isinstance(e, ORDER_MONEY_EVENTS)}
        attempt_ids = {e.attempt_id for e in events if isinstance(e, Order.PaymentCaptured)}
        with self.view.reading() as curs:
            changes = SalesChanges(
                customers=self.view.load(
                    curs, "customers", "customer_id", customer_ids - new(Customer.Registered)
                ),
                orders=self.view.load(curs, "orders", "order_id", order_ids - new(Order.Placed)),
                attempts=self.view.load(
                    curs, "attempts", "attempt_id", attempt_ids - new(PaymentAttempt.Requested)
                ),
            )
        for domain_event in defining_first(events, _DEFINITIONS):
            self.apply(domain_event, changes)
        return changes

    @singledispatchmethod
    def apply(self, domain_event: Any, changes: SalesChanges) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Customer.Registered, changes: SalesChanges) -> None:
        changes.customers.put(
            e.originator_id,
            {"customer_id": e.originator_id, "tenant_id": e.tenant_id, "country": e.country},
        )

    @apply.register
    def _(self, e: PaymentAttempt.Requested, changes: SalesChanges) -> None:
        changes.attempts.put(
            e.originator_id,
            {"attempt_id": e.originator_id, "tenant_id": e.tenant_id, "gateway": e.gateway},
        )

    @apply.register
    def _(self, e: Order.Placed, changes: SalesChanges) -> None:
        customer = changes.customers.rows.get(e.customer_id)
        changes.orders.put(
            e.originator_id,
            {
                "order_id": e.originator_id,
                "tenant_id": e.tenant_id,
                "currency": e.currency,
                "country": customer["country"] if customer else UNKNOWN,
                # Orders carry no attribution yet; a later version of the event may.
                "campaign": getattr(e, "campaign", None) or NO_CAMPAIGN,
                "gateway": None,
                "counted": False,
            },
        )

    @apply.register
    def _(self, e: Order.PaymentCaptured, changes: SalesChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        attempt = changes.attempts.rows.get(e.attempt_id)
        gateway = attempt["gateway"] if attempt else UNKNOWN
        first_capture = not order["counted"]
        add(
            changes.figures,
            _key(order, utc_day(e.timestamp), gateway),
            gross_minor=e.amount_minor,
            orders=1 if first_capture else 0,
        )
        if first_capture or order["gateway"] != gateway:
            changes.orders.update(e.originator_id, counted=True, gateway=gateway)

    @apply.register
    def _(self, e: Order.Refunded, changes: SalesChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        key = _key(order, utc_day(e.timestamp), order["gateway"] or UNKNOWN)
        add(changes.figures, key, refunds_minor=e.amount_minor)

    @apply.register
    def _(self, e: Order.ChargebackOpened, changes: SalesChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        key = _key(order, utc_day(e.timestamp), order["gateway"] or UNKNOWN)
        add(changes.figures, key, chargebacks_minor=e.amount_minor)

    @apply.register
    def _(self, e: Order.ChargebackResolved, changes: SalesChanges) -> None:
        if e.outcome != ChargebackStatus.WON.value:
            return  # a lost chargeback was counted when it was opened
        order = changes.orders.rows[e.originator_id]
        key = _key(order, utc_day(e.timestamp), order["gateway"] or UNKNOWN)
        add(changes.figures, key, chargebacks_minor=-e.amount_minor)


def _key(order: dict[str, Any], day: date, gateway: str) -> tuple[Any, ...]:
    return (
        order["tenant_id"],
        day,
        order["currency"],
        order["country"],
        gateway,
        order["campaign"],
    )


def sales_groups(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures of each group and currency (rows of ``SalesReportView.report``)."""
    return [
        {"group": _text(row["grp"]), "currency": row["currency"], **_figures(row)} for row in rows
    ]


def sales_totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures of the whole period per currency, summed over the groups."""
    sums: dict[str, dict[str, int]] = {}
    for row in rows:
        total = sums.setdefault(row["currency"], dict.fromkeys(COUNTERS, 0))
        for counter in COUNTERS:
            total[counter] += row[counter]
    return [{"currency": currency, **_figures(sums[currency])} for currency in sorted(sums)]


def _figures(counters: dict[str, Any]) -> dict[str, int]:
    net_minor = counters["gross_minor"] - counters["refunds_minor"] - counters["chargebacks_minor"]
    orders = counters["orders"]
    return {
        "gross_minor": counters["gross_minor"],
        "refunds_minor": counters["refunds_minor"],
        "chargebacks_minor": counters["chargebacks_minor"],
        "net_minor": net_minor,
        "order_count": orders,
        "average_order_value_minor": net_minor // orders if orders else 0,
    }


def _text(group: Any) -> str:
    return group.isoformat() if isinstance(group, date) else str(group)
