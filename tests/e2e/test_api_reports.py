"""Sales and gateway reports over HTTP: figures of paid, declined and refunded orders placed
through the API, read with ``min_position``; one tenant never sees another's; bad periods 422."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import GENERIC_DECLINE_CARD, Merchant, assert_error, position

MASTERCARD = "5555555555554444"


def period(days_before: int = 1, days_after: int = 1) -> dict[str, str]:
    """A period around today (UTC), wide enough that a test crossing midnight still sees it."""
    today = datetime.now(UTC).date()
    return {
        "from": (today - timedelta(days=days_before)).isoformat(),
        "to": (today + timedelta(days=days_after)).isoformat(),
    }


def figures(row: dict[str, Any]) -> tuple:
    return (
        row["currency"],
        row["gross_minor"],
        row["refunds_minor"],
        row["chargebacks_minor"],
        row["net_minor"],
        row["order_count"],
        row["average_order_value_minor"],
    )


@pytest.fixture
def acme_sales(acme: Merchant) -> int:
    """Acme's history: two paid Visa orders in USD (one partly refunded), one declined, one
    paid Mastercard order in EUR from Germany. Returns the position of the last write."""
    us = acme.customer(country="US")
    visa = acme.card(us["id"])
    declining = acme.card(us["id"], GENERIC_DECLINE_CARD)
    de = acme.customer(currency="EUR", country="DE")
    mastercard = acme.card(de["id"], MASTERCARD)
    first = acme.paid_order(us["id"], visa["id"], unit_price_minor=10_000)
    acme.paid_order(us["id"], visa["id"], unit_price_minor=5_001)
    declined = acme.place_order(us["id"], declining["id"], unit_price_minor=700)
    assert declined.status_code == 201 and declined.json()["status"] == "declined"
    acme.paid_order(de["id"], mastercard["id"], unit_price_minor=3_000, currency="EUR")
    refund = acme.post(f"/v1/orders/{first['id']}/refunds", {"amount_minor": 2_500})
    assert refund.status_code == 201, refund.text
    return position(refund)


def test_the_sales_report_sums_captures_and_refunds_per_group_and_currency(
    acme: Merchant, acme_sales: int
) -> None:
    params = {**period(), "min_position": acme_sales}
    by_country = acme.get("/v1/reports/sales", params={**params, "group_by": "country"})

    assert by_country.status_code == 200, by_country.text
    body = by_country.json()
    assert (body["group_by"], body["currency"]) == ("country", None)
    assert (body["from"], body["to"]) == (params["from"], params["to"])
    assert [(row["group"], *figures(row)) for row in body["data"]] == [
        ("DE", "EUR", 3_000, 0, 0, 3_000, 1, 3_000),
        # 12,501 net over two paid orders (the declined one does not count): 6,250 rounded down.
        ("US", "USD", 15_001, 2_500, 0, 12_501, 2, 6_250),
    ]
    assert [figures(row) for row in body["totals"]] == [
        ("EUR", 3_000, 0, 0, 3_000, 1, 3_000),
        ("USD", 15_001, 2_500, 0, 12_501, 2, 6_250),
    ]
    by_gateway = acme.get("/v1/reports/sales", params={**params, "group_by": "gateway"}).json()
    assert [(row["group"], row["currency"]) for row in by_gateway["data"]] == [
        ("sandbox", "EUR"),
        ("sandbox", "USD"),
    ]
    by_day = acme.get("/v1/reports/sales", params={**params, "currency": "USD"}).json()
    assert by_day["group_by"] == "day"
    assert {row["group"] for row in by_day["data"]} <= {params["from"], params["to"]} | {
        datetime.now(UTC).date().isoformat()
    }
    assert [figures(row) for row in by_day["totals"]] == [
        ("USD", 15_001, 2_500, 0, 12_501, 2, 6_250)
    ]


def no_chargebacks(captures_today: int) -> dict[str, Any]:
    """The schemes' ratios without chargebacks: of the month of the period's last day, whose
    transactions are today's captures (or, past a month's end, the previous month's)."""
    today = datetime.now(UTC).date()
    last_day = date.fromisoformat(period()["to"])
    same_month = (last_day.year, last_day.month) == (today.year, today.month)
    return {
        "month": last_day.strftime("%Y-%m"),
        "visa": {
            "disputes": 0,
            "transactions": captures_today if same_month else 0,
            "ratio_bps": 0,
            "band": "ok",
        },
        "mastercard": {
            "chargebacks": 0,
            "previous_month_transactions": 0 if same_month else captures_today,
            "ratio_bps": 0,
            "band": "ok",
        },
    }


