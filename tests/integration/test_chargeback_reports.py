"""Chargebacks in the read models: the orders list, the sales report (opened counts, won
reverses) and the gateway report (counts, money, and the Visa and Mastercard monthly ratios).

The history is made of real domain events stamped with chosen days, as in
``test_reports_projections``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapters.bootstrap import Services
from adapters.rebuild import rebuild
from domain.order import Order
from projections.gateway_report import MASTERCARD_BANDS_BPS, VISA_BANDS_BPS, scheme_ratio
from projections.sales_report import sales_groups, sales_totals
from tests.integration.test_reports_projections import History, _all_rows

pytestmark = pytest.mark.integration

FEBRUARY_1, MARCH_1, MARCH_31 = date(2026, 2, 1), date(2026, 3, 1), date(2026, 3, 31)


class DisputedHistory(History):
    """``History`` in any month (``month``), with chargebacks."""

    month = 3

    def on(self, day: int, *aggregates: Any) -> None:
        when = datetime(2026, self.month, day, 12, tzinfo=UTC)
        for aggregate in aggregates:
            self.events += [replace(e, timestamp=when) for e in aggregate.collect_events()]

    def opened(self, day: int, order: Order, chargeback_id: str, amount_minor: int) -> None:
        order.open_chargeback(
            chargeback_id=chargeback_id, amount_minor=amount_minor, reason_code="10.4"
        )
        self.on(day, order)

    def resolved(self, day: int, order: Order, chargeback_id: str, outcome: str) -> None:
        order.resolve_chargeback(chargeback_id=chargeback_id, outcome=outcome)
        self.on(day, order)


def disputed_history() -> tuple[DisputedHistory, dict[str, Order]]:
    """February: three Visa orders captured through alpha. March: two more; a chargeback of
    3,000 opened on the 2nd and lost on the 3rd, one of 1,000 opened on the 2nd and won on the
    4th."""
    h = DisputedHistory()
    h.month = 2
    us, visa = h.customer(1, "acme", "US", "visa")
    for day in (10, 11, 12):
        old = h.order(day, us, "USD", 100)
        h.captured(day, old, h.attempt(day, old, visa, "alpha"))
    h.month = 3
    lost = h.order(1, us, "USD", 10_000)
    h.captured(1, lost, h.attempt(1, lost, visa, "alpha"))
    won = h.order(1, us, "USD", 5_000)
    h.captured(1, won, h.attempt(1, won, visa, "alpha"))
    h.opened(2, lost, "cb-lost", 3_000)
    h.opened(2, won, "cb-won", 1_000)
    h.resolved(3, lost, "cb-lost", "lost")
    h.resolved(4, won, "cb-won", "won")
    return h, {"lost": lost, "won": won}


@pytest.fixture
def disputed(services: Services) -> tuple[Services, dict[str, Order]]:
    history, orders = disputed_history()
    history.record(services)
    for name in ("sales_report", "gateway_report", "order_summaries"):
        services.runners[name].catch_up()
    return services, orders


def test_the_sales_report_counts_a_chargeback_when_opened_and_reverses_it_when_won(
    disputed: tuple[Services, dict[str, Order]],
) -> None:
    services, _orders = disputed
    rows = services.sales_report.report("acme", date_from=MARCH_1, date_to=MARCH_31, group_by="day")
    figures = [
        (g["group"], g["gross_minor"], g["chargebacks_minor"], g["net_minor"])
        for g in sales_groups(rows)
    ]
    assert figures == [
        ("2026-03-01", 15_000, 0, 15_000),
        ("2026-03-02", 0, 4_000, -4_000),
        # The lost chargeback stays counted (nothing on the 3rd); the won one comes back.
        ("2026-03-04", 0, -1_000, 1_000),
    ]
    [totals] = sales_totals(rows)
    assert (totals["chargebacks_minor"], totals["net_minor"]) == (3_000, 12_000)


def test_the_gateway_report_counts_chargebacks_and_the_schemes_monthly_ratios(
    disputed: tuple[Services, dict[str, Order]],
) -> None:
    services, _orders = disputed

    [row] = services.gateway_report.report("acme", date_from=MARCH_1, date_to=MARCH_31)

    assert (row["gateway"], row["brand"], row["captures"], row["chargebacks"]) == (
        "alpha",
        "visa",
        2,
        2,
    )
    assert row["volume_by_currency"]["USD"] == {
        "captured_minor": 15_000,
        "refunded_minor": 0,
        "chargebacks_minor": 3_000,
    }
    assert row["chargeback_ratio_bps"] == 10_000  # two chargebacks of two approvals
    assert row["scheme_ratios"] == {
        "month": "2026-03",
        # Visa: March's disputes over March's settled transactions.
        "visa": {"disputes": 2, "transactions": 2, "ratio_bps": 10_000, "band": "excessive"},
        # Mastercard: March's chargebacks over February's transactions (three).
        "mastercard": {
            "chargebacks": 2,
            "previous_month_transactions": 3,
            "ratio_bps": 6_666,
            "band": "excessive",
        },
    }
    [february] = services.gateway_report.report(
        "acme", date_from=FEBRUARY_1, date_to=date(2026, 2, 28)
    )
    assert february["scheme_ratios"]["visa"] == {
        "disputes": 0,
        "transactions": 3,
        "ratio_bps": 0,
        "band": "ok",
    }


def test_the_orders_read_model_shows_chargebacks_and_the_settled_status(
    disputed: tuple[Services, dict[str, Order]],
) -> None:
    services, orders = disputed
    lost = services.orders.get("acme", orders["lost"].id)
    won = services.orders.get("acme", orders["won"].id)
    assert lost is not None and won is not None

    assert (lost["status"], lost["charged_back_minor"], lost["chargebacks"]) == (
        "paid",
        3_000,
        [{"id": "cb-lost", "amount_minor": 3_000, "reason_code": "10.4", "status": "lost"}],
    )
    assert (won["status"], won["charged_back_minor"], won["chargebacks"][0]["status"]) == (
        "paid",
        0,
        "won",
    )
    assert lost["parent_order_id"] is None


def test_a_disputed_order_is_listed_as_disputed(services: Services) -> None:
    h = DisputedHistory()
    us, visa = h.customer(1, "acme", "US", "visa")
    order = h.order(1, us, "USD", 1_000)
    h.captured(1, order, h.attempt(1, order, visa, "alpha"))
    h.opened(2, order, "cb-1", 1_000)
    h.record(services)
    services.runners["order_summaries"].catch_up()

    rows = services.orders.list("acme", status="disputed")

    assert [(r["order_id"], r["status"]) for r in rows] == [(order.id, "disputed")]


@pytest.mark.parametrize("name", ["sales_report", "gateway_report", "order_summaries"])
def test_a_rebuild_with_chargebacks_writes_identical_rows(
    disputed: tuple[Services, dict[str, Order]], name: str
) -> None:
    services, _orders = disputed
    live = services.runners[name]
    before = _all_rows(live.view)
    live.batch_size = 2

    assert rebuild(live, services.serving, services.database_url) == 2

    assert _all_rows(services.serving.serving_view(name)) == before


@pytest.mark.parametrize(
    ("count", "transactions", "bands", "expected"),
    [
        (0, 0, VISA_BANDS_BPS, {"ratio_bps": 0, "band": "ok"}),
        (1, 0, VISA_BANDS_BPS, {"ratio_bps": None, "band": "excessive"}),
        (64, 10_000, VISA_BANDS_BPS, {"ratio_bps": 64, "band": "ok"}),
        (65, 10_000, VISA_BANDS_BPS, {"ratio_bps": 65, "band": "warning"}),
        (99, 10_000, VISA_BANDS_BPS, {"ratio_bps": 99, "band": "warning"}),
        (100, 10_000, VISA_BANDS_BPS, {"ratio_bps": 100, "band": "excessive"}),
        (100, 10_000, MASTERCARD_BANDS_BPS, {"ratio_bps": 100, "band": "warning"}),
        (149, 10_000, MASTERCARD_BANDS_BPS, {"ratio_bps": 149, "band": "warning"}),
        (150, 10_000, MASTERCARD_BANDS_BPS, {"ratio_bps": 150, "band": "excessive"}),
        (1, 3, MASTERCARD_BANDS_BPS, {"ratio_bps": 3_333, "band": "excessive"}),
    ],
)
def test_a_scheme_ratio_is_in_basis_points_rounded_down_with_its_band(
    count: int, transactions: int, bands: tuple[int, int], expected: dict[str, Any]
) -> None:
    assert scheme_ratio(count, transactions, bands) == expected
