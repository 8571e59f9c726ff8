"""The subscriptions read model on real PostgreSQL: rows copy the aggregates' state, the due
query finds what the scheduler must look at, and lists page with a cursor.

Histories are made through the real aggregates (``Plan``, ``Subscription``) and saved in the
log with the ledger, then the projection catches up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.bootstrap import Services
from domain.plan import Plan
from domain.subscription import DunningPolicy, Subscription

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY = DunningPolicy()


def a_plan(tenant_id: str = "acme", code: str = "gold", amount_minor: int = 5_000) -> Plan:
    return Plan.create(
        tenant_id=tenant_id,
        code=code,
        name=code.title(),
        currency="USD",
        amount_minor=amount_minor,
        interval="month",
    )


def a_subscription(
    plan: Plan,
    *,
    customer_id: UUID | None = None,
    trial_days: int = 0,
    started_days_ago: float = 0,
    imported: bool = False,
    quantity: int = 1,
) -> Subscription:
    return Subscription.start(
        tenant_id=plan.tenant_id,
        customer_id=customer_id or uuid4(),
        terms=plan.terms,
        quantity=quantity,
        payment_method_id=str(uuid4()),
        trial_days=trial_days,
        effective_at=NOW - timedelta(days=started_days_ago),
        now=NOW,
        imported=imported,
    )


def charge(subscription: Subscription, purpose: str, period_index: int, retry: int = 0) -> None:
    subscription.request_charge(
        order_id=uuid4(),
        purpose=purpose,
        amount_minor=subscription.price_minor,
        key=subscription._charge_key(period_index, retry),
        now=NOW,
        details={"period_index": period_index, "retry": retry},
    )


def project(services: Services, *aggregates: Any) -> None:
    services.ledger.save(*aggregates)
    services.runners["subscriptions"].catch_up()


def test_a_row_holds_the_state_of_its_subscription_after_each_kind_of_event(
    services: Services,
) -> None:
    plan = a_plan()
    paid = a_subscription(plan)
    charge(paid, "first", 0)
    paid.charge_succeeded(now=NOW)
    failing = a_subscription(plan, imported=True, started_days_ago=40)
    charge(failing, "renewal", failing.state["period_index"] + 1)
    failing.charge_failed(decline_code="insufficient_funds", hard=False, now=NOW, policy=POLICY)
    pending = a_subscription(plan)
    charge(pending, "first", 0)
    cancelled = a_subscription(plan, trial_days=14)
    cancelled.cancel(at_period_end=False, effective_at=NOW, policy=POLICY)
    project(services, plan, paid, failing, pending, cancelled)

    view = services.subscriptions
    for subscription in (paid, failing, pending, cancelled):
        row = view.get("acme", subscription.id)
        assert row is not None
        assert row["state"] == subscription.state  # replay equals live
        assert row["status"] == subscription.state["status"]
        assert row["created_at"] == datetime.fromisoformat(subscription.state["started_at"])
    paid_row = view.get("acme", paid.id)
    assert paid_row["status"] == "active"
    assert paid_row["mrr_minor"] == 5_000
    assert paid_row["paid_through"] == paid_row["period_end"] > NOW
    assert paid_row["due_at"] == paid_row["period_end"]
    assert paid_row["pending_charge"] is None
    failing_row = view.get("acme", failing.id)
    assert failing_row["status"] == "past_due"
    assert failing_row["dunning"]["failures"] == 1
    assert failing_row["due_at"] == NOW + timedelta(days=POLICY.retry_days[0])
    pending_row = view.get("acme", pending.id)
    assert pending_row["status"] == "incomplete"
    assert pending_row["pending_charge"]["key"] == pending.first_charge_key()
    assert pending_row["due_at"] == NOW + Subscription.CHARGE_LEASE
    cancelled_row = view.get("acme", cancelled.id)
    assert (cancelled_row["status"], cancelled_row["ended_reason"]) == ("cancelled", "requested")
    assert cancelled_row["due_at"] is None
    assert view.get("globex", paid.id) is None  # another tenant's is not found


def test_the_due_query_lists_subscriptions_to_look_at_longest_due_first_across_tenants(
    services: Services,
) -> None:
    acme, globex = a_plan(), a_plan("globex")
    trial_ended_2_days_ago = a_subscription(acme, trial_days=1, started_days_ago=3)
    trial_ended_yesterday = a_subscription(globex, trial_days=1, started_days_ago=2)
    active = a_subscription(acme, imported=True, started_days_ago=40)
    ended = a_subscription(acme, trial_days=1, started_days_ago=5)
    ended.cancel(at_period_end=False, effective_at=NOW, policy=POLICY)
    project(services, acme, globex, trial_ended_2_days_ago, trial_ended_yesterday, active, ended)

    view = services.subscriptions
    assert view.due(NOW, 10) == [
        ("acme", trial_ended_2_days_ago.id),
        ("globex", trial_ended_yesterday.id),
    ]
    assert view.due(NOW, 1) == [("acme", trial_ended_2_days_ago.id)]
    assert view.due(NOW, 10, tenant_id="globex") == [("globex", trial_ended_yesterday.id)]
    period_end = datetime.fromisoformat(active.state["period_end"])
    assert ("acme", active.id) not in view.due(period_end - timedelta(seconds=1), 10)
    assert view.due(period_end, 10)[-1] == ("acme", active.id)
    assert all(s != ended.id for _, s in view.due(NOW + timedelta(days=400), 10))


def test_lists_filter_by_customer_and_status_and_page_with_a_cursor(services: Services) -> None:
    plan = a_plan()
    customer_id = uuid4()
    mine = [
        a_subscription(plan, customer_id=customer_id, trial_days=7, started_days_ago=days)
        for days in (1, 2, 3)
    ]
    other = a_subscription(plan, imported=True, started_days_ago=10)
    project(services, plan, *mine, other)

    view = services.subscriptions
    first_page = view.list("acme", customer_id=customer_id, limit=2)
    assert [row["subscription_id"] for row in first_page] == [mine[0].id, mine[1].id]
    last = first_page[-1]
    second_page = view.list(
        "acme", customer_id=customer_id, after=(last["created_at"], last["subscription_id"])
    )
    assert [row["subscription_id"] for row in second_page] == [mine[2].id]
    assert [row["subscription_id"] for row in view.list("acme", status="active")] == [other.id]
    assert view.list("globex") == []


def test_plans_are_listed_with_their_current_price(services: Services) -> None:
    gold, silver = a_plan(code="gold"), a_plan(code="silver", amount_minor=2_000)
    project(services, gold)
    project(services, silver)
    gold.change_price(6_000)
    project(services, gold)

    view = services.subscriptions
    plans = view.plans("acme")
    assert [(p["code"], p["amount_minor"]) for p in plans] == [("silver", 2_000), ("gold", 6_000)]
    row = view.plan("acme", gold.id)
    assert row is not None
    assert (row["interval"], row["interval_count"], row["trial_days"]) == ("month", 1, 0)
    assert row["updated_at"] > row["created_at"]
    assert view.plans("acme", after=(plans[0]["created_at"], plans[0]["plan_id"])) == [plans[1]]
    assert view.plan("globex", gold.id) is None
