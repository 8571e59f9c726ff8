"""``POST /v1/billing/run``: an admin runs what is due of their own tenant's subscriptions now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.bootstrap import Services
from tests.e2e.conftest import Merchant, assert_error

ZERO = {"renewed": 0, "failed": 0, "ended": 0, "churned": 0, "unknown": 0, "errors": 0}


def trial_ended(services: Services, tenant_id: str) -> UUID:
    """A subscription whose one-day trial ended yesterday, started through the commands two
    days ago, once the read model shows it."""
    ledger = services.ledger
    customer = ledger.register_customer(
        tenant_id=tenant_id, email="a@example.com", name="Ada", country="US", currency="USD"
    ).body
    method = ledger.attach_payment_method(
        tenant_id=tenant_id,
        customer_id=UUID(customer["id"]),
        card_number="4242424242424242",
        exp_month=12,
        exp_year=datetime.now(UTC).year + 2,
    ).body
    plan = ledger.create_plan(
        tenant_id=tenant_id,
        code="gold",
        name="Gold",
        currency="USD",
        amount_minor=5_000,
        interval="month",
        trial_days=1,
    ).body
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    real_clock, ledger.now = ledger.now, lambda: two_days_ago
    try:
        started = ledger.create_subscription(
            tenant_id=tenant_id,
            customer_id=UUID(customer["id"]),
            plan_id=UUID(plan["id"]),
            payment_method_id=UUID(method["id"]),
        )
    finally:
        ledger.now = real_clock
    assert started.position is not None
    assert services.waiter.wait(services.subscriptions, started.position, timeout_s=10)
    return UUID(started.body["id"])


def test_an_admin_run_renews_what_is_due_of_its_own_tenant_only_and_is_safe_to_repeat(
    running_services: Services, acme: Merchant
) -> None:
    acme_subscription = trial_ended(running_services, "acme")
    globex_subscription = trial_ended(running_services, "globex")

    first = acme.post("/v1/billing/run")
    again = acme.post("/v1/billing/run")

    assert first.status_code == 200, first.text
    assert first.json() == {**ZERO, "due": 1, "renewed": 1, "skipped": 0}
    assert again.status_code == 200, again.text
    assert again.json()["renewed"] == 0
    ledger = running_services.ledger
    assert ledger.get_subscription("acme", acme_subscription).state["status"] == "active"
    assert ledger.get_subscription("globex", globex_subscription).state["status"] == "trialing"


def test_only_an_admin_may_run_billing(acme: Merchant, key_of: Any) -> None:
    manager = Merchant(acme.client, key_of("acme", "manager"))

    assert_error(manager.post("/v1/billing/run"), 403, "permission_denied")
    assert_error(acme.client.post("/v1/billing/run"), 401, "unauthenticated")
