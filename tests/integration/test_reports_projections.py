"""The sales and gateway reports fold a known history into the figures computed by hand, and a
blue/green rebuild with other batch boundaries writes identical rows.

The history is made of real domain events (the aggregates' own methods), stamped with chosen
days and recorded in the log on PostgreSQL, so the figures per UTC day can be checked by hand.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from psycopg.sql import SQL

from adapters.bootstrap import Services
from adapters.rebuild import rebuild
from domain.customer import CardDetails, Customer
from domain.order import Order
from domain.payment_attempt import PaymentAttempt
from projections.sales_report import sales_groups, sales_totals

pytestmark = pytest.mark.integration

MARCH_1, MARCH_4 = date(2026, 3, 1), date(2026, 3, 4)


class History:
    """Domain events stamped with the day they happened, recorded in the log in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def on(self, day: int, *aggregates: Any) -> None:
        when = datetime(2026, 3, day, 12, tzinfo=UTC)
        for aggregate in aggregates:
            self.events += [replace(e, timestamp=when) for e in aggregate.collect_events()]

    def customer(self, day: int, tenant: str, country: str, brand: str) -> tuple[Customer, UUID]:
        customer = Customer.register(
            tenant_id=tenant, email="b@example.com", name="B", country=country, currency="USD"
        )
        method_id = uuid4()
        card = CardDetails(
            token=f"tok_{method_id.hex}",
            brand=brand,
            last4="4242",
            bin="424242",
            exp_month=12,
            exp_year=2031,
        )
        customer.attach_payment_method(method_id, card)
        self.on(day, customer)
        return customer, method_id

    def order(self, day: int, customer: Customer, currency: str, total_minor: int) -> Order:
        order = Order.place(
            tenant_id=customer.tenant_id,
            customer_id=customer.id,
            currency=currency,
            lines=[{"sku": "SKU", "quantity": 1, "unit_price_minor": total_minor}],
        )
        self.on(day, order)
        return order

    def attempt(self, day: int, order: Order, method_id: UUID, gateway: str) -> PaymentAttempt:
        attempt = PaymentAttempt(
            tenant_id=order.tenant_id,
            order_id=order.id,
            payment_method_id=method_id,
            kind="purchase",
            gateway=gateway,
            amount_minor=order.total_minor,
            currency=order.currency,
        )
        order.request_payment(attempt_id=attempt.id)
        self.on(day, attempt, order)
        return attempt

    def captured(self, day: int, order: Order, attempt: PaymentAttempt) -> None:
        attempt.succeed(transaction_id=f"ch_{attempt.id.hex}")
        order.record_capture(attempt_id=attempt.id, amount_minor=order.total_minor)
        self.on(day, attempt, order)

    def declined(self, day: int, order: Order, attempt: PaymentAttempt, code: str) -> None:
        attempt.decline(decline_code=code, message=code, transaction_id=None)
        order.record_decline(attempt_id=attempt.id, decline_code=code)
        self.on(day, attempt, order)

    def unknown(self, day: int, order: Order, attempt: PaymentAttempt) -> None:
        attempt.record_outcome_unknown(reason="timeout")
        order.record_payment_outcome_unknown(attempt_id=attempt.id)
        self.on(day, attempt, order)

    def refunded(self, day: int, order: Order, amount_minor: int) -> None:
        refund_id = str(uuid4())
        order.request_refund(refund_id=refund_id, amount_minor=amount_minor, reason=None)
        order.complete_refund(refund_id=refund_id)
        self.on(day, order)

    def record(self, services: Services) -> None:
        mapper = services.ledger.mapper
        services.ledger.recorder.insert_events([mapper.to_stored_event(e) for e in self.events])


def march_history() -> History:
    """Acme: US customer paying by Visa in USD, German customer by Mastercard in EUR, over four
    days, through gateways alpha and beta; Globex: one order, to prove tenant isolation."""
    h = History()
    us, us_visa = h.customer(1, "acme", "US", "visa")
    de, de_mastercard = h.customer(1, "acme", "DE", "mastercard")
    # 1 March: 10,000 USD through alpha; a quarter of it refunded on 3 March.
    o1 = h.order(1, us, "USD", 10_000)
    h.captured(1, o1, h.attempt(1, o1, us_visa, "alpha"))
    # 2 March: alpha declines, beta captures 5,000 USD; 4,999 refunded on 3 March.
    o2 = h.order(2, us, "USD", 5_000)
    h.declined(2, o2, h.attempt(2, o2, us_visa, "alpha"), "card_declined")
    h.captured(2, o2, h.attempt(2, o2, us_visa, "beta"))
    h.refunded(3, o1, 2_500)
    h.refunded(3, o2, 4_999)
    # 2 March: beta times out; the capture of 7,001 EUR is learnt on 4 March.
    o3 = h.order(2, de, "EUR", 7_001)
    a4 = h.attempt(2, o3, de_mastercard, "beta")
    h.unknown(2, o3, a4)
    h.captured(4, o3, a4)
    # 3 March: alpha declines a Mastercard for insufficient funds; a Visa attempt stays unknown.
    o4 = h.order(3, de, "EUR", 3_000)
    h.declined(3, o4, h.attempt(3, o4, de_mastercard, "alpha"), "insufficient_funds")
    o5 = h.order(3, us, "USD", 999)
    h.unknown(3, o5, h.attempt(3, o5, us_visa, "alpha"))
    globex, globex_visa = h.customer(1, "globex", "FR", "visa")
    g1 = h.order(1, globex, "USD", 4_000)
    h.captured(1, g1, h.attempt(1, g1, globex_visa, "alpha"))
    return h


