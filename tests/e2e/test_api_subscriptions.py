"""Subscriptions over HTTP on real PostgreSQL and Redis, with the ledger's clock moved by the
test: trial → active → failed renewal → past_due → retries → card updated → recovered; dunning
exhausted → churned; an upgrade with proration; a cancellation at period end; imports; the
errors a back office meets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Services
from tests.e2e.conftest import (
    GOOD_CARD,
    INSUFFICIENT_FUNDS_CARD,
    Merchant,
    assert_error,
)

pytestmark = pytest.mark.e2e


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(running_services: Services) -> Iterator[Clock]:
    ledger = running_services.ledger
    original = ledger.now
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ledger.now = clock  # type: ignore[method-assign]
    yield clock
    ledger.now = original  # type: ignore[method-assign]


class Billing:
    """The back office of one merchant for subscriptions."""

    def __init__(self, merchant: Merchant, services: Services) -> None:
        self.m = merchant
        self.services = services

    def plan(self, code: str, amount: int, **fields: Any) -> dict[str, Any]:
        body = {"code": code, "name": code.title(), "currency": "USD", "amount_minor": amount}
        response = self.m.post("/v1/plans", {"interval": "month", **body, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def subscribe(self, plan: dict[str, Any], card: str = GOOD_CARD, **fields: Any) -> Any:
        customer = self.m.customer()
        method = self.m.card(customer["id"], card)
        return self.m.post(
            "/v1/subscriptions",
            {
                "customer_id": customer["id"],
                "plan_id": plan["id"],
                "payment_method_id": method["id"],
                **fields,
            },
        )

    def run(self) -> dict[str, int]:
        """``POST /v1/billing/run`` once the due-renewals read model has caught up."""
        self.settled()
        response = self.m.post("/v1/billing/run")
        assert response.status_code == 200, response.text
        return response.json()

    def settled(self) -> int:
        """Wait until the subscriptions read model has applied everything written so far."""
        head = self.services.ledger.recorder.max_notification_id() or 0
        response = self.m.get(f"/v1/subscriptions?limit=1&min_position={head}")
        assert response.status_code == 200, response.text
        return head

    def read(self, subscription_id: str) -> dict[str, Any]:
        """The read model, once it has applied everything written so far."""
        head = self.settled()
        response = self.m.get(f"/v1/subscriptions/{subscription_id}?min_position={head}")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def billing(acme: Merchant, running_services: Services) -> Billing:
    return Billing(acme, running_services)


def test_trial_fails_to_renew_retries_then_recovers_on_an_updated_card(
    billing: Billing, clock: Clock
) -> None:
    plan = billing.plan("pro", 4900, trial_days=14)
    created = billing.subscribe(plan, INSUFFICIENT_FUNDS_CARD)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["status"] == "trialing" and sub["mrr_minor"] == 0  # trials are not MRR
    assert billing.run()["due"] == 0

    clock.advance(days=14, seconds=1)
    assert billing.run()["failed"] == 1
    past_due = billing.read(sub["id"])
    assert past_due["status"] == "past_due"
    assert past_due["dunning"]["failures"] == 1
    assert past_due["last_charge"]["decline_code"] == "insufficient_funds"
    period = (past_due["current_period_start"], past_due["current_period_end"])

    clock.advance(days=1)
    assert billing.run()["failed"] == 1
    assert billing.read(sub["id"])["dunning"]["failures"] == 2
    assert billing.run()["due"] == 0  # the next retry is not due yet

    replaced = billing.m.client.put(
        f"/v1/customers/{sub['customer_id']}/payment-methods/{sub['payment_method_id']}",
        json={"card_number": GOOD_CARD, "exp_month": 11, "exp_year": 2032, "cvc": "123"},
        headers={"Authorization": f"Bearer {billing.m.key}"},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["last4"] == "4242"
    recovered = billing.read(sub["id"])
    assert recovered["status"] == "active" and recovered["dunning"] is None
    assert (recovered["current_period_start"], recovered["current_period_end"]) == period
    assert recovered["last_charge"]["outcome"] == "succeeded"
    orders = billing.m.get(f"/v1/orders?customer_id={sub['customer_id']}").json()["data"]
    assert sorted(o["status"] for o in orders) == ["declined", "declined", "paid"]


def test_exhausted_retries_churn_the_subscription(billing: Billing, clock: Clock) -> None:
    policy = billing.m.client.put(
        "/v1/billing/dunning-policy",
        json={"retry_days": [1, 2]},
        headers={"Authorization": f"Bearer {billing.m.key}"},
    )
    assert policy.status_code == 200, policy.text
    sub = billing.subscribe(billing.plan("basic", 1000, trial_days=1), INSUFFICIENT_FUNDS_CARD)
    sub = sub.json()
    for _ in range(3):
        clock.advance(days=1, seconds=1)
        billing.run()
    churned = billing.read(sub["id"])
    assert churned["status"] == "churned"
    assert churned["ended_reason"] == "dunning_exhausted"
    assert billing.run()["due"] == 0


def test_an_upgrade_charges_the_prorated_difference_now(billing: Billing, clock: Clock) -> None:
    silver, gold = billing.plan("silver", 3000), billing.plan("gold", 9000)
    sub = billing.subscribe(silver).json()
    assert sub["status"] == "active" and sub["last_charge"]["amount_minor"] == 3000
    start = datetime.fromisoformat(sub["current_period_start"])
    end = datetime.fromisoformat(sub["current_period_end"])
    clock.advance(days=9, hours=5)
    upgraded = billing.m.post(f"/v1/subscriptions/{sub['id']}/change-plan", {"plan_id": gold["id"]})
    assert upgraded.status_code == 200, upgraded.text
    body = upgraded.json()
    left, total = (end - clock.at).total_seconds(), (end - start).total_seconds()
    assert body["last_charge"]["amount_minor"] == 6000 * int(left) // int(total)
    assert body["plan_id"] == gold["id"] and body["mrr_minor"] == 9000
    assert body["current_period_end"] == sub["current_period_end"]
    downgraded = billing.m.post(
        f"/v1/subscriptions/{sub['id']}/change-plan", {"plan_id": silver["id"], "quantity": 2}
    ).json()
    assert downgraded["plan_id"] == gold["id"]
    assert downgraded["scheduled_change"]["plan_id"] == silver["id"]
    clock.advance(days=31)
    billing.run()
    renewed = billing.read(sub["id"])
    assert renewed["plan_id"] == silver["id"] and renewed["quantity"] == 2
    assert renewed["last_charge"]["amount_minor"] == 6000


def test_a_cancellation_at_period_end_stops_renewal(billing: Billing, clock: Clock) -> None:
    sub = billing.subscribe(billing.plan("monthly", 2500)).json()
    cancel = billing.m.post(f"/v1/subscriptions/{sub['id']}/cancel", {"at_period_end": True})
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["cancel_at_period_end"] is True
    assert cancel.json()["status"] == "active"
    clock.advance(days=32)
    assert billing.run()["ended"] == 1
    ended = billing.read(sub["id"])
    assert ended["status"] == "cancelled" and ended["ended_at"] == sub["current_period_end"]
    assert billing.run()["due"] == 0
    listed = billing.m.get(f"/v1/subscriptions?customer_id={sub['customer_id']}&status=cancelled")
    assert [s["id"] for s in listed.json()["data"]] == [sub["id"]]


def test_an_import_with_effective_at_is_admin_only_and_charges_no_past_period(
    billing: Billing, client: TestClient, key_of: Any, clock: Clock
) -> None:
    plan = billing.plan("legacy", 1500)
    two_years_ago = (clock.at - timedelta(days=730)).isoformat()
    imported = billing.subscribe(plan, effective_at=two_years_ago)
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert body["status"] == "active" and body["last_charge"] is None
    assert body["started_at"] == two_years_ago
    assert datetime.fromisoformat(body["current_period_end"]) > clock.at

    writer = Merchant(client, key_of("acme", "manager"))
    customer = writer.customer()
    method = writer.card(customer["id"])
    refused = writer.post(
        "/v1/subscriptions",
        {
            "customer_id": customer["id"],
            "plan_id": plan["id"],
            "payment_method_id": method["id"],
            "effective_at": two_years_ago,
        },
    )
    assert_error(refused, 403, "permission_denied")
    back = billing.m.post(
        f"/v1/subscriptions/{body['id']}/pause", {"effective_at": "2001-01-01T00:00:00Z"}
    )
    assert_error(back, 422, "invalid_effective_at")
    future = billing.subscribe(plan, effective_at=(clock.at + timedelta(days=1)).isoformat())
    assert_error(future, 422, "invalid_effective_at")


def test_bad_input_is_a_clear_4xx(billing: Billing, globex: Merchant) -> None:
    plan = billing.plan("std", 1000)
    assert_error(
        billing.m.post("/v1/plans", {**_plan_body(), "code": "std"}), 409, "plan_code_taken"
    )
    assert_error(
        billing.m.post("/v1/plans", {**_plan_body(), "amount_minor": 10**20}), 422, "invalid_amount"
    )
    huge = billing.subscribe(plan, quantity=10**20)
    assert huge.status_code == 422, huge.text
    customer = billing.m.customer()
    method = billing.m.card(customer["id"])
    unknown = billing.m.post(
        "/v1/subscriptions",
        {
            "customer_id": customer["id"],
            "plan_id": "00000000-0000-0000-0000-000000000000",
            "payment_method_id": method["id"],
        },
    )
    assert_error(unknown, 404, "plan_not_found")
    sub = billing.subscribe(plan).json()
    assert_error(globex.get(f"/v1/subscriptions/{sub['id']}"), 404, "subscription_not_found")
    assert_error(
        globex.post(f"/v1/subscriptions/{sub['id']}/cancel", {}), 404, "subscription_not_found"
    )
    assert_error(
        billing.m.post(f"/v1/subscriptions/{sub['id']}/resume"), 409, "subscription_not_active"
    )
    yearly = billing.plan("yearly", 10000, interval="year")
    assert_error(
        billing.m.post(f"/v1/subscriptions/{sub['id']}/change-plan", {"plan_id": yearly["id"]}),
        422,
        "plan_mismatch",
    )
    bad_policy = billing.m.client.put(
        "/v1/billing/dunning-policy",
        json={"retry_days": [3, 2]},
        headers={"Authorization": f"Bearer {billing.m.key}"},
    )
    assert_error(bad_policy, 422, "invalid_dunning_policy")


def _plan_body() -> dict[str, Any]:
    return {
        "code": "x",
        "name": "X",
        "currency": "USD",
        "amount_minor": 100,
        "interval": "month",
    }


def test_the_account_updater_refreshes_an_expiring_card_and_recovers_the_subscription(
    billing: Billing, clock: Clock
) -> None:
    customer = billing.m.customer()
    expiring = billing.m.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        {"card_number": "4000000000000069", "exp_month": 12, "exp_year": 2026, "cvc": "123"},
    ).json()
    plan = billing.plan("club", 1900, trial_days=1)
    sub = billing.m.post(
        "/v1/subscriptions",
        {"customer_id": customer["id"], "plan_id": plan["id"], "payment_method_id": expiring["id"]},
    ).json()
    clock.advance(days=1, seconds=1)
    assert billing.run()["failed"] == 1
    failed = billing.read(sub["id"])
    assert failed["dunning"]["hard_decline"] is True
    assert failed["dunning"]["next_retry_at"] is None  # a hard decline is never retried

    billing.settled()
    run = billing.m.post("/v1/billing/account-updater/run")
    assert run.status_code == 200, run.text
    assert run.json() == {"customers": 1, "cards_updated": 1, "retried": 1}
    recovered = billing.read(sub["id"])
    assert recovered["status"] == "active"
    again = billing.m.post("/v1/billing/account-updater/run").json()
    assert again["cards_updated"] == 0  # the refreshed card expires in 2030


def test_huge_import_does_not_poison_the_read_model(billing: Billing, clock: Clock) -> None:
    """An admin import of plan 10^15 × quantity 10^6 (MRR 10^21, above bigint): it must be
    refused (422), or the read model must still catch up for everyone afterwards."""
    big = billing.plan("big", 10**15)
    imported = billing.subscribe(
        big, quantity=1_000_000, effective_at=(clock.at - timedelta(days=40)).isoformat()
    )
    assert imported.status_code in (201, 422), imported.text
    normal = billing.subscribe(billing.plan("small", 500))
    assert normal.status_code == 201, normal.text
    head = billing.services.ledger.recorder.max_notification_id() or 0
    response = billing.m.get(f"/v1/subscriptions/{normal.json()['id']}?min_position={head}")
    assert response.status_code == 200, (imported.status_code, response.status_code, response.text)


def test_other_tenant_ids_and_bad_cursors(billing: Billing, globex: Merchant, clock: Clock) -> None:
    plan = billing.plan("pro", 4900)
    sub = billing.subscribe(plan).json()
    billing.settled()
    sid = sub["id"]
    assert globex.get(f"/v1/subscriptions/{sid}").status_code == 404
    for action, body in (
        ("cancel", {}), ("pause", {}), ("resume", {}), ("reactivate", {}),
        ("change-plan", {"plan_id": plan["id"]}),
    ):  # fmt: skip
        response = globex.post(f"/v1/subscriptions/{sid}/{action}", body)
        assert response.status_code == 404, (action, response.status_code, response.text)
    listed = globex.get(f"/v1/subscriptions?customer_id={sub['customer_id']}").json()
    assert listed["data"] == []
    for cursor in ("x", "A" * 500, "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHx4", "%00"):
        response = billing.m.get(f"/v1/subscriptions?cursor={cursor}")
        assert response.status_code in (200, 400, 422), (
            cursor,
            response.status_code,
            response.text,
        )
    response = billing.m.get("/v1/subscriptions?limit=0")
    assert response.status_code == 422


def test_bad_inputs_never_500(billing: Billing, clock: Clock) -> None:
    m = billing.m
    base = {"code": "c1", "name": "C", "currency": "USD", "amount_minor": 100, "interval": "month"}
    bad_plans = [
        {"amount_minor": 10**20}, {"amount_minor": 0}, {"amount_minor": 1.5},
        {"amount_minor": True}, {"interval_count": 0}, {"interval_count": 10**30},
        {"trial_days": -1}, {"trial_days": 10**9}, {"setup_fee_minor": -1},
        {"setup_fee_minor": 10**19}, {"currency": "XXX"}, {"currency": "usd"},
        {"interval": "week"}, {"code": ""}, {"code": "a" * 65}, {"code": "../x"},
        {"name": ""}, {"name": None},
    ]  # fmt: skip
    for change in bad_plans:
        response = m.post("/v1/plans", {**base, **change})
        assert response.status_code < 500, (change, response.status_code, response.text)
    plan = billing.plan("ok", 1000)
    for amount in (0, -1, 10**20, "x"):
        response = m.post(f"/v1/plans/{plan['id']}/price", {"amount_minor": amount})
        assert response.status_code < 500, (amount, response.status_code, response.text)
    customer = m.customer()
    method = m.card(customer["id"], "4242424242424242")
    sub_base = {"customer_id": customer["id"], "plan_id": plan["id"],
                "payment_method_id": method["id"]}  # fmt: skip
    for change in (
        {"quantity": 0}, {"quantity": 10**7}, {"quantity": 1.5}, {"quantity": "2"},
        {"effective_at": "0001-01-01T00:00:00+14:00"}, {"effective_at": "2020-01-01T00:00:00"},
        {"effective_at": "9999-12-31T23:59:59Z"}, {"plan_id": "not-a-uuid"},
        {"payment_method_id": "00000000-0000-0000-0000-000000000000"},
        {"customer_id": "00000000-0000-0000-0000-000000000000"},
    ):  # fmt: skip
        response = m.post("/v1/subscriptions", {**sub_base, **change})
        assert response.status_code < 500, (change, response.status_code, response.text)
    for days in ([5, 3], [0], [], [91], [1] * 31, [1, 1]):
        response = m.client.put(
            "/v1/billing/dunning-policy",
            json={"retry_days": days},
            headers={"Authorization": f"Bearer {m.key}"},
        )
        assert response.status_code < 500, (days, response.status_code, response.text)
    yearly = billing.plan("yearly", 10000, interval="year", interval_count=36)
    old = billing.subscribe(yearly, effective_at="1970-01-01T00:00:01Z")
    assert old.status_code < 500, old.text


def test_other_tenant_cannot_replace_a_card_or_run_our_billing(
    billing: Billing, globex: Merchant, clock: Clock
) -> None:
    sub = billing.subscribe(billing.plan("pro", 4900)).json()
    response = globex.client.put(
        f"/v1/customers/{sub['customer_id']}/payment-methods/{sub['payment_method_id']}",
        json={"card_number": "4242424242424242", "exp_month": 1, "exp_year": 2031},
        headers={"Authorization": f"Bearer {globex.key}"},
    )
    assert response.status_code == 404, response.text
    clock.advance(days=40)
    billing.settled()
    assert globex.post("/v1/billing/run").json()["due"] == 0


def test_switching_a_past_due_subscription_to_another_card_retries_it_at_once(
    billing: Billing, clock: Clock, globex: Merchant
) -> None:
    sub = billing.subscribe(billing.plan("switch", 2200, trial_days=1), INSUFFICIENT_FUNDS_CARD)
    sub = sub.json()
    clock.advance(days=1, seconds=1)
    assert billing.run()["failed"] == 1
    other_card = billing.m.card(sub["customer_id"], GOOD_CARD)
    strangers_card = globex.card(globex.customer()["id"], GOOD_CARD)
    refused = billing.m.post(
        f"/v1/subscriptions/{sub['id']}/payment-method",
        {"payment_method_id": strangers_card["id"]},
    )
    assert_error(refused, 404, "payment_method_not_found")
    switched = billing.m.post(
        f"/v1/subscriptions/{sub['id']}/payment-method", {"payment_method_id": other_card["id"]}
    )
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert body["payment_method_id"] == other_card["id"]
    assert body["status"] == "active" and body["last_charge"]["outcome"] == "succeeded"
    assert billing.read(sub["id"])["status"] == "active"
