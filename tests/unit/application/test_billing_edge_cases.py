"""Billing edge cases a break-it review found (each failed before its fix): proration after
a resume, setup fees through dunning, amounts beyond one charge, churn at its deadline, reserved
renewal keys, and what held up (lost answers, scheme limits, concurrent reactivations)."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.gateways.sandbox_book import MemorySandboxBook
from application.commands import ConcurrentModification, GatewayOutcomeUnknown
from application.idempotency import IdempotencyKeyInProgress
from application.ledger import Ledger
from domain.errors import DomainError, InvalidInput
from domain.subscription import ChargeInProgress, DunningPolicy, SubscriptionNotActive
from tests.unit.application.conftest import Clock
from tests.unit.application.test_billing import (
    GOOD,
    HARD,
    SOFT,
    TENANT,
    advance,
    customer,
    plan,
    sent,
    subscribe,
)

TIMEOUT = "4000000000000911"


def charged_total(book: MemorySandboxBook) -> list[Any]:
    return list(book._rows)


# 1 ---------------------------------------------------------------------------------------------
def test_upgrade_after_scheduled_downgrade_is_not_undone_at_renewal(
    ledger: Ledger, clock: Clock
) -> None:
    """Gold → silver (downgrade, scheduled) then gold → platinum (upgrade, paid now): the
    renewal must bill platinum, not the stale scheduled silver."""
    silver, gold, platinum = (
        plan(ledger, "silver", 3000),
        plan(ledger, "gold", 5000),
        plan(ledger, "platinum", 9000),
    )
    body = subscribe(ledger, gold)
    sid = UUID(body["id"])
    ledger.change_subscription_plan(tenant_id=TENANT, subscription_id=sid, plan_id=silver)
    clock.advance(days=1)
    upgraded = ledger.change_subscription_plan(
        tenant_id=TENANT, subscription_id=sid, plan_id=platinum
    ).body
    assert upgraded["plan_id"] == str(platinum)
    assert upgraded["scheduled_change"] is None, "the paid upgrade leaves a scheduled downgrade"
    clock.advance(days=31)
    renewed = advance(ledger, body["id"])
    assert renewed is not None
    assert renewed["plan_id"] == str(platinum)
    assert renewed["last_charge"]["amount_minor"] == 9000


# 2 ---------------------------------------------------------------------------------------------
def test_upgrade_right_after_resume_is_prorated_over_the_paid_period(
    ledger: Ledger, clock: Clock
) -> None:
    """Paid 15 Jan → 15 Feb; paused on 16 Jan, resumed on 13 Feb (2 days of paid time left);
    an upgrade now must charge about 2/31 of the difference, not all of it."""
    silver, gold = plan(ledger, "silver", 3000), plan(ledger, "gold", 9000)
    body = subscribe(ledger, silver)
    sid = UUID(body["id"])
    clock.advance(days=1)
    ledger.pause_subscription(tenant_id=TENANT, subscription_id=sid)
    clock.advance(days=28)  # 13 Feb
    ledger.resume_subscription(tenant_id=TENANT, subscription_id=sid)
    up = ledger.change_subscription_plan(tenant_id=TENANT, subscription_id=sid, plan_id=gold).body
    charged = up["last_charge"]["amount_minor"]
    # At most the difference for the 2 days left of a 31-day period (~387), never all 6000.
    assert charged <= 6000 * 2 * 86400 // (31 * 86400) + 1, charged


# 3 ---------------------------------------------------------------------------------------------
def test_auto_churn_after_one_day_does_not_churn_at_the_first_failure(
    ledger: Ledger, clock: Clock
) -> None:
    ledger.set_dunning_policy(tenant_id=TENANT, policy=DunningPolicy(auto_churn_after_days=1))
    body = subscribe(ledger, plan(ledger, trial_days=1), card=SOFT)
    clock.advance(days=1)
    failed = advance(ledger, body["id"])
    assert failed is not None
    assert failed["status"] == "past_due", (failed["status"], failed["ended_reason"])


# 4 ---------------------------------------------------------------------------------------------
def test_setup_fee_survives_a_failed_trial_conversion(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    """Trial → conversion (period + setup fee) declined → card replaced → recovery: the
    setup fee must be charged (or still owed), not silently dropped."""
    body = subscribe(ledger, plan(ledger, trial_days=7, setup_fee_minor=700), card=SOFT)
    clock.advance(days=7)
    failed = advance(ledger, body["id"])
    assert failed is not None and failed["status"] == "past_due"
    assert failed["last_charge"]["amount_minor"] == 5700
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    ledger.replace_card(
        tenant_id=TENANT, customer_id=sub.customer_id,
        payment_method_id=UUID(sub.state["payment_method_id"]), card_number=GOOD,
        exp_month=1, exp_year=2031,
    )  # fmt: skip
    recovered = ledger.retry_subscription_now(tenant_id=TENANT, subscription_id=sub.id)
    assert recovered is not None and recovered.body["status"] == "active"
    owed = int(ledger.get_subscription(TENANT, sub.id).state.get("setup_fee_minor") or 0)
    assert recovered.body["last_charge"]["amount_minor"] == 5700 or owed == 700, (
        recovered.body["last_charge"]["amount_minor"],
        owed,
    )


# 5 ---------------------------------------------------------------------------------------------
def test_price_beyond_the_amount_maximum_is_refused_at_subscribe(
    ledger: Ledger,
) -> None:
    """amount 10^15 × quantity 1000 in a trial is accepted; its conversion can never be
    charged (order total above 10^15) — it must be refused up front."""
    big = plan(ledger, "big", 10**15, trial_days=1)
    with pytest.raises(InvalidInput):
        subscribe(ledger, big, quantity=1000)


def test_a_trial_whose_price_overflows_is_not_stuck_forever(ledger: Ledger, clock: Clock) -> None:
    big = plan(ledger, "big", 10**15, trial_days=1)
    try:
        body = subscribe(ledger, big, quantity=1000)
    except InvalidInput:
        return  # refused up front: fine
    clock.advance(days=1)
    errors = []
    for _ in range(40):
        try:
            advance(ledger, body["id"])
        except DomainError as error:
            errors.append(error.code)
        clock.advance(days=1)
    status = ledger.get_subscription(TENANT, UUID(body["id"])).status.value
    assert status != "trialing", f"still trialing after 40 days; every run raised {set(errors)}"


def test_imported_mrr_fits_the_read_models_bigint(ledger: Ledger) -> None:
    """An import charges nothing, so nothing checks the price: MRR 10^21 goes into a Started
    event that the subscriptions/MRR projections store in bigint columns (max 9.2e18)."""
    big = plan(ledger, "big", 10**15)
    try:
        body = subscribe(
            ledger, big, quantity=1_000_000, effective_at=datetime(2025, 1, 1, tzinfo=UTC)
        )
    except InvalidInput:
        return
    assert body["mrr_minor"] < 2**63, body["mrr_minor"]


# 6 ---------------------------------------------------------------------------------------------
def test_step_down_to_zero_amount_does_not_break_the_retry(ledger: Ledger, clock: Clock) -> None:
    ledger.set_dunning_policy(
        tenant_id=TENANT,
        policy=DunningPolicy(retry_days=(1, 2, 3), step_down_bps=6000, floor_bps=1),
    )
    body = subscribe(ledger, plan(ledger, "cheap", 1, trial_days=1), card=SOFT)
    clock.advance(days=1)
    failed = advance(ledger, body["id"])
    assert failed is not None and failed["status"] == "past_due"
    clock.advance(days=1)
    advance(ledger, body["id"])  # must not raise (retry of 1 * 4000 // 10000 = 0)


# 7 ---------------------------------------------------------------------------------------------
def test_lost_answer_on_renewal_is_learnt_and_charged_once(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger, trial_days=1), card=TIMEOUT)
    clock.advance(days=1)
    with pytest.raises(GatewayOutcomeUnknown):
        advance(ledger, body["id"])
    assert advance(ledger, body["id"]) is None  # within the lease
    clock.advance(seconds=120)
    learnt = advance(ledger, body["id"])
    assert learnt is not None and learnt["status"] == "active" and learnt["pending_charge"] is None
    for _ in range(3):
        advance(ledger, body["id"])
    assert sent(book) == 1
    clock.advance(days=31)
    with pytest.raises(GatewayOutcomeUnknown):
        advance(ledger, body["id"])
    clock.advance(seconds=120)
    again = advance(ledger, body["id"])
    assert again is not None and again["status"] == "active"
    assert sent(book) == 2
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    assert sub.state["period_index"] == 1 and sub.pending_charge is None


# 8 ---------------------------------------------------------------------------------------------
def test_reactivation_within_the_paid_period_does_not_bill_paid_days_again(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    """Paid 15 Jan → 15 Feb, cancelled (now) on 16 Jan, reactivated on 17 Jan: the customer
    already paid until 15 Feb; a new full period from 17 Jan bills 29 days twice."""
    body = subscribe(ledger, plan(ledger))
    sid = UUID(body["id"])
    clock.advance(days=1)
    ledger.cancel_subscription(tenant_id=TENANT, subscription_id=sid)
    clock.advance(days=1)
    back = ledger.reactivate_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert back["status"] == "active"
    paid_until = datetime.fromisoformat(body["current_period_end"])
    # either no charge until the paid period ends, or the new period starts where it ended
    assert sent(book) == 1 or datetime.fromisoformat(back["current_period_start"]) >= paid_until, (
        back["current_period_start"],
        back["last_charge"],
    )


# 9 ---------------------------------------------------------------------------------------------
def test_scheduled_downgrade_bills_the_target_plans_price_of_the_new_period(
    ledger: Ledger, clock: Clock
) -> None:
    """Price changes apply to new periods: silver's price changes after a downgrade to silver
    was scheduled but before the period it applies from starts."""
    silver, gold = plan(ledger, "silver", 3000), plan(ledger, "gold", 9000)
    body = subscribe(ledger, gold)
    sid = UUID(body["id"])
    ledger.change_subscription_plan(tenant_id=TENANT, subscription_id=sid, plan_id=silver)
    clock.advance(days=2)
    ledger.change_plan_price(tenant_id=TENANT, plan_id=silver, amount_minor=4000)
    clock.advance(days=30)
    renewed = advance(ledger, body["id"])
    assert renewed is not None and renewed["plan_id"] == str(silver)
    assert renewed["last_charge"]["amount_minor"] == 4000, renewed["last_charge"]["amount_minor"]


# 10 --------------------------------------------------------------------------------------------
def test_churn_takes_effect_at_the_deadline_not_when_the_job_ran(
    ledger: Ledger, clock: Clock
) -> None:
    """A hard decline churns when the window closes (churn_at); the scheduler running late
    (an outage) must not move the churn — and the MRR history — later."""
    body = subscribe(ledger, plan(ledger, trial_days=1), card=HARD)
    clock.advance(days=1)
    failed = advance(ledger, body["id"])
    assert failed is not None
    churn_at = failed["dunning"]["churn_at"]
    clock.advance(days=40)  # the job was down
    churned = advance(ledger, body["id"])
    assert churned is not None and churned["status"] == "churned"
    assert churned["ended_at"] == churn_at, (churned["ended_at"], churn_at)


# 11 --------------------------------------------------------------------------------------------
def test_card_attempt_limit_still_progresses_to_churn(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    """Many subscriptions on one Visa card all failing: past 15 attempts the scheme refuses,
    the subscriptions still move through dunning to churn, and no more than 15 are sent."""
    customer_id, method_id = customer(ledger, SOFT)
    pid = plan(ledger, trial_days=1)
    ids = [
        ledger.create_subscription(
            tenant_id=TENANT, customer_id=customer_id, plan_id=pid, payment_method_id=method_id
        ).body["id"]
        for _ in range(6)
    ]
    clock.advance(days=1)
    for _ in range(20):
        for sid in ids:
            with contextlib.suppress(DomainError):
                advance(ledger, sid)
        clock.advance(days=1)
    statuses = {ledger.get_subscription(TENANT, UUID(s)).status.value for s in ids}
    assert statuses == {"churned"}, statuses
    assert sent(book) <= 15


# 12 --------------------------------------------------------------------------------------------
def test_concurrent_reactivations_charge_once(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    body = subscribe(ledger, plan(ledger))
    sid = UUID(body["id"])
    ledger.cancel_subscription(tenant_id=TENANT, subscription_id=sid)
    clock.advance(days=40)
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(
                ledger.reactivate_subscription(tenant_id=TENANT, subscription_id=sid).body
            )
        except (ConcurrentModification, ChargeInProgress, SubscriptionNotActive,
                IdempotencyKeyInProgress) as error:  # fmt: skip
            outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sent(book) == 2, outcomes
    assert ledger.get_subscription(TENANT, sid).status.value == "active"


# 13 --------------------------------------------------------------------------------------------
def test_cross_tenant_ids_are_not_found(ledger: Ledger) -> None:
    body = subscribe(ledger, plan(ledger))
    other = "t_other"
    from application.billing import PlanNotFound, SubscriptionNotFound

    for call in (
        lambda: ledger.cancel_subscription(tenant_id=other, subscription_id=UUID(body["id"])),
        lambda: ledger.pause_subscription(tenant_id=other, subscription_id=UUID(body["id"])),
        lambda: ledger.reactivate_subscription(tenant_id=other, subscription_id=UUID(body["id"])),
        lambda: ledger.advance_subscription(tenant_id=other, subscription_id=UUID(body["id"])),
        lambda: ledger.retry_subscription_now(tenant_id=other, subscription_id=UUID(body["id"])),
    ):
        with pytest.raises(SubscriptionNotFound):
            call()
    oc, om = customer(ledger, tenant=other)
    with pytest.raises(PlanNotFound):
        ledger.create_subscription(
            tenant_id=other, customer_id=oc, plan_id=UUID(body["plan_id"]), payment_method_id=om
        )


# 14 --------------------------------------------------------------------------------------------
def test_change_plan_twice_quickly_charges_each_difference_once(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    silver, gold, plat = plan(ledger, "s", 3000), plan(ledger, "g", 6000), plan(ledger, "p", 9000)
    body = subscribe(ledger, silver)
    sid = UUID(body["id"])
    clock.advance(days=10)
    a = ledger.change_subscription_plan(tenant_id=TENANT, subscription_id=sid, plan_id=gold).body
    b = ledger.change_subscription_plan(tenant_id=TENANT, subscription_id=sid, plan_id=plat).body
    start = datetime.fromisoformat(body["current_period_start"])
    end = datetime.fromisoformat(body["current_period_end"])
    total = int((end - start).total_seconds())
    left = int((end - clock.at).total_seconds())
    assert a["last_charge"]["amount_minor"] == 3000 * left // total
    assert b["last_charge"]["amount_minor"] == 3000 * left // total
    assert b["mrr_minor"] == 9000 and sent(book) == 3


# 15 --------------------------------------------------------------------------------------------
def test_withdrawing_a_trials_cancellation_does_not_count_trial_mrr(
    ledger: Ledger, clock: Clock
) -> None:
    """Trials count 0 MRR. Cancel a trial at period end, then reactivate (withdraw): the MRR
    step function of the withdrawal must still say 0 until the trial converts."""
    body = subscribe(ledger, plan(ledger, trial_days=14))
    sid = UUID(body["id"])
    ledger.cancel_subscription(tenant_id=TENANT, subscription_id=sid, at_period_end=True)
    clock.advance(days=1)
    back = ledger.reactivate_subscription(tenant_id=TENANT, subscription_id=sid).body
    assert back["status"] == "trialing" and back["mrr_minor"] == 0
    last = list(ledger.events.get(sid))[-1]  # type: ignore[attr-defined]
    assert type(last).__name__ == "CancellationWithdrawn"
    values = [point[1] for point in last.mrr["points"]]
    assert values == [0], f"a trial counts MRR {values} from the withdrawal on"


# 16 --------------------------------------------------------------------------------------------
def test_a_client_idempotency_key_cannot_block_a_renewal_forever(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    """Renewal keys (``sub_<id>_c<cycle>_p<i>_r<n>``) live in the same per-tenant namespace as
    the keys API clients send: any API request of the tenant that used that string first makes
    every renewal of the period fail with IdempotencyKeyReused — never charged, never past_due."""
    body = subscribe(ledger, plan(ledger))
    sub = ledger.get_subscription(TENANT, UUID(body["id"]))
    key = sub._charge_key(1, 0)
    ledger.create_plan(
        tenant_id=TENANT, code="other", name="Other", currency="USD", amount_minor=100,
        interval="month", idempotency_key=key,
    )  # fmt: skip
    clock.advance(days=31)
    errors = []
    for _ in range(3):
        try:
            advance(ledger, body["id"])
        except DomainError as error:
            errors.append(error.code)
        clock.advance(days=1)
    assert sent(book) == 2, f"the renewal never ran: {errors}"


# 17 --------------------------------------------------------------------------------------------
def test_import_with_a_trial_that_ended_in_the_past(
    ledger: Ledger, clock: Clock, book: MemorySandboxBook
) -> None:
    started = clock.at - timedelta(days=100)
    body = subscribe(ledger, plan(ledger, trial_days=14, setup_fee_minor=900), effective_at=started)
    assert body["status"] == "active" and sent(book) == 0
    anchor = started + timedelta(days=14)
    assert datetime.fromisoformat(body["current_period_start"]) <= clock.at
    assert datetime.fromisoformat(body["current_period_end"]) > clock.at
    assert datetime.fromisoformat(body["current_period_start"]).day == anchor.day
    clock.at = datetime.fromisoformat(body["current_period_end"])
    renewed = advance(ledger, body["id"])
    assert renewed is not None and renewed["last_charge"]["amount_minor"] == 5000  # no setup fee
    assert sent(book) == 1