@pytest.fixture
def reported(services: Services) -> Services:
    march_history().record(services)
    for name in ("sales_report", "gateway_report"):
        services.runners[name].catch_up()
    return services


def sales(services: Services, group_by: str, **kwargs: Any) -> list[dict[str, Any]]:
    period = {"date_from": MARCH_1, "date_to": MARCH_4, **kwargs}
    rows = services.sales_report.report("acme", group_by=group_by, **period)
    return [
        (g["group"], g["currency"], g["gross_minor"], g["refunds_minor"], g["net_minor"])
        + (g["order_count"], g["average_order_value_minor"])
        for g in sales_groups(rows)
    ]


def test_sales_per_day_count_money_on_the_day_it_moved(reported: Services) -> None:
    # (group, currency, gross, refunds, net, orders, average order value)
    assert sales(reported, "day") == [
        ("2026-03-01", "USD", 10_000, 0, 10_000, 1, 10_000),
        ("2026-03-02", "USD", 5_000, 0, 5_000, 1, 5_000),
        ("2026-03-03", "USD", 0, 7_499, -7_499, 0, 0),
        ("2026-03-04", "EUR", 7_001, 0, 7_001, 1, 7_001),
    ]


def test_sales_per_country_gateway_and_campaign(reported: Services) -> None:
    assert sales(reported, "country") == [
        ("DE", "EUR", 7_001, 0, 7_001, 1, 7_001),
        # 7,501 net over two orders: 3,750.5 rounded down.
        ("US", "USD", 15_000, 7_499, 7_501, 2, 3_750),
    ]
    # A refund belongs to the gateway that captured the order.
    assert sales(reported, "gateway") == [
        ("alpha", "USD", 10_000, 2_500, 7_500, 1, 7_500),
        ("beta", "EUR", 7_001, 0, 7_001, 1, 7_001),
        ("beta", "USD", 5_000, 4_999, 1, 1, 1),
    ]
    assert sales(reported, "campaign") == [
        ("none", "EUR", 7_001, 0, 7_001, 1, 7_001),
        ("none", "USD", 15_000, 7_499, 7_501, 2, 3_750),
    ]


def test_sales_of_a_shorter_period_one_currency_and_the_totals(reported: Services) -> None:
    one_day = {"date_from": date(2026, 3, 3), "date_to": date(2026, 3, 3)}
    assert sales(reported, "day", **one_day) == [("2026-03-03", "USD", 0, 7_499, -7_499, 0, 0)]
    assert sales(reported, "country", currency="EUR") == [("DE", "EUR", 7_001, 0, 7_001, 1, 7_001)]
    rows = reported.sales_report.report(
        "acme", date_from=MARCH_1, date_to=MARCH_4, group_by="gateway"
    )
    assert [(t["currency"], t["net_minor"], t["order_count"]) for t in sales_totals(rows)] == [
        ("EUR", 7_001, 1),
        ("USD", 7_501, 2),
    ]


def test_each_tenant_sees_only_its_own_figures(reported: Services) -> None:
    rows = reported.sales_report.report(
        "globex", date_from=MARCH_1, date_to=MARCH_4, group_by="country"
    )
    assert [(r["grp"], r["gross_minor"], r["orders"]) for r in rows] == [("FR", 4_000, 1)]
    gateways = reported.gateway_report.report("globex", date_from=MARCH_1, date_to=MARCH_4)
    assert [(g["gateway"], g["brand"], g["attempts"]) for g in gateways] == [("alpha", "visa", 1)]
    assert (
        reported.sales_report.report("nobody", date_from=MARCH_1, date_to=MARCH_4, group_by="day")
        == []
    )


def _gateway(row: dict[str, Any]) -> tuple:
    return (
        row["gateway"],
        row["brand"],
        row["attempts"],
        row["approvals"],
        row["declines"],
        row["outcome_unknown"],
        row["approval_rate_bps"],
        row["declines_by_code"],
        {
            currency: (v["captured_minor"], v["refunded_minor"])
            for currency, v in row["volume_by_currency"].items()
        },
        (row["chargebacks"], row["chargeback_ratio_bps"]),
    )


