"""Chargebacks of an order: opened against captured money, won or lost; and upsell parents."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.money import AMOUNT_MINOR_MAX, InvalidAmount
from domain.order import (
    ChargebackAlreadyExists,
    ChargebackAlreadyResolved,
    ChargebackExceedsCaptured,
    ChargebackNotFound,
    InvalidChargebackOutcome,
    InvalidReasonCode,
    Order,
    OrderDisputed,
    OrderNotCancellable,
    OrderNotDisputable,
    OrderStatus,
    ParentOrderNotPaid,
    RefundExceedsCaptured,
)

CUSTOMER_ID = UUID("00000000-0000-4000-8000-000000000001")


def place(total_minor: int = 1000) -> Order:
    return Order.place(
        tenant_id="tenant-a",
        customer_id=CUSTOMER_ID,
        currency="USD",
        lines=[{"sku": "SKU-1", "quantity": 1, "unit_price_minor": total_minor}],
    )


def paid_order(total_minor: int = 1000) -> Order:
    order = place(total_minor)
    order.record_capture(attempt_id=uuid4(), amount_minor=total_minor)
    return order


def refund(order: Order, amount_minor: int) -> None:
    refund_id = str(uuid4())
    order.request_refund(refund_id=refund_id, amount_minor=amount_minor, reason=None)
    order.complete_refund(refund_id=refund_id)


def open_chargeback(order: Order, amount_minor: Any, chargeback_id: str = "cb-1") -> str:
    order.open_chargeback(
        chargeback_id=chargeback_id, amount_minor=amount_minor, reason_code="10.4"
    )
    return chargeback_id


def replayed(order: Order) -> Order:
    copy = None
    for domain_event in order.collect_events():
        copy = domain_event.mutate(copy)
    assert copy is not None
    return copy


def test_opening_a_chargeback_marks_the_order_disputed_and_lists_it_open() -> None:
    order = paid_order(1000)

    open_chargeback(order, 400)

    assert order.status is OrderStatus.DISPUTED
    assert list(order.chargebacks.values()) == [
        {"id": "cb-1", "amount_minor": 400, "reason_code": "10.4", "status": "open"}
    ]
    assert order.charged_back_minor == 0
    assert type(order.collect_events()[-1]).__name__ == "ChargebackOpened"


def test_a_won_chargeback_returns_the_order_to_paid_with_nothing_charged_back() -> None:
    order = paid_order(1000)
    open_chargeback(order, 400)

    order.resolve_chargeback(chargeback_id="cb-1", outcome="won")

    assert (order.status, order.charged_back_minor, order.refundable_minor) == (
        OrderStatus.PAID,
        0,
        1000,
    )
    assert order.chargebacks["cb-1"]["status"] == "won"


def test_a_won_chargeback_of_a_partially_refunded_order_returns_it_to_partially_refunded() -> None:
    order = paid_order(1000)
    refund(order, 300)
    open_chargeback(order, 700)

    order.resolve_chargeback(chargeback_id="cb-1", outcome="won")

    assert order.status is OrderStatus.PARTIALLY_REFUNDED


def test_a_lost_chargeback_debits_the_order_like_a_refund() -> None:
    order = paid_order(1000)
    open_chargeback(order, 400)

    order.resolve_chargeback(chargeback_id="cb-1", outcome="lost")

    # Money is left, nothing was refunded: the order stays paid, 400 charged back.
    assert (order.status, order.charged_back_minor, order.refundable_minor) == (
        OrderStatus.PAID,
        400,
        600,
    )
    with pytest.raises(RefundExceedsCaptured):
        refund(order, 601)
    refund(order, 600)
    assert order.status is OrderStatus.REFUNDED


def test_a_lost_chargeback_of_everything_left_marks_the_order_charged_back() -> None:
    order = paid_order(1000)
    refund(order, 250)
    open_chargeback(order, 750)

    order.resolve_chargeback(chargeback_id="cb-1", outcome="lost")

    assert (order.status, order.charged_back_minor, order.refunded_minor) == (
        OrderStatus.CHARGED_BACK,
        750,
        250,
    )
    with pytest.raises(OrderNotDisputable):
        open_chargeback(order, 1, "cb-2")


def test_a_chargeback_above_what_is_captured_and_not_refunded_raises_and_changes_nothing() -> None:
    order = paid_order(1000)
    refund(order, 300)
    version = order.version

    with pytest.raises(ChargebackExceedsCaptured) as raised:
        open_chargeback(order, 701)

    assert raised.value.code == "chargeback_exceeds_captured"
    assert raised.value.param == "amount_minor"
    assert (order.version, order.status) == (version, OrderStatus.PARTIALLY_REFUNDED)


def test_lost_chargebacks_count_against_later_chargebacks() -> None:
    order = paid_order(1000)
    open_chargeback(order, 600)
    order.resolve_chargeback(chargeback_id="cb-1", outcome="lost")

    with pytest.raises(ChargebackExceedsCaptured):
        open_chargeback(order, 401, "cb-2")
    open_chargeback(order, 400, "cb-2")


def test_a_refund_still_at_the_gateway_counts_against_a_chargeback() -> None:
    order = paid_order(1000)
    order.request_refund(refund_id="r1", amount_minor=900, reason=None)

    with pytest.raises(ChargebackExceedsCaptured):
        open_chargeback(order, 101)
    open_chargeback(order, 100)
    # The refund completes while the chargeback is open: the order stays disputed.
    order.complete_refund(refund_id="r1")
    assert order.status is OrderStatus.DISPUTED
    order.resolve_chargeback(chargeback_id="cb-1", outcome="lost")
    assert (order.status, order.refunded_minor, order.charged_back_minor) == (
        OrderStatus.CHARGED_BACK,
        900,
        100,
    )


@pytest.mark.parametrize("amount_minor", [0, -1, AMOUNT_MINOR_MAX + 1, 10**20, 1.5, "100", True])
def test_a_chargeback_of_a_bad_amount_raises_invalid_amount(amount_minor: object) -> None:
    order = paid_order(1000)
    with pytest.raises(InvalidAmount):
        open_chargeback(order, amount_minor)
    assert order.status is OrderStatus.PAID


@pytest.mark.parametrize("reason_code", ["", "   ", "x" * 65, "a\x00b", None, 10])
def test_a_bad_reason_code_raises_invalid_reason_code(reason_code: Any) -> None:
    order = paid_order(1000)
    with pytest.raises(InvalidReasonCode):
        order.open_chargeback(chargeback_id="cb-1", amount_minor=1, reason_code=reason_code)


def _pending() -> Order:
    return place()


def _declined() -> Order:
    order = place()
    order.record_decline(attempt_id=uuid4(), decline_code="card_declined")
    return order


def _refunded() -> Order:
    order = paid_order(1000)
    refund(order, 1000)
    return order


def _disputed() -> Order:
    order = paid_order(1000)
    open_chargeback(order, 100, "cb-0")
    return order


@pytest.mark.parametrize("make", [_pending, _declined, _refunded, _disputed])
def test_only_a_paid_or_partially_refunded_order_can_be_charged_back(make: Any) -> None:
    order = make()
    with pytest.raises(OrderNotDisputable) as raised:
        open_chargeback(order, 1)
    assert raised.value.code == "order_not_disputable"


def test_a_disputed_order_refuses_refunds_and_cancellation() -> None:
    order = _disputed()

    with pytest.raises(OrderDisputed) as raised:
        order.request_refund(refund_id="r1", amount_minor=1, reason=None)
    assert raised.value.code == "order_disputed"
    with pytest.raises(OrderNotCancellable):
        order.cancel()


def test_resolving_an_unknown_or_resolved_chargeback_or_with_a_bad_outcome_raises() -> None:
    order = _disputed()
    with pytest.raises(ChargebackNotFound) as not_found:
        order.resolve_chargeback(chargeback_id="nope", outcome="won")
    assert not_found.value.code == "chargeback_not_found"
    with pytest.raises(InvalidChargebackOutcome):
        order.resolve_chargeback(chargeback_id="cb-0", outcome="maybe")
    order.resolve_chargeback(chargeback_id="cb-0", outcome="won")
    with pytest.raises(ChargebackAlreadyResolved) as resolved:
        order.resolve_chargeback(chargeback_id="cb-0", outcome="lost")
    assert resolved.value.code == "chargeback_already_resolved"


def test_a_chargeback_id_is_opened_once() -> None:
    order = paid_order(1000)
    open_chargeback(order, 100)
    order.resolve_chargeback(chargeback_id="cb-1", outcome="won")
    with pytest.raises(ChargebackAlreadyExists):
        open_chargeback(order, 100)


def test_replaying_chargebacks_rebuilds_the_same_state() -> None:
    order = paid_order(1000)
    open_chargeback(order, 300)
    order.resolve_chargeback(chargeback_id="cb-1", outcome="lost")
    open_chargeback(order, 200, "cb-2")

    copy = replayed(order)

    assert (copy.status, copy.charged_back_minor, copy.chargebacks) == (
        order.status,
        order.charged_back_minor,
        order.chargebacks,
    )


def test_an_upsell_follows_only_a_paid_order() -> None:
    paid_order(1000).require_upsell_parent()
    partially_refunded = paid_order(1000)
    refund(partially_refunded, 1)
    partially_refunded.require_upsell_parent()
    for order in (_pending(), _declined(), _refunded(), _disputed()):
        with pytest.raises(ParentOrderNotPaid) as raised:
            order.require_upsell_parent()
        assert raised.value.code == "parent_order_not_paid"


def test_an_order_placed_as_an_upsell_names_its_parent() -> None:
    parent_id = uuid4()
    order = Order.place(
        tenant_id="t",
        customer_id=CUSTOMER_ID,
        currency="USD",
        lines=[{"sku": "A", "quantity": 1, "unit_price_minor": 1}],
        parent_order_id=parent_id,
    )
    assert order.parent_order_id == parent_id
    assert replayed(order).parent_order_id == parent_id
    assert place().parent_order_id is None


# Property: whatever happens to an order, money is never created or lost ------------------------

# Chargebacks and refunds more often than the ways of paying, so sequences reach them.
OPERATIONS = (
    "purchase",
    "authorize",
    "capture",
    "void",
    *("refund", "refund_declined", "refund_pending") * 2,
    *("open", "won", "lost") * 3,
)


def apply(order: Order, operation: str, amount_minor: int, pending: list[str]) -> None:
    """One money movement of ``operation``; raises a ``DomainError`` when the order refuses."""
    if operation == "purchase":
        order.record_capture(attempt_id=uuid4(), amount_minor=amount_minor)
    elif operation == "authorize":
        attempt_id = uuid4()
        order.request_payment(attempt_id=attempt_id, kind="authorize", amount_minor=amount_minor)
        order.record_authorization(attempt_id=attempt_id, amount_minor=order.total_minor)
    elif operation == "capture":
        order.request_capture(operation_id="op", amount_minor=amount_minor)
        order.complete_capture(operation_id="op", attempt_id=order.attempt_ids[-1])
    elif operation == "void":
        order.request_void(operation_id="op")
        order.complete_void(operation_id="op")
    elif operation.startswith("refund"):
        refund_id = str(uuid4())
        order.request_refund(refund_id=refund_id, amount_minor=amount_minor, reason=None)
        if operation == "refund":
            order.complete_refund(refund_id=refund_id)
        elif operation == "refund_declined":
            order.fail_refund(refund_id=refund_id, decline_code="declined")
        else:
            pending.append(refund_id)
    elif operation == "open":
        open_chargeback(order, amount_minor, str(uuid4()))
    else:
        open_ids = [i for i, c in order.chargebacks.items() if c["status"] == "open"]
        order.resolve_chargeback(
            chargeback_id=open_ids[-1] if open_ids else "none", outcome=operation
        )


def implied_by_events(events: list[Any]) -> int:
    """Captured − refunded − lost chargebacks, summed from the events alone."""
    balance = 0
    for e in events:
        name = type(e).__name__
        if name == "PaymentCaptured":
            balance += e.amount_minor
        elif name == "Refunded" or (name == "ChargebackResolved" and e.outcome == "lost"):
            balance -= e.amount_minor
    return balance


@settings(max_examples=300, deadline=None)
@given(
    total_minor=st.integers(1, 10_000),
    paid_first=st.booleans(),
    steps=st.lists(
        # An amount as a share of the order total in thousandths: mostly within it, sometimes
        # zero, negative or beyond it.
        st.tuples(st.sampled_from(OPERATIONS), st.integers(-10, 1_100), st.booleans()),
        max_size=30,
    ),
)
def test_captured_minus_refunded_minus_lost_chargebacks_is_never_negative_and_matches_events(
    total_minor: int, paid_first: bool, steps: list[tuple[str, int, bool]]
) -> None:
    order = paid_order(total_minor) if paid_first else place(total_minor)
    events: list[Any] = list(order.collect_events())
    pending: list[str] = []
    for operation, share_permille, complete_a_pending_refund in steps:
        version = order.version
        try:
            apply(order, operation, total_minor * share_permille // 1000, pending)
        except DomainError:
            # A refusal records nothing (a two-step movement refuses at its first step).
            assert order.version == version
        if complete_a_pending_refund and pending:
            order.complete_refund(refund_id=pending.pop(0))
        events += order.collect_events()
        balance = order.captured_minor - order.refunded_minor - order.charged_back_minor
        assert balance >= 0
        assert balance == implied_by_events(events)
        # Refunds at the gateway and open chargebacks never take back more than is left.
        assert order.refundable_minor - order.open_chargeback_minor >= 0
        assert (order.status is OrderStatus.DISPUTED) == (order.open_chargeback_minor > 0)
    copy = None
    for domain_event in events:
        copy = domain_event.mutate(copy)
    assert copy is not None
    assert (copy.status, copy.charged_back_minor, copy.refunded_minor, copy.captured_minor) == (
        order.status,
        order.charged_back_minor,
        order.refunded_minor,
        order.captured_minor,
    )
