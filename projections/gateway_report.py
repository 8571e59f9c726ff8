"""The ``gateway_report`` read model: how each gateway performs, per card brand and UTC day.

Definitions (one way everywhere):
- an *attempt* is a ``PaymentAttempt.Requested`` (a purchase or an authorization), counted on
  the UTC day it was requested; its outcome counts on that same day, whenever it was learnt, so
  approvals and declines of a period always belong to that period's attempts;
- *approvals* are attempts that ``Succeeded``, *declines* those ``Declined`` (also per decline
  code), *outcome_unknown* those whose outcome is unknown right now (a timeout not yet
  reconciled: the count goes down again when the real outcome is recorded);
- *approval rate* is approvals × 10,000 ÷ attempts in basis points, rounded down (0 without
  attempts); attempts still in flight or unknown count as not approved;
- *captured* is money captured (``Order.PaymentCaptured``) by the gateway's attempts and
  *refunded* money refunded (``Order.Refunded``) on orders it captured, each on its own UTC day,
  per currency;
- *captures* counts captures (settled transactions), on the UTC day of each capture;
- *chargebacks* counts chargebacks opened (``Order.ChargebackOpened``, disputes), on the day
  each was opened, whatever their outcome; *chargebacks_minor* is their money, reversed on the
  day a chargeback is won (as the sales report does): both under the gateway and brand that
  captured the order; the *chargeback ratio* is chargebacks × 10,000 ÷ approvals of the period
  (basis points, rounded down);
- the card schemes' monthly ratios are of the calendar month of the period's last day (month to
  date): the *Visa rule* is that month's disputes ÷ that month's settled transactions (captures),
  the *Mastercard rule* that month's chargebacks ÷ the previous calendar month's transactions
  (captures); both in basis points, rounded down, summed over currencies, and each with a band
  (``VISA_BANDS_BPS``, ``MASTERCARD_BANDS_BPS``). Chargebacks with no transactions to divide by
  have no ratio (``None``) and are ``excessive``.

Rows written before ``captures`` existed read 0 until ``ledger rebuild gateway_report``.

The brand is that of the payment method the attempt charged (``Customer.PaymentMethodAttached``);
a gateway or brand the report never learnt is ``unknown``. Figure rows are keyed by tenant;
lookup rows by the globally unique id of what they describe (the ``methods`` lookup names only a
brand: the tenant of a figure is always the attempt's own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from domain.customer import Customer
from domain.order import ChargebackStatus, Order
from domain.payment_attempt import AttemptStatus, PaymentAttempt
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

BASIS_POINTS = 10_000
KEY_COLUMNS = ("tenant_id", "day", "gateway", "brand", "currency")
COUNTERS = (
    "attempts",
    "approvals",
    "declines",
    "outcome_unknown",
    "captured_minor",
    "refunded_minor",
    "chargebacks",
    "chargebacks_minor",
    "captures",
)
# The schemes' monitoring thresholds in basis points: (warning from, excessive from). Visa's
# early-warning level is 0.65 % and its dispute monitoring 1 %; Mastercard monitors merchants
# from 1 % ("Chargeback-Monitored Merchant") and calls 1.5 % excessive ("Excessive Chargeback
# Merchant"). The schemes' minimum counts (75 or 100 a month) are not applied: a small merchant
# sees its trend before it is fined.
VISA_BANDS_BPS = (65, 100)
MASTERCARD_BANDS_BPS = (100, 150)
DECLINE_KEY_COLUMNS = ("tenant_id", "day", "gateway", "brand", "decline_code")
_METHOD_COLUMNS = ("payment_method_id", "brand")
_ATTEMPT_COLUMNS = ("attempt_id", "tenant_id", "day", "gateway", "brand", "currency", "status")
_ORDER_COLUMNS = ("order_id", "tenant_id", "gateway", "brand", "currency")


class GatewayReportView(ReportView):
    base_name = "gateway_report"
    table_suffixes = ("figures", "declines", "methods", "attempts", "orders")

    def table_statements(self) -> Iterable[Composed]:
        counters = ", ".join(f"{c} bigint NOT NULL" for c in COUNTERS)
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} (tenant_id text NOT NULL, day date NOT NULL,"
            " gateway text NOT NULL, brand text NOT NULL, currency text NOT NULL, "
            + counters
            + ", PRIMARY KEY (tenant_id, day, gateway, brand, currency))"
        ).format(self.table("figures"))
        # Tables created before the column existed (a rebuild fills it in).
        yield SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS captures bigint NOT NULL DEFAULT 0"
        ).format(self.table("figures"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} (tenant_id text NOT NULL, day date NOT NULL,"
            " gateway text NOT NULL, brand text NOT NULL, decline_code text NOT NULL,"
            " declines bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, day, gateway, brand, decline_code))"
        ).format(self.table("declines"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} (payment_method_id uuid PRIMARY KEY,"
            " brand text NOT NULL)"
        ).format(self.table("methods"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} (attempt_id uuid PRIMARY KEY, tenant_id text NOT NULL,"
            " day date NOT NULL, gateway text NOT NULL, brand text NOT NULL,"
            " currency text NOT NULL, status text NOT NULL)"
        ).format(self.table("attempts"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} (order_id uuid PRIMARY KEY, tenant_id text NOT NULL,"
            " gateway text NOT NULL, brand text NOT NULL, currency text NOT NULL)"
        ).format(self.table("orders"))

    def write(self, curs: Cursor[DictRow], changes: GatewayChanges) -> None:
        for suffix, columns, lookup in (
            ("methods", _METHOD_COLUMNS, changes.methods),
            ("attempts", _ATTEMPT_COLUMNS, changes.attempts),
            ("orders", _ORDER_COLUMNS, changes.orders),
        ):
            if lookup.changed:
                self.upsert(curs, suffix, columns, lookup.written())
        self.increment(curs, "figures", KEY_COLUMNS, COUNTERS, changes.figures)
        self.increment(curs, "declines", DECLINE_KEY_COLUMNS, ("declines",), changes.declines)

    # Queries ----------------------------------------------------------------------------------

    def report(self, tenant_id: str, *, date_from: date, date_to: date) -> list[dict[str, Any]]:
        """Figures per gateway and brand over the days ``date_from`` to ``date_to`` (both
        included), ordered by gateway then brand; see the module's definitions."""
        where = "WHERE tenant_id = %s AND day BETWEEN %s AND %s"
        params = (tenant_id, date_from, date_to)
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT gateway, brand, currency, "
                    + sums
                    + " FROM {} "
                    + where
                    + " GROUP BY gateway, brand, currency ORDER BY gateway, brand, currency"
                ).format(self.table("figures")),
                params,
            )
            figures = curs.fetchall()
            curs.execute(
                SQL(
                    "SELECT gateway, brand, decline_code, sum(declines)::bigint AS declines"
                    " FROM {} " + where + " GROUP BY gateway, brand, decline_code"
                    " ORDER BY gateway, brand, decline_code"
                ).format(self.table("declines")),
                params,
            )
            declines = curs.fetchall()
            month_from = date_to.replace(day=1)
            # January of year 1 has no previous month: the Mastercard rule then sees none.
            previous_month_from = (
                (month_from - timedelta(days=1)).replace(day=1)
                if month_from > date.min
                else month_from
            )
            curs.execute(
                SQL(
                    "SELECT gateway, brand,"
                    " coalesce(sum(chargebacks) FILTER (WHERE day >= %s), 0)::bigint"
                    " AS chargebacks,"
                    " coalesce(sum(captures) FILTER (WHERE day >= %s), 0)::bigint AS captures,"
                    " coalesce(sum(captures) FILTER (WHERE day < %s), 0)::bigint"
                    " AS previous_captures"
                    " FROM {} WHERE tenant_id = %s AND day BETWEEN %s AND %s"
                    " GROUP BY gateway, brand"
                ).format(self.table("figures")),
                (month_from, month_from, month_from, tenant_id, previous_month_from, date_to),
            )
            months = curs.fetchall()
        rows = gateway_rows(figures, declines)
        add_scheme_ratios(rows, months, month_from)
        return rows


