"""The billing scheduler on real PostgreSQL and Redis: a period is charged once, however often
and however concurrently the due work is run — twice in a row, by two processes at the same
instant, by a message delivered twice — counted in the sandbox processor's own books."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.billing_scheduler import BILLING_QUEUE, run_due
from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings
from tests.integration.conftest import Shop
from tests.integration.payment_fakes import TENANT, charges, install_faulty_gateway

pytestmark = pytest.mark.integration

PRICE_MINOR = 5_000
DECLINED_CARD = "4000000000009995"  # insufficient_funds: a soft decline


@pytest.fixture
def second_process(test_settings: Settings, services: Services) -> Iterator[Services]:
    """Another process on the same database (its own pools, objects and scheduler)."""
    other = bootstrap(test_settings)
    yield other
    other.close()


def trials_ended(services: Services, count: int, card: str = "4242424242424242") -> list[UUID]:
    """``count`` subscriptions whose one-day trial ended yesterday: their first period is due.

    They are started through the commands two days ago (the ledger's clock is moved back for
    the start only), and the read model has caught up with them.
    """
    ledger = services.ledger
    plan = ledger.create_plan(
        tenant_id=TENANT,
        code=f"gold-{card[-4:]}",
        name="Gold",
        currency="USD",
        amount_minor=PRICE_MINOR,
        interval="month",
        trial_days=1,
    ).body
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    real_clock = ledger.now
    ledger.now = lambda: two_days_ago
    try:
        subscription_ids = []
        for _ in range(count):
            customer_id, method_id = Shop(services).customer(card=card)
            started = ledger.create_subscription(
                tenant_id=TENANT,
                customer_id=customer_id,
                plan_id=UUID(plan["id"]),
                payment_method_id=UUID(method_id),
            ).body
            assert started["status"] == "trialing"
            subscription_ids.append(UUID(started["id"]))
    finally:
        ledger.now = real_clock
    services.runners["subscriptions"].catch_up()
    assert len(services.subscriptions.due(ledger.now(), 100)) == count
    return subscription_ids


def state(services: Services, subscription_id: UUID) -> dict[str, Any]:
    return services.ledger.get_subscription(TENANT, subscription_id).state


def test_running_the_due_work_twice_charges_each_period_once(services: Services) -> None:
    subscription_ids = trials_ended(services, 3)

    first = run_due(services.ledger, services.subscriptions)
    again = run_due(services.ledger, services.subscriptions)  # the read model is behind
    services.runners["subscriptions"].catch_up()
    after_catching_up = run_due(services.ledger, services.subscriptions)

    assert (first["due"], first["renewed"]) == (3, 3)
    assert (again["due"], again["renewed"], again["skipped"]) == (3, 0, 3)
    assert after_catching_up["due"] == 0
    assert len(charges(services)) == 3
    assert {t.amount_minor for t in charges(services)} == {PRICE_MINOR}
    for subscription_id in subscription_ids:
        paid = state(services, subscription_id)
        assert (paid["status"], paid["period_index"], paid["charges"]) == ("active", 0, 1)
        row = services.subscriptions.get(TENANT, subscription_id)
        assert row is not None and row["state"] == paid
        assert row["due_at"] == datetime.fromisoformat(paid["period_end"])


def test_a_second_process_running_while_the_first_charges_charges_nothing(
    services: Services, second_process: Services
) -> None:
    (subscription_id,) = trials_ended(services, 1)
    hooked = install_faulty_gateway(services)
    other: list[dict[str, int]] = []
    # The second process runs the due work while the first is at the processor.
    hooked.before = lambda: other.append(
        run_due(second_process.ledger, second_process.subscriptions)
    )

    first = run_due(services.ledger, services.subscriptions)

    assert first["renewed"] == 1
    assert other == [{**other[0], "due": 1, "skipped": 1, "renewed": 0}]
    assert len(charges(services)) == 1
    assert state(services, subscription_id)["charges"] == 1


def test_two_processes_running_at_the_same_instant_charge_each_period_once(
    services: Services, second_process: Services
) -> None:
    subscription_ids = trials_ended(services, 8)
    start = threading.Barrier(2)
    summaries: list[dict[str, int]] = []

    def run(process: Services) -> None:
        start.wait()
        summaries.append(run_due(process.ledger, process.subscriptions))

    threads = [threading.Thread(target=run, args=(p,)) for p in (services, second_process)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(summaries) == 2
    assert all(s["renewed"] + s["skipped"] == 8 for s in summaries)
    assert sum(s["renewed"] for s in summaries) == 8
    assert sum(s["errors"] + s["failed"] + s["unknown"] for s in summaries) == 0
    assert len(charges(services)) == 8
    assert all(state(services, s)["charges"] == 1 for s in subscription_ids)


def test_the_scheduler_enqueues_due_subscriptions_and_the_workers_charge_each_once(
    services: Services,
) -> None:
    subscription_ids = trials_ended(services, 4)
    scheduler = services.billing

    assert scheduler.tick() == 4
    assert scheduler.tick() == 0  # still on the queue: not enqueued again
    # At-least-once delivery: the same message delivered again charges nothing more.
    scheduler.advance_subscription.send(TENANT, str(subscription_ids[0]))
    worker = services.start_worker(threads=4)
    services.broker.join(BILLING_QUEUE, timeout=30_000)
    worker.join()

    assert len(charges(services)) == 4
    assert all(state(services, s)["status"] == "active" for s in subscription_ids)
    assert all(state(services, s)["charges"] == 1 for s in subscription_ids)


def test_a_declined_renewal_is_counted_failed_and_retried_only_when_its_retry_is_due(
    services: Services,
) -> None:
    (subscription_id,) = trials_ended(services, 1, card=DECLINED_CARD)

    first = run_due(services.ledger, services.subscriptions, tenant_id=TENANT)
    services.runners["subscriptions"].catch_up()
    again = run_due(services.ledger, services.subscriptions, tenant_id=TENANT)
    other_tenant = run_due(services.ledger, services.subscriptions, tenant_id="globex")

    assert first["failed"] == 1
    assert again["due"] == 0  # the first retry is due tomorrow
    assert other_tenant["due"] == 0
    past_due = state(services, subscription_id)
    assert past_due["status"] == "past_due"
    assert past_due["dunning"]["failures"] == 1
    assert [t.status for _, t in services.sandbox_book.transactions(TENANT)] == ["declined"]


def test_one_process_at_a_time_enqueues_the_due_work_and_another_takes_over_when_it_stops(
    services: Services, second_process: Services
) -> None:
    trials_ended(services, 2)

    assert services.billing.tick() == 2
    assert second_process.billing.tick() == 0  # standing by: the first holds the lock
    services.billing.stop()
    assert second_process.billing.tick() == 2
