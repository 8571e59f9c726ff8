"""The MRR report and FX rates over HTTP: subscriptions imported through the API, the report
read with ``min_position`` as JSON, per plan and as CSV, in another currency with posted rates;
the errors a back office meets (bad months and periods, a missing rate, roles)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import Services
from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e


def plan(merchant: Merchant, code: str, amount_minor: int, interval: str, **fields: Any) -> str:
    body = {"code": code, "name": code, "currency": "USD", "amount_minor": amount_minor}
    response = merchant.post("/v1/plans", {**body, "interval": interval, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


class Clock:
    """The ledger's clock, set by the test: an import happens an hour after its instant, so
    only the periods that began before then count as billed elsewhere."""

    def __init__(self) -> None:
        self.at = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def just_after(self, effective_at: str) -> str:
        self.at = datetime.fromisoformat(effective_at) + timedelta(hours=1)
        return effective_at


@pytest.fixture
def clock(running_services: Services) -> Iterator[Clock]:
    ledger = running_services.ledger
    original = ledger.now
    clock = Clock()
    ledger.now = clock  # type: ignore[method-assign]
    yield clock
    ledger.now = original  # type: ignore[method-assign]


def subscribe(merchant: Merchant, customer: dict, plan_id: str, effective_at: str, **fields: Any):
    method = merchant.card(customer["id"])
    response = merchant.post(
        "/v1/subscriptions",
        {
            "customer_id": customer["id"],
            "plan_id": plan_id,
            "payment_method_id": method["id"],
            "effective_at": effective_at,
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def imported(acme: Merchant, clock: Clock) -> dict[str, Any]:
    """The published story, imported: yearly Gold (4 seats, $2,000) from January 2025, monthly
    Silver ($60) from February, Silver cancelled in April, Gold cancelled at its period end."""
    customer = acme.customer()
    gold_plan = plan(acme, "gold-yearly", 50_000, "year")
    silver_plan = plan(acme, "silver", 6_000, "month")
    gold = subscribe(
        acme, customer, gold_plan, clock.just_after("2025-01-10T12:00:00+00:00"), quantity=4
    )
    silver = subscribe(acme, customer, silver_plan, clock.just_after("2025-02-10T12:00:00+00:00"))
    cancelled = acme.post(
        f"/v1/subscriptions/{silver}/cancel",
        {"effective_at": clock.just_after("2025-04-05T12:00:00+00:00")},
    )
    assert cancelled.status_code == 200, cancelled.text
    at_end = acme.post(
        f"/v1/subscriptions/{gold}/cancel",
        {"at_period_end": True, "effective_at": clock.just_after("2025-05-01T12:00:00+00:00")},
    )
    assert at_end.status_code == 200, at_end.text
    return {"gold_plan": gold_plan, "silver_plan": silver_plan, "position": position(at_end)}


def mrr(merchant: Merchant, headers: dict[str, str] | None = None, **params: Any):
    return merchant.get(
        "/v1/reports/mrr", params={"currency": "USD", **params}, headers=headers or {}
    )


def test_the_report_shows_each_months_mrr_and_movements(acme: Merchant, imported: dict) -> None:
    response = mrr(
        acme, **{"from": "2025-01", "to": "2026-01", "min_position": imported["position"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["currency"], body["from"], body["to"], body["opening_mrr_minor"]) == (
        "USD",
        "2025-01",
        "2026-01",
        0,
    )
    months = {m["month"]: m for m in body["months"]}
    assert len(months) == 13
    january, february, april = months["2025-01"], months["2025-02"], months["2025-04"]
    assert (january["mrr_minor"], january["new_minor"], january["new_customers"]) == (
        16_667,
        16_667,
        1,
    )
    assert (february["mrr_minor"], february["expansion_minor"]) == (22_667, 6_000)
    assert (april["mrr_minor"], april["contraction_minor"], april["quick_ratio"]) == (
        16_667,
        6_000,
        "0.00",
    )
    assert months["2025-12"]["arr_minor"] == 12 * 16_667
    # The yearly period paid in January 2025 ends in January 2026: churn then, not in May.
    assert months["2025-05"]["churn_minor"] == 0
    churned = months["2026-01"]
    assert (churned["mrr_minor"], churned["churn_minor"], churned["customers"]) == (0, 16_667, 0)
    assert all(m["fx_adjustment_minor"] == 0 and m["plans"] is None for m in body["months"])


def test_a_breakdown_per_plan_and_a_csv_table(acme: Merchant, imported: dict) -> None:
    params = {"from": "2025-02", "to": "2025-04", "min_position": imported["position"]}
    body = mrr(acme, breakdown="plan", **params).json()
    february = {p["plan_id"]: p for p in body["months"][0]["plans"]}
    assert february[imported["silver_plan"]]["expansion_minor"] == 6_000
    assert february[imported["silver_plan"]]["mrr_minor"] == 6_000
    assert february[imported["gold_plan"]]["mrr_minor"] == 16_667
    assert body["opening_mrr_minor"] == 16_667

    response = mrr(acme, breakdown="plan", headers={"Accept": "text/csv"}, **params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    totals = [(r["month"], r["mrr_minor"]) for r in rows if r["plan_id"] == ""]
    assert totals == [("2025-02", "22667"), ("2025-03", "22667"), ("2025-04", "16667")]
    assert {"2025-04", imported["silver_plan"], "6000"} <= set(
        next(
            r for r in rows if r["plan_id"] == imported["silver_plan"] and r["month"] == "2025-04"
        ).values()
    )


def test_other_currencies_convert_with_posted_rates(acme: Merchant, imported: dict) -> None:
    params = {"from": "2025-01", "to": "2025-02", "min_position": imported["position"]}
    missing = mrr(acme, **{**params, "currency": "EUR"})
    error = assert_error(missing, 422, "fx_rate_missing")
    assert "USD" in error["message"] and "2025-01" in error["message"]

    posted = acme.post(
        "/v1/fx-rates",
        {
            "rates": [
                {"date": "2024-12-31", "base": "EUR", "quote": "USD", "rate": "1.25"},
                {"date": "2025-01-31", "base": "EUR", "quote": "USD", "rate": "1.00"},
            ]
        },
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["data"][0] == {
        "date": "2024-12-31",
        "base": "EUR",
        "quote": "USD",
        "rate": "1.25",
    }
    listed = acme.get("/v1/fx-rates", params={"date": "2025-01-15"}).json()["data"]
    assert [(r["date"], r["rate"]) for r in listed] == [("2024-12-31", "1.25")]

    months = mrr(acme, **{**params, "currency": "EUR"}).json()["months"]
    # January: $166.67 at 1.25 = €133.34; February: the dollar is worth more (+€33.33 of FX).
    assert [
        (m["mrr_minor"], m["new_minor"], m["expansion_minor"], m["fx_adjustment_minor"])
        for m in months
    ] == [
        (13_334, 13_334, 0, 0),
        (22_667, 0, 6_000, 3_333),
    ]


def test_bad_months_and_periods_are_named(acme: Merchant) -> None:
    for bad in ("2026-13", "2026-1", "01-2026"):
        error = assert_error(mrr(acme, **{"from": bad, "to": "2026-02"}), 422, "invalid_month")
        assert error["param"] == "from"
    assert_error(mrr(acme, **{"from": "2026-03", "to": "2026-02"}), 422, "invalid_period")
    assert_error(mrr(acme, **{"from": "2000-01", "to": "2026-02"}), 422, "period_too_long")


def test_rates_are_admin_commands_and_validated(acme: Merchant, client, key_of) -> None:
    reader = Merchant(client, key_of("acme", "readonly"))
    body = {"rates": [{"date": "2026-01-01", "base": "EUR", "quote": "USD", "rate": "1.08"}]}
    assert_error(reader.post("/v1/fx-rates", body), 403, "permission_denied")
    assert reader.get("/v1/fx-rates", params={"date": "2026-01-02"}).status_code == 200
    same = {"rates": [{"date": "2026-01-01", "base": "USD", "quote": "USD", "rate": "1"}]}
    assert assert_error(acme.post("/v1/fx-rates", same), 422, "invalid_fx_rate")["param"] == (
        "rates.0.quote"
    )
    for rate in ("0", "-1", "1e3", "1.5.2", 1.08):
        bad = {"rates": [{"date": "2026-01-01", "base": "EUR", "quote": "USD", "rate": rate}]}
        assert_error(acme.post("/v1/fx-rates", bad), 422, "validation_error")
    assert (
        reader.get(
            "/v1/reports/mrr", params={"from": "2026-01", "to": "2026-01", "currency": "USD"}
        ).json()["months"][0]["mrr_minor"]
        == 0
    )