def gateway_rows(figures: Iterable[dict], declines: Iterable[dict]) -> list[dict[str, Any]]:
    """One row per gateway and brand: counts over every currency, money per currency."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row_of(gateway: str, brand: str) -> dict[str, Any]:
        return rows.setdefault(
            (gateway, brand),
            {
                "gateway": gateway,
                "brand": brand,
                **{c: 0 for c in ("attempts", "approvals", "declines", "outcome_unknown")},
                "captures": 0,
                "chargebacks": 0,
                "declines_by_code": {},
                "volume_by_currency": {},
            },
        )

    for figure in figures:
        row = row_of(figure["gateway"], figure["brand"])
        for name in _COUNTS:
            row[name] += figure[name]
        if figure["captured_minor"] or figure["refunded_minor"] or figure["chargebacks_minor"]:
            row["volume_by_currency"][figure["currency"]] = {
                "captured_minor": figure["captured_minor"],
                "refunded_minor": figure["refunded_minor"],
                "chargebacks_minor": figure["chargebacks_minor"],
            }
    for decline in declines:
        row_of(decline["gateway"], decline["brand"])["declines_by_code"][
            decline["decline_code"]
        ] = decline["declines"]
    for row in rows.values():
        row["approval_rate_bps"] = _rate_bps(row["approvals"], row["attempts"])
        row["chargeback_ratio_bps"] = _rate_bps(row["chargebacks"], row["approvals"])
    return [rows[key] for key in sorted(rows)]


def _rate_bps(part: int, whole: int) -> int:
    return part * BASIS_POINTS // whole if whole else 0


_COUNTS = ("attempts", "approvals", "declines", "outcome_unknown", "captures", "chargebacks")


def scheme_ratio(count: int, transactions: int, bands_bps: tuple[int, int]) -> dict[str, Any]:
    """A scheme's ratio in basis points (rounded down) and its band: ``ok`` below the warning
    level, ``warning`` from it, ``excessive`` from the excessive level."""
    if transactions == 0:
        return {"ratio_bps": None if count else 0, "band": "excessive" if count else "ok"}
    ratio_bps = count * BASIS_POINTS // transactions
    warning_bps, excessive_bps = bands_bps
    band = (
        "excessive"
        if ratio_bps >= excessive_bps
        else "warning"
        if ratio_bps >= warning_bps
        else "ok"
    )
    return {"ratio_bps": ratio_bps, "band": band}


def add_scheme_ratios(
    rows: list[dict[str, Any]], months: Iterable[dict[str, Any]], month_from: date
) -> None:
    """Give each row the Visa and Mastercard monthly ratios of its gateway and brand."""
    by_key = {(m["gateway"], m["brand"]): m for m in months}
    for row in rows:
        month = by_key.get((row["gateway"], row["brand"]))
        chargebacks = month["chargebacks"] if month else 0
        captures = month["captures"] if month else 0
        previous_captures = month["previous_captures"] if month else 0
        row["scheme_ratios"] = {
            "month": month_from.strftime("%Y-%m"),
            "visa": {
                "disputes": chargebacks,
                "transactions": captures,
                **scheme_ratio(chargebacks, captures, VISA_BANDS_BPS),
            },
            "mastercard": {
                "chargebacks": chargebacks,
                "previous_month_transactions": previous_captures,
                **scheme_ratio(chargebacks, previous_captures, MASTERCARD_BANDS_BPS),
            },
        }


@dataclass
class GatewayChanges:
    methods: Lookup = field(default_factory=Lookup)
    attempts: Lookup = field(default_factory=Lookup)
    orders: Lookup = field(default_factory=Lookup)
    figures: Increments = field(default_factory=dict)
    declines: Increments = field(default_factory=dict)


_OUTCOMES = (PaymentAttempt.Succeeded, PaymentAttempt.Declined, PaymentAttempt.OutcomeUnknown)
_DEFINITIONS = (Customer.PaymentMethodAttached, PaymentAttempt.Requested)


class GatewayReportProjection(BatchProjection[GatewayReportView]):
    name = "gateway_report"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Customer.PaymentMethodAttached,
            PaymentAttempt.Requested,
            *_OUTCOMES,
            Order.Placed,
            Order.PaymentCaptured,
            Order.Refunded,
            Order.ChargebackOpened,
            Order.ChargebackResolved,
        )
    )

    def fold(self, events: Sequence[Any]) -> GatewayChanges:
        attached = {
            e.payment_method_id for e in events if isinstance(e, Customer.PaymentMethodAttached)
        }
        requested = {e.originator_id for e in events if isinstance(e, PaymentAttempt.Requested)}
        method_ids = {
            e.payment_method_id for e in events if isinstance(e, PaymentAttempt.Requested)
        }
        attempt_ids = {e.originator_id for e in events if isinstance(e, _OUTCOMES)}
        attempt_ids |= {e.attempt_id for e in events if isinstance(e, Order.PaymentCaptured)}
        placed = {e.originator_id for e in events if isinstance(e, Order.Placed)}
        order_ids = {e.originator_id for e in events if isinstance(e, ORDER_MONEY_EVENTS)}
        with self.view.reading() as curs:
            changes = GatewayChanges(
                methods=self.view.load(curs, "methods", "payment_method_id", method_ids - attached),
                attempts=self.view.load(curs, "attempts", "attempt_id", attempt_ids - requested),
                orders=self.view.load(curs, "orders", "order_id", order_ids - placed),
            )
        for domain_event in defining_first(events, _DEFINITIONS):
            self.apply(domain_event, changes)
        return changes

    @singledispatchmethod
    def apply(self, domain_event: Any, changes: GatewayChanges) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Customer.PaymentMethodAttached, changes: GatewayChanges) -> None:
        changes.methods.put(
            e.payment_method_id,
            {"payment_method_id": e.payment_method_id, "brand": e.brand},
        )

    @apply.register
    def _(self, e: PaymentAttempt.Requested, changes: GatewayChanges) -> None:
        method = changes.methods.rows.get(e.payment_method_id)
        attempt = {
            "attempt_id": e.originator_id,
            "tenant_id": e.tenant_id,
            "day": utc_day(e.timestamp),
            "gateway": e.gateway or UNKNOWN,
            "brand": method["brand"] if method else UNKNOWN,
            "currency": e.currency,
            "status": AttemptStatus.REQUESTED.value,
        }
        changes.attempts.put(e.originator_id, attempt)
        add(changes.figures, _key(attempt, attempt["day"]), attempts=1)

    @apply.register
    def _(self, e: PaymentAttempt.Succeeded, changes: GatewayChanges) -> None:
        self._resolve(e, changes, AttemptStatus.SUCCEEDED, approvals=1)

    @apply.register
    def _(self, e: PaymentAttempt.Declined, changes: GatewayChanges) -> None:
        attempt = self._resolve(e, changes, AttemptStatus.DECLINED, declines=1)
        if attempt is not None:
            key = (*_key(attempt, attempt["day"])[:4], e.decline_code)
            add(changes.declines, key, declines=1)

    @apply.register
    def _(self, e: PaymentAttempt.OutcomeUnknown, changes: GatewayChanges) -> None:
        attempt = changes.attempts.rows.get(e.originator_id)
        if attempt is not None and attempt["status"] == AttemptStatus.REQUESTED.value:
            add(changes.figures, _key(attempt, attempt["day"]), outcome_unknown=1)
            changes.attempts.update(e.originator_id, status=AttemptStatus.OUTCOME_UNKNOWN.value)

    @staticmethod
    def _resolve(
        e: Any, changes: GatewayChanges, status: AttemptStatus, **counts: int
    ) -> dict[str, Any] | None:
        """Count an attempt's outcome on its request day (once); None if it was never seen."""
        attempt = changes.attempts.rows.get(e.originator_id)
        if attempt is None or attempt["status"] in (
            AttemptStatus.SUCCEEDED.value,
            AttemptStatus.DECLINED.value,
        ):
            return None
        if attempt["status"] == AttemptStatus.OUTCOME_UNKNOWN.value:
            counts["outcome_unknown"] = -1  # the unknown outcome is known now
        add(changes.figures, _key(attempt, attempt["day"]), **counts)
        changes.attempts.update(e.originator_id, status=status.value)
        return attempt

    @apply.register
    def _(self, e: Order.Placed, changes: GatewayChanges) -> None:
        # The currency, for a capture whose attempt the report would not know.
        changes.orders.put(
            e.originator_id,
            {
                "order_id": e.originator_id,
                "tenant_id": e.tenant_id,
                "gateway": UNKNOWN,
                "brand": UNKNOWN,
                "currency": e.currency,
            },
        )

    @apply.register
    def _(self, e: Order.PaymentCaptured, changes: GatewayChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        attempt = changes.attempts.rows.get(e.attempt_id)
        gateway, brand = (attempt["gateway"], attempt["brand"]) if attempt else (UNKNOWN, UNKNOWN)
        if (order["gateway"], order["brand"]) != (gateway, brand):
            # Refunds of the order belong to the gateway and brand that captured it.
            changes.orders.update(e.originator_id, gateway=gateway, brand=brand)
        add(
            changes.figures,
            _key(order, utc_day(e.timestamp)),
            captured_minor=e.amount_minor,
            captures=1,
        )

    @apply.register
    def _(self, e: Order.Refunded, changes: GatewayChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        add(changes.figures, _key(order, utc_day(e.timestamp)), refunded_minor=e.amount_minor)

    @apply.register
    def _(self, e: Order.ChargebackOpened, changes: GatewayChanges) -> None:
        order = changes.orders.rows[e.originator_id]
        add(
            changes.figures,
            _key(order, utc_day(e.timestamp)),
            chargebacks=1,
            chargebacks_minor=e.amount_minor,
        )

    @apply.register
    def _(self, e: Order.ChargebackResolved, changes: GatewayChanges) -> None:
        if e.outcome != ChargebackStatus.WON.value:
            return  # a lost chargeback was counted when it was opened
        order = changes.orders.rows[e.originator_id]
        add(
            changes.figures,
            _key(order, utc_day(e.timestamp)),
            chargebacks_minor=-e.amount_minor,
        )


def _key(row: dict[str, Any], day: date) -> tuple[Any, ...]:
    return (row["tenant_id"], day, row["gateway"], row["brand"], row["currency"])
