"""Billing on the in-memory ledger with a clock the tests move: trials, renewals, dunning,
proration, cancellations, imports, and one charge per period whoever runs the renewal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.gateways.sandbox_book import MemorySandboxBook
from application.commands import ConcurrentModification
from application.idempotency import IdempotencyKeyInProgress
from application.ledger import Ledger
from domain.subscription import (
    ChargeInProgress,
    DunningPolicy,
    InvalidEffectiveAt,
    PlanMismatch,
    Subscription,
)
from tests.unit.application.conftest import Clock

TENANT = "t_billing"
GOOD = "4242424242424242"
SOFT = "4000000000009995"  # insufficient_funds
HARD = "4000000000009987"  # lost_card


def customer(ledger: Ledger, card: str = GOOD, tenant: str = TENANT) -> tuple[UUID, UUID]:
    body = ledger.register_customer(
        tenant_id=tenant, email="a@example.com", name="A", country="US", currency="USD"
    ).body
    method = ledger.attach_payment_method(
        tenant_id=tenant, customer_id=UUID(body["id"]), card_number=card, exp_month=12,
        exp_year=2030,
    ).body  # fmt: skip
    return UUID(body["id"]), UUID(method["id"])


def plan(ledger: Ledger, code: str = "gold", amount: int = 5000, **kw: Any) -> UUID:
    body = ledger.create_plan(
        tenant_id=TENANT, code=code, name=code.title(), currency="USD", amount_minor=amount,
        interval=kw.pop("interval", "month"), **kw,
    ).body  # fmt: skip
    return UUID(body["id"])


def subscribe(ledger: Ledger, plan_id: UUID, card: str = GOOD, **kw: Any) -> dict[str, Any]:
    customer_id, method_id = customer(ledger, card)
    return ledger.create_subscription(
        tenant_id=TENANT, customer_id=customer_id, plan_id=plan_id,
        payment_method_id=method_id, **kw,
    ).body  # fmt: skip


def advance(ledger: Ledger, subscription_id: str) -> dict[str, Any] | None:
    result = ledger.advance_subscription(tenant_id=TENANT, subscription_id=UUID(subscription_id))
    return None if result is None else result.body


def sent(book: MemorySandboxBook) -> int:
    """Card transactions the processor executed (approved or declined)."""
    return len(book._rows)


def test_a_subscription_without_trial_charges_setup_fee_and_first_period(
    ledger: Ledger, clock: Clock
) -> None:
    body = subscribe(ledger, plan(ledger, setup_fee_minor=1000), quantity=2)
    assert body["status"] == "active"
    assert body["last_charge"]["amount_minor"] == 11000
    assert body["current_period_start"] == clock.at.isoformat()
    assert body["current_period_end"] == datetime(2026, 2, 15, 12, tzinfo=UTC).isoformat()
    assert body["mrr_minor"] == 10000


def test_a_declined_first_charge_ends_the_subscription(ledger: Ledger) -> None:
    body = subscribe(ledger, plan(ledger), card=SOFT)
    assert body["status"] == "cancelled"
    assert body["ended_reason"] == "first_payment_declined"
    assert body["mrr_minor"] == 0


def test_a_trial_converts_at_its_end_with_the_setup_fee(ledger: Ledger, clock: Clock) -> None:
    body = subscribe(ledger, plan(ledger, trial_days=14, setup_fee_minor=700))
    assert body["status"] == "trialing" and body["last_charge"] is None
    assert advance(ledger, body["id"]) is None  # nothing due during the trial
    clock.advance(days=14)
    renewed = advance(ledger, body["id"])
    assert renewed is not None and renewed["status"] == "active"
    assert renewed["last_charge"]["amount_minor"] == 5700
    assert renewed["current_period_start"] == clock.at.isoformat()
    clock.advance(days=31)
    again = advance(ledger, body["id"])
    assert again is not None and again["last_charge"]["amount_minor"] == 5000


def test_a_renewal_run_twice_or_concurrently_charges_the_period_once(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger))
    clock.advance(days=31)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            advance(ledger, body["id"])
        except (IdempotencyKeyInProgress, ConcurrentModification, ChargeInProgress) as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    advance(ledger, body["id"])
    advance(ledger, body["id"])
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    assert sub.state["period_index"] == 1
    assert sent(book) == 2  # the first period and one renewal


def test_dunning_retries_then_recovers_on_a_new_card_with_the_same_period(
    ledger: Ledger, clock: Clock
) -> None:
    body = subscribe(ledger, plan(ledger, trial_days=7), card=SOFT)
    clock.advance(days=7)
    failed = advance(ledger, body["id"])
    assert failed is not None and failed["status"] == "past_due"
    assert failed["dunning"]["failures"] == 1
    period = (failed["current_period_start"], failed["current_period_end"])
    clock.advance(days=1)
    retried = advance(ledger, body["id"])
    assert retried is not None and retried["dunning"]["failures"] == 2
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    ledger.replace_card(
        tenant_id=TENANT, customer_id=sub.customer_id,
        payment_method_id=UUID(sub.state["payment_method_id"]), card_number=GOOD,
        exp_month=1, exp_year=2031,
    )  # fmt: skip
    recovered = ledger.retry_subscription_now(tenant_id=TENANT, subscription_id=sub.id)
    assert recovered is not None and recovered.body["status"] == "active"
    assert recovered.body["dunning"] is None
    # Recovery keeps the failed period's dates.
    assert (
        recovered.body["current_period_end"]
        == (datetime.fromisoformat(body["trial_end"]) + timedelta(days=31)).isoformat()
    )
    assert (recovered.body["current_period_start"], recovered.body["current_period_end"]) == period
    assert period[0] == body["trial_end"]


def test_exhausted_retries_churn_the_subscription(ledger: Ledger, clock: Clock) -> None:
    ledger.set_dunning_policy(tenant_id=TENANT, policy=DunningPolicy(retry_days=(1, 3)))
    body = subscribe(ledger, plan(ledger, trial_days=1), card=SOFT)
    clock.advance(days=1)
    assert advance(ledger, body["id"])["status"] == "past_due"  # type: ignore[index]
    clock.advance(days=1)
    assert advance(ledger, body["id"])["status"] == "past_due"  # type: ignore[index]
    clock.advance(days=2)
    churned = advance(ledger, body["id"])
    assert churned is not None and churned["status"] == "churned"
    assert churned["ended_reason"] == "dunning_exhausted"


def test_a_hard_decline_is_never_retried_and_churns_when_the_window_closes(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger, trial_days=1), card=HARD)
    clock.advance(days=1)
    failed = advance(ledger, body["id"])
    assert failed is not None and failed["dunning"]["hard_decline"] is True
    assert failed["dunning"]["next_retry_at"] is None
    attempts = sent(book)
    for _ in range(15):
        clock.advance(days=1)
        advance(ledger, body["id"])
    assert sent(book) == attempts
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    assert sub.status.value == "churned"


def test_price_step_down_per_retry_stops_at_the_floor(ledger: Ledger, clock: Clock) -> None:
    ledger.set_dunning_policy(
        tenant_id=TENANT,
        policy=DunningPolicy(retry_days=(1, 2, 3), step_down_bps=2000, floor_bps=7000),
    )
    body = subscribe(ledger, plan(ledger, amount=10000, trial_days=1), card=SOFT)
    clock.advance(days=1)
    amounts = [advance(ledger, body["id"])["last_charge"]["amount_minor"]]  # type: ignore[index]
    for _ in range(2):
        clock.advance(days=1)
        amounts.append(advance(ledger, body["id"])["last_charge"]["amount_minor"])  # type: ignore[index]
    assert amounts == [10000, 8000, 7000]


def test_an_upgrade_charges_the_prorated_difference_to_the_second(
    ledger: Ledger, clock: Clock
) -> None:
    silver, gold = plan(ledger, "silver", 3000), plan(ledger, "gold", 9000)
    body = subscribe(ledger, silver)
    start = datetime.fromisoformat(body["current_period_start"])
    end = datetime.fromisoformat(body["current_period_end"])
    clock.advance(days=10, seconds=7)
    upgraded = ledger.change_subscription_plan(
        tenant_id=TENANT, subscription_id=UUID(body["id"]), plan_id=gold
    ).body
    left = int((end - clock.at).total_seconds())
    total = int((end - start).total_seconds())
    assert upgraded["plan_id"] == str(gold) and upgraded["mrr_minor"] == 9000
    assert upgraded["last_charge"]["amount_minor"] == 6000 * left // total
    assert upgraded["current_period_end"] == body["current_period_end"]


def test_a_downgrade_applies_at_the_period_end(ledger: Ledger, clock: Clock) -> None:
    silver, gold = plan(ledger, "silver", 3000), plan(ledger, "gold", 9000)
    body = subscribe(ledger, gold)
    changed = ledger.change_subscription_plan(
        tenant_id=TENANT, subscription_id=UUID(body["id"]), plan_id=silver
    ).body
    assert changed["plan_id"] == str(gold) and changed["scheduled_change"]["plan_id"] == str(silver)
    clock.advance(days=31)
    renewed = advance(ledger, body["id"])
    assert renewed is not None and renewed["plan_id"] == str(silver)
    assert renewed["last_charge"]["amount_minor"] == 3000


def test_a_plan_in_another_interval_is_refused(ledger: Ledger) -> None:
    body = subscribe(ledger, plan(ledger))
    yearly = plan(ledger, "yearly", 50000, interval="year")
    with pytest.raises(PlanMismatch):
        ledger.change_subscription_plan(
            tenant_id=TENANT, subscription_id=UUID(body["id"]), plan_id=yearly
        )


def test_a_cancellation_at_period_end_ends_it_then_and_reactivate_withdraws_it(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    first = subscribe(ledger, plan(ledger))
    sid = UUID(first["id"])
    cancelled = ledger.cancel_subscription(
        tenant_id=TENANT, subscription_id=sid, at_period_end=True
    )
    assert cancelled.body["cancel_at_period_end"] is True
    withdrawn = ledger.reactivate_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert withdrawn["cancel_at_period_end"] is False and withdrawn["status"] == "active"
    ledger.cancel_subscription(tenant_id=TENANT, subscription_id=sid, at_period_end=True)
    clock.advance(days=31)
    ended = advance(ledger, first["id"])
    assert ended is not None and ended["status"] == "cancelled"
    assert ended["ended_at"] == first["current_period_end"]
    assert sent(book) == 1  # never renewed


def test_an_import_bills_past_periods_elsewhere_and_charges_the_next_renewal(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    started = datetime(2024, 3, 1, tzinfo=UTC)
    body = subscribe(ledger, plan(ledger), effective_at=started)
    assert body["status"] == "active" and sent(book) == 0
    assert body["current_period_start"] == datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    assert body["current_period_end"] == datetime(2026, 2, 1, tzinfo=UTC).isoformat()
    assert advance(ledger, body["id"]) is None
    clock.at = datetime(2026, 2, 1, 1, tzinfo=UTC)
    renewed = advance(ledger, body["id"])
    assert renewed is not None and sent(book) == 1
    with pytest.raises(InvalidEffectiveAt):
        ledger.pause_subscription(
            tenant_id=TENANT, subscription_id=UUID(body["id"]), effective_at=started
        )


def test_effective_at_may_not_be_in_the_future(ledger: Ledger, clock: Clock) -> None:
    with pytest.raises(InvalidEffectiveAt):
        subscribe(ledger, plan(ledger), effective_at=clock.at + timedelta(days=1))


def test_pause_stops_renewals_and_resume_restarts_them(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger))
    sid = UUID(body["id"])
    paused = ledger.pause_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert paused["status"] == "paused" and paused["mrr_minor"] == 0
    clock.advance(days=60)
    assert advance(ledger, body["id"]) is None
    resumed = ledger.resume_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert resumed["status"] == "active" and resumed["mrr_minor"] == 5000
    renewed = advance(ledger, body["id"])
    assert renewed is not None and renewed["current_period_start"] == clock.at.isoformat()
    assert sent(book) == 2


def test_an_ended_subscription_is_reactivated_with_a_charge(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger))
    sid = UUID(body["id"])
    ledger.cancel_subscription(tenant_id=TENANT, subscription_id=sid)
    clock.advance(days=40)
    back = ledger.reactivate_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert back["status"] == "active"
    assert back["current_period_start"] == clock.at.isoformat()
    assert sent(book) == 2


def test_every_event_carries_its_changes_and_due_instant(ledger: Ledger, clock: Clock) -> None:
    body = subscribe(ledger, plan(ledger))
    events = list(ledger.events.get(UUID(body["id"])))  # type: ignore[attr-defined]
    assert [type(e).__name__ for e in events] == ["Started", "ChargeRequested", "ChargeSucceeded"]
    assert events[-1].changes["due_at"] == body["current_period_end"]
    assert events[-1].mrr["points"][0][1] == 5000
    assert isinstance(ledger.repository.get(UUID(body["id"])), Subscription)


def test_the_account_updater_refreshes_an_expiring_card_and_recovers_a_hard_decline(
    ledger: Ledger, clock: Clock
) -> None:
    customer_id = UUID(
        ledger.register_customer(
            tenant_id=TENANT, email="u@example.com", name="U", country="US", currency="USD"
        ).body["id"]
    )
    method = ledger.attach_payment_method(
        tenant_id=TENANT, customer_id=customer_id, card_number="4000000000000069",
        exp_month=12, exp_year=2026,
    ).body  # fmt: skip
    body = ledger.create_subscription(
        tenant_id=TENANT, customer_id=customer_id, plan_id=plan(ledger, trial_days=3),
        payment_method_id=UUID(method["id"]),
    ).body  # fmt: skip
    clock.advance(days=3)
    failed = advance(ledger, body["id"])
    assert failed is not None and failed["dunning"]["hard_decline"] is True
    assert ledger.refresh_expiring_cards(
        tenant_id=TENANT, customer_id=customer_id, within_days=400
    ) == [method["id"]]
    card = ledger.get_customer(TENANT, customer_id).payment_method(method["id"])
    assert (card["exp_month"], card["exp_year"]) == (12, 2030)
    retried = ledger.retry_past_due(
        tenant_id=TENANT, subscription_ids=[UUID(body["id"])], payment_method_id=method["id"]
    )
    assert retried == 1
    assert ledger.get_subscription(TENANT, UUID(body["id"])).status.value == "active"


def test_the_account_updater_leaves_cards_far_from_expiry_and_closed_accounts(
    ledger: Ledger,
) -> None:
    customer_id, method_id = customer(ledger)  # expires 12/2030
    assert ledger.refresh_expiring_cards(tenant_id=TENANT, customer_id=customer_id) == []
    lost_customer, _ = customer(ledger, HARD)
    assert (
        ledger.refresh_expiring_cards(tenant_id=TENANT, customer_id=lost_customer, within_days=3650)
        == []
    )
