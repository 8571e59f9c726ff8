"""Reconciliation's pure comparison: every call and every processor transaction lands in exactly
one class, and only our open outcomes against the processor's final ones are settleable."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.order import Order
from domain.reconciliation import (
    ProcessorTransaction,
    ReconciliationClass,
    RecordedCall,
    compare,
    recorded_calls,
)

AT = datetime(2026, 11, 21, 12, tzinfo=UTC)
ORDER = uuid4()


def ours(key: UUID, state: str = "succeeded", amount_minor: int = 2500, kind: str = "purchase"):
    return RecordedCall(key, ORDER, "acme", kind, amount_minor, "USD", state, AT)


def theirs(
    key: UUID | None,
    state: str = "succeeded",
    amount_minor: int = 2500,
    kind: str = "purchase",
    currency: str = "USD",
):
    return ProcessorTransaction(
        f"tx_{uuid4().hex[:8]}", key, kind, amount_minor, currency, state, AT, str(ORDER), "acme"
    )


@pytest.mark.parametrize(
    ("our_state", "their_state", "amount_minor", "expected", "settleable"),
    [
        ("succeeded", "succeeded", 2500, ReconciliationClass.MATCHED, False),
        ("declined", "declined", 2500, ReconciliationClass.MATCHED, False),
        ("unknown", "succeeded", 2500, ReconciliationClass.MISSING_OURS, True),
        ("requested", "succeeded", 2500, ReconciliationClass.MISSING_OURS, True),
        ("unknown", "declined", 2500, ReconciliationClass.STATE_MISMATCH, True),
        ("unknown", "pending", 2500, ReconciliationClass.STATE_MISMATCH, False),
        ("succeeded", "declined", 2500, ReconciliationClass.STATE_MISMATCH, False),
        ("declined", "succeeded", 2500, ReconciliationClass.STATE_MISMATCH, False),
        ("succeeded", "succeeded", 2400, ReconciliationClass.AMOUNT_MISMATCH, False),
        ("unknown", "succeeded", 2400, ReconciliationClass.AMOUNT_MISMATCH, False),
    ],
)
def test_a_pair_is_classified_by_amount_then_state(
    our_state: str, their_state: str, amount_minor: int, expected, settleable: bool
) -> None:
    key = uuid4()
    [item] = compare([ours(key, our_state)], [theirs(key, their_state, amount_minor)]).items
    assert (item.classification, item.settleable) == (expected, settleable)


def test_a_call_the_processor_never_saw_is_missing_at_the_processor() -> None:
    [item] = compare([ours(uuid4())], []).items
    assert item.classification is ReconciliationClass.MISSING_PROCESSOR
    assert not item.settleable


def test_a_processor_charge_we_never_recorded_is_missing_on_our_side() -> None:
    result = compare([], [theirs(uuid4()), theirs(None)])
    assert [i.classification for i in result.items] == [ReconciliationClass.MISSING_OURS] * 2
    assert result.counts["missing_ours"] == 2 and not result.settleable


def test_a_currency_mismatch_is_an_amount_mismatch_and_a_void_has_no_amount() -> None:
    key, void = uuid4(), uuid4()
    result = compare(
        [ours(key), ours(void, amount_minor=0, kind="void")],
        [theirs(key, currency="EUR"), theirs(void, amount_minor=2500, kind="void")],
    )
    assert [i.classification for i in result.items] == [
        ReconciliationClass.AMOUNT_MISMATCH,
        ReconciliationClass.MATCHED,
    ]


def test_other_kinds_under_one_key_are_a_state_mismatch_never_settled() -> None:
    key = uuid4()
    [item] = compare([ours(key, "unknown")], [theirs(key, kind="authorize")]).items
    assert item.classification is ReconciliationClass.STATE_MISMATCH
    assert not item.settleable


OUR_STATES = st.sampled_from(["requested", "unknown", "succeeded", "declined"])
THEIR_STATES = st.sampled_from(["succeeded", "declined", "pending"])


@st.composite
def books(draw: st.DrawFn) -> tuple[list[RecordedCall], list[ProcessorTransaction]]:
    keys = [uuid4() for _ in range(draw(st.integers(0, 12)))]
    our_calls, their_transactions = [], []
    for key in keys:
        side = draw(st.sampled_from(["both", "ours", "theirs"]))
        amount_minor = draw(st.integers(1, 10_000))
        if side in ("both", "ours"):
            our_calls.append(ours(key, draw(OUR_STATES), amount_minor))
        if side in ("both", "theirs"):
            changed = draw(st.booleans())
            their_transactions.append(
                theirs(key, draw(THEIR_STATES), amount_minor + (1 if changed else 0))
            )
    their_transactions += [theirs(None) for _ in range(draw(st.integers(0, 2)))]
    return our_calls, draw(st.permutations(their_transactions))


@given(books())
def test_every_call_and_every_transaction_is_in_exactly_one_item(sides) -> None:
    our_calls, their_transactions = sides
    result = compare(our_calls, their_transactions)
    assert [i.ours for i in result.items if i.ours] == our_calls
    assert sorted(id(i.theirs) for i in result.items if i.theirs) == sorted(
        id(t) for t in their_transactions
    )
    assert sum(result.counts.values()) == len(result.items)
    for item in result.items:
        if item.settleable:
            assert item.ours is not None and item.theirs is not None
            assert item.ours.state in ("requested", "unknown")
            assert item.theirs.state in ("succeeded", "declined")
            assert item.ours.amount_minor == item.theirs.amount_minor
        if item.classification is ReconciliationClass.MATCHED:
            assert item.ours is not None and item.theirs is not None
            assert item.ours.state == item.theirs.state


def test_an_orders_events_tell_each_calls_kind_amount_and_outcome() -> None:
    order = Order.place(
        tenant_id="acme",
        customer_id=uuid4(),
        currency="USD",
        lines=[{"sku": "MUG", "quantity": 2, "unit_price_minor": 1250}],
    )
    authorization, capture, refund, lost_refund = uuid4(), uuid4(), uuid4(), uuid4()
    order.request_payment(attempt_id=authorization, kind="authorize", amount_minor=2500)
    order.record_authorization(attempt_id=authorization, amount_minor=2500)
    order.request_capture(operation_id=str(capture), amount_minor=2000)
    order.complete_capture(operation_id=str(capture), attempt_id=authorization)
    order.request_refund(refund_id=str(refund), amount_minor=500, reason=None)
    order.complete_refund(refund_id=str(refund))
    order.request_refund(refund_id=str(lost_refund), amount_minor=700, reason=None)
    order.record_refund_outcome_unknown(refund_id=str(lost_refund))

    calls = recorded_calls(order.collect_events())

    assert [(c.key, c.kind, c.amount_minor, c.state) for c in calls] == [
        (authorization, "authorize", 2500, "succeeded"),
        (capture, "capture", 2000, "succeeded"),
        (refund, "refund", 500, "succeeded"),
        (lost_refund, "refund", 700, "unknown"),
    ]
    assert {(c.order_id, c.tenant_id, c.currency) for c in calls} == {(order.id, "acme", "USD")}