def test_gateway_figures_per_gateway_and_brand(reported: Services) -> None:
    rows = reported.gateway_report.report("acme", date_from=MARCH_1, date_to=MARCH_4)
    assert [_gateway(row) for row in rows] == [
        ("alpha", "mastercard", 1, 0, 1, 0, 0, {"insufficient_funds": 1}, {}, (0, 0)),
        # Three attempts, one approved: 3,333 bps (rounded down); one still unknown.
        (
            "alpha",
            "visa",
            3,
            1,
            1,
            1,
            3_333,
            {"card_declined": 1},
            {"USD": (10_000, 2_500)},
            (0, 0),
        ),
        # The timeout was reconciled: no longer unknown, approved.
        ("beta", "mastercard", 1, 1, 0, 0, 10_000, {}, {"EUR": (7_001, 0)}, (0, 0)),
        ("beta", "visa", 1, 1, 0, 0, 10_000, {}, {"USD": (5_000, 4_999)}, (0, 0)),
    ]


def test_an_outcome_counts_on_its_attempts_day_and_money_on_its_own(reported: Services) -> None:
    march_2 = date(2026, 3, 2)
    rows = reported.gateway_report.report("acme", date_from=march_2, date_to=march_2)
    assert [_gateway(row) for row in rows] == [
        ("alpha", "visa", 1, 0, 1, 0, 0, {"card_declined": 1}, {}, (0, 0)),
        # Requested on 2 March and approved (on 4 March): its capture is not in this period.
        ("beta", "mastercard", 1, 1, 0, 0, 10_000, {}, {}, (0, 0)),
        ("beta", "visa", 1, 1, 0, 0, 10_000, {}, {"USD": (5_000, 0)}, (0, 0)),
    ]


def _all_rows(view: Any) -> dict[str, list[tuple]]:
    tables = {}
    with view.datastore.transaction(commit=False) as curs:
        for suffix in view.table_suffixes:
            curs.execute(SQL("SELECT * FROM {}").format(view.table(suffix)))
            tables[suffix] = sorted(tuple(map(str, row.values())) for row in curs.fetchall())
    return tables


@pytest.mark.parametrize("name", ["sales_report", "gateway_report"])
def test_a_rebuild_in_other_batches_writes_identical_rows(reported: Services, name: str) -> None:
    live = reported.runners[name]
    before = _all_rows(live.view)
    assert before["figures"]  # the history reached the report
    live.batch_size = 3  # the rebuild copies it: other batch boundaries than the live run's

    assert rebuild(live, reported.serving, reported.database_url) == 2

    assert reported.serving.serving_view(name).name == f"{name}_v2"
    assert _all_rows(reported.serving.serving_view(name)) == before


def test_a_capture_saved_before_its_attempt_in_one_batch_finds_the_gateway(
    services: Services,
) -> None:
    h = History()
    customer, visa = h.customer(1, "acme", "US", "visa")
    order = h.order(1, customer, "USD", 1_200)
    attempt = PaymentAttempt(
        tenant_id="acme",
        order_id=order.id,
        payment_method_id=visa,
        kind="purchase",
        gateway="alpha",
        amount_minor=1_200,
        currency="USD",
    )
    order.request_payment(attempt_id=attempt.id)
    attempt.succeed(transaction_id="ch_1")
    order.record_capture(attempt_id=attempt.id, amount_minor=1_200)
    h.on(1, order, attempt)  # one save: the order's events first, then the attempt's
    lost = h.order(1, customer, "USD", 300)
    unseen = PaymentAttempt(
        tenant_id="acme",
        order_id=lost.id,
        payment_method_id=visa,
        kind="purchase",
        gateway="beta",
        amount_minor=300,
        currency="USD",
    )
    unseen.collect_events()  # an attempt the log never got: its gateway stays unknown
    lost.record_capture(attempt_id=unseen.id, amount_minor=300)
    h.on(1, lost)
    h.record(services)
    for name in ("sales_report", "gateway_report"):
        services.runners[name].catch_up()

    assert sales(services, "gateway") == [
        ("alpha", "USD", 1_200, 0, 1_200, 1, 1_200),
        ("unknown", "USD", 300, 0, 300, 1, 300),
    ]
    rows = services.gateway_report.report("acme", date_from=MARCH_1, date_to=MARCH_4)
    assert [_gateway(row)[:4] + (_gateway(row)[8],) for row in rows] == [
        ("alpha", "visa", 1, 1, {"USD": (1_200, 0)}),
        ("unknown", "unknown", 0, 0, {"USD": (300, 0)}),
    ]
    assert services.gateway_report.parked() == [] and services.sales_report.parked() == []
