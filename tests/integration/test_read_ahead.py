"""Reading ahead (``LedgerBase.reading_ahead``/``read_ahead``) on PostgreSQL: many aggregates in
one round trip, each served once, and never a lost update when one changed in between; and the
batched renewals built on it charge exactly as one at a time does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError

from adapters.bootstrap import Services
from application.commands import ConcurrentModification
from domain.customer import Customer

TENANT = "acme"


def customers(services: Services, count: int) -> list[UUID]:
    return [
        UUID(
            services.ledger.register_customer(
                tenant_id=TENANT,
                email=f"c{i}@example.com",
                name="C",
                country="US",
                currency="USD",
            ).body["id"]
        )  # fmt: skip
        for i in range(count)
    ]


def test_aggregates_read_ahead_in_one_query_are_served_once_each(services: Services) -> None:
    ledger = services.ledger
    ids = customers(services, 3)
    missing = uuid4()
    events = ledger.recorder.select_events_of([*ids, missing])  # type: ignore[attr-defined]
    assert sorted({e.originator_id for e in events}) == sorted(ids)
    with ledger.reading_ahead():
        found = ledger.read_ahead([*ids, missing])
        assert found[missing] is None and all(isinstance(found[i], Customer) for i in ids)
        assert ledger.repository.get(ids[0]) is found[ids[0]]  # from memory
        assert ledger.repository.get(ids[0]) is not found[ids[0]]  # once: then read again
        with pytest.raises(AggregateNotFoundError):
            ledger.repository.get(missing)
    # Outside the block nothing is served from memory.
    assert ledger.repository.get(ids[1]) is not found[ids[1]]


def test_an_aggregate_changed_after_it_was_read_ahead_conflicts_instead_of_losing_the_change(
    services: Services,
) -> None:
    ledger = services.ledger
    customer_id = customers(services, 1)[0]
    with ledger.reading_ahead():
        ledger.read_ahead([customer_id])
        stale = ledger.get_customer(TENANT, customer_id)
        # Meanwhile another request attaches a card (a new version of the customer).
        ledger.attach_payment_method(
            tenant_id=TENANT, customer_id=customer_id, card_number="5555555555554444",
            exp_month=12, exp_year=2031,
        )  # fmt: skip
        stale.attach_payment_method(
            uuid4(), ledger.vault.tokenize(
                card_number="4242424242424242", exp_month=1, exp_year=2032, cvc=None
            ),
        )  # fmt: skip
        with pytest.raises(ConcurrentModification):
            ledger.save_all([stale])
    assert len(ledger.get_customer(TENANT, customer_id).payment_methods) == 1


def test_batched_renewals_charge_each_due_subscription_once(services: Services) -> None:
    ledger = services.ledger
    plan = ledger.create_plan(
        tenant_id=TENANT, code="monthly", name="Monthly", currency="USD", amount_minor=1500,
        interval="month",
    ).body  # fmt: skip
    started = datetime.now(UTC) - timedelta(days=40)
    ids = []
    for customer_id in customers(services, 5):
        method = ledger.attach_payment_method(
            tenant_id=TENANT, customer_id=customer_id, card_number="4242424242424242",
            exp_month=12, exp_year=2031,
        ).body  # fmt: skip
        ids.append(
            UUID(
                ledger.create_subscription(
                    tenant_id=TENANT, customer_id=customer_id, plan_id=UUID(plan["id"]),
                    payment_method_id=UUID(method["id"]), effective_at=started,
                ).body["id"]
            )
        )  # fmt: skip
    later = datetime.now(UTC) + timedelta(days=31)
    real_now = ledger.now
    ledger.now = lambda: later  # type: ignore[method-assign]
    try:
        first = ledger.advance_subscriptions([(TENANT, s) for s in ids])
        again = ledger.advance_subscriptions([(TENANT, s) for s in ids])
    finally:
        ledger.now = real_now  # type: ignore[method-assign]
    assert [r.body["status"] for r in first] == ["active"] * 5  # type: ignore[union-attr]
    assert again == [None] * 5  # nothing due any more
    assert services.sandbox_book is not None
    charges = services.sandbox_book.transactions(TENANT)
    assert [t.status for _, t in charges] == ["succeeded"] * 5