def test_the_gateway_report_counts_attempts_outcomes_and_volume_per_brand(
    acme: Merchant, acme_sales: int
) -> None:
    response = acme.get("/v1/reports/gateways", params={**period(), "min_position": acme_sales})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [
        {
            "gateway": "sandbox",
            "brand": "mastercard",
            "attempts": 1,
            "approvals": 1,
            "declines": 0,
            "outcome_unknown": 0,
            "approval_rate_bps": 10_000,
            "declines_by_code": {},
            "volume_by_currency": {
                "EUR": {"captured_minor": 3_000, "refunded_minor": 0, "chargebacks_minor": 0}
            },
            "captures": 1,
            "chargebacks": 0,
            "chargeback_ratio_bps": 0,
            "scheme_ratios": no_chargebacks(1),
        },
        {
            "gateway": "sandbox",
            "brand": "visa",
            "attempts": 3,
            "approvals": 2,
            "declines": 1,
            "outcome_unknown": 0,
            "approval_rate_bps": 6_666,
            "declines_by_code": {"generic_decline": 1},
            "volume_by_currency": {
                "USD": {"captured_minor": 15_001, "refunded_minor": 2_500, "chargebacks_minor": 0}
            },
            "captures": 2,
            "chargebacks": 0,
            "chargeback_ratio_bps": 0,
            "scheme_ratios": no_chargebacks(2),
        },
    ]


def test_a_tenant_reads_only_its_own_figures(
    acme: Merchant, globex: Merchant, acme_sales: int
) -> None:
    customer = globex.customer(country="FR")
    card = globex.card(customer["id"])
    order = globex.place_order(customer["id"], card["id"], unit_price_minor=4_000)
    params = {**period(), "min_position": position(order)}

    by_country = {**params, "group_by": "country"}
    globex_sales = globex.get("/v1/reports/sales", params=by_country).json()
    acme_sales_now = acme.get("/v1/reports/sales", params=by_country).json()
    globex_gateways = globex.get("/v1/reports/gateways", params=params)

    assert [(row["group"], *figures(row)) for row in globex_sales["data"]] == [
        ("FR", "USD", 4_000, 0, 0, 4_000, 1, 4_000)
    ]
    assert [row["group"] for row in acme_sales_now["data"]] == ["DE", "US"]
    assert [(r["brand"], r["attempts"]) for r in globex_gateways.json()["data"]] == [("visa", 1)]


def test_a_read_only_key_reads_reports_and_a_period_without_figures_is_empty(
    acme: Merchant, key_of
) -> None:
    readonly = Merchant(acme.client, key_of("acme", "readonly"))
    response = readonly.get("/v1/reports/sales", params={"from": "2020-01-01", "to": "2020-12-31"})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [] and response.json()["totals"] == []
    response = readonly.get(
        "/v1/reports/gateways", params={"from": "2020-01-01", "to": "2020-12-31"}
    )
    assert response.status_code == 200 and response.json()["data"] == []
    assert_error(acme.client.get("/v1/reports/gateways", params=period()), 401, "unauthenticated")


@pytest.mark.parametrize("path", ["/v1/reports/sales", "/v1/reports/gateways"])
@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"from": "2026-13-01", "to": "2026-12-31"}, "validation_error", "from"),
        ({"from": "2026-02-30", "to": "2026-03-31"}, "validation_error", "from"),
        ({"from": "2026-1-1", "to": "2026-12-31"}, "validation_error", "from"),
        ({"from": "0", "to": "2026-12-31"}, "validation_error", "from"),
        ({"from": "2026-01-01", "to": "2026-01-01T00:00:00"}, "validation_error", "to"),
        ({"to": "2026-12-31"}, "parameter_missing", "from"),
        ({"from": "2026-05-02", "to": "2026-05-01"}, "invalid_period", "from"),
        # 2024 is a leap year: 1 January 2024 to 1 January 2025 is 367 days.
        ({"from": "2024-01-01", "to": "2025-01-01"}, "period_too_long", "to"),
        ({"from": "2026-01-01", "to": "2026-01-31", "min_position": -1}, "validation_error", None),
    ],
)
def test_a_bad_period_is_a_422_naming_the_parameter(
    acme: Merchant, path: str, params: dict[str, Any], code: str, param: str | None
) -> None:
    error = assert_error(acme.get(path, params=params), 422, code)
    assert error["param"] == (param or "min_position")


def test_the_longest_period_is_366_days_and_group_by_is_one_of_four(acme: Merchant) -> None:
    leap_year = {"from": "2024-01-01", "to": "2024-12-31"}
    assert acme.get("/v1/reports/sales", params=leap_year).status_code == 200
    assert acme.get("/v1/reports/gateways", params=leap_year).status_code == 200
    for group_by in ("day", "country", "gateway", "campaign"):
        response = acme.get("/v1/reports/sales", params={**leap_year, "group_by": group_by})
        assert response.status_code == 200, response.text
    error = assert_error(
        acme.get("/v1/reports/sales", params={**leap_year, "group_by": "week"}),
        422,
        "validation_error",
    )
    assert error["param"] == "group_by"
    error = assert_error(
        acme.get("/v1/reports/sales", params={**leap_year, "currency": "usd"}),
        422,
        "validation_error",
    )
    assert error["param"] == "currency"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01", "0001-01-01"),
        ("9999-12-31", "9999-12-31"),
        ("0001-12-01", "0001-12-31"),
    ],
)
def test_periods_at_the_ends_of_the_calendar_are_answered(
    acme: Merchant, start: str, end: str
) -> None:
    for path in ("/v1/reports/gateways", "/v1/reports/sales"):
        response = acme.get(path, params={"from": start, "to": end})
        assert response.status_code == 200, (path, response.text)
