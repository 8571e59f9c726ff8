"""The Order aggregate: placing, capturing, declining, refunding and cancelling."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import InvalidInput, InvalidTransition
from domain.money import AMOUNT_MINOR_MAX, InvalidAmount, UnknownCurrency
from domain.order import (
    LINES_MAX,
    QUANTITY_MAX,
    SKU_LENGTH_MAX,
    CaptureExceedsTotal,
    InvalidOrderLines,
    Order,
    OrderNotCancellable,
    OrderNotPayable,
    OrderNotRefundable,
    OrderStatus,
    RefundExceedsCaptured,
)

CUSTOMER_ID = UUID("00000000-0000-4000-8000-000000000001")


def line(sku: Any = "SKU-1", quantity: Any = 1, unit_price_minor: Any = 1000) -> dict:
    return {"sku": sku, "quantity": quantity, "unit_price_minor": unit_price_minor}


def place(lines: list[dict] | None = None, currency: str = "USD") -> Order:
    return Order.place(
        tenant_id="tenant-a",
        customer_id=CUSTOMER_ID,
        currency=currency,
        lines=[line()] if lines is None else lines,
    )


def refund(order: Order, amount_minor: Any, reason: str | None = None) -> None:
    """A refund the gateway accepted: requested, then completed."""
    refund_id = str(uuid4())
    order.request_refund(refund_id=refund_id, amount_minor=amount_minor, reason=reason)
    order.complete_refund(refund_id=refund_id)


def paid_order(total_minor: int = 1000) -> Order:
    order = place([line(unit_price_minor=total_minor)])
    order.record_capture(attempt_id=uuid4(), amount_minor=total_minor)
    return order


def declined_order() -> Order:
    order = place()
    order.record_decline(attempt_id=uuid4(), decline_code="insufficient_funds")
    return order


def cancelled_order() -> Order:
    order = place()
    order.cancel()
    return order


def refunded_order() -> Order:
    order = paid_order(1000)
    refund(order, amount_minor=1000)
    return order


def state(order: Order) -> tuple:
    return (order.version, order.status, order.captured_minor, order.refunded_minor)


def event_names(order: Order) -> list[str]:
    return [type(event).__name__ for event in order.collect_events()]


# Placing ----------------------------------------------------------------------------------


def test_placing_an_order_computes_line_amounts_and_the_total() -> None:
    order = place([line("A", 3, 250), line("B", 1, 99)])

    assert order.total_minor == 849
    assert [each["amount_minor"] for each in order.lines] == [750, 99]
    assert order.status is OrderStatus.PENDING
    assert order.captured_minor == 0
    assert order.refunded_minor == 0
    assert order.customer_id == CUSTOMER_ID
    assert order.tenant_id == "tenant-a"


def test_an_order_number_is_derived_from_its_id() -> None:
    order = place()

    assert order.number == "ORD-" + order.id.hex[:10].upper()


def test_placing_an_order_records_one_placed_event() -> None:
    assert event_names(place()) == ["Placed"]


def test_an_order_total_of_exactly_the_maximum_amount_is_accepted() -> None:
    order = place([line(unit_price_minor=AMOUNT_MINOR_MAX // 2)] * 2)

    assert order.total_minor == AMOUNT_MINOR_MAX


def test_placing_an_order_in_an_unknown_currency_raises_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        place(currency="ABC")


def test_placing_an_order_without_lines_raises_invalid_order_lines() -> None:
    with pytest.raises(InvalidOrderLines) as raised:
        place([])

    assert raised.value.param == "lines"
    assert raised.value.code == "invalid_order_lines"


def test_placing_an_order_with_too_many_lines_raises_invalid_order_lines() -> None:
    with pytest.raises(InvalidOrderLines) as raised:
        place([line(f"SKU-{i}") for i in range(LINES_MAX + 1)])

    assert raised.value.param == "lines"


@pytest.mark.parametrize("sku", [None, "", "   ", 123, "S" * (SKU_LENGTH_MAX + 1)])
def test_a_line_with_a_bad_sku_raises_invalid_order_lines(sku: object) -> None:
    with pytest.raises(InvalidOrderLines) as raised:
        place([line(), line(sku=sku)])

    assert raised.value.param == "lines.1.sku"


def test_a_line_without_a_sku_raises_invalid_order_lines() -> None:
    with pytest.raises(InvalidOrderLines) as raised:
        place([{"quantity": 1, "unit_price_minor": 100}])

    assert raised.value.param == "lines.0.sku"


@pytest.mark.parametrize("quantity", [0, -1, QUANTITY_MAX + 1, 1.0, "2", True, None])
def test_a_line_with_a_bad_quantity_raises_invalid_order_lines(quantity: object) -> None:
    with pytest.raises(InvalidOrderLines) as raised:
        place([line(quantity=quantity)])

    assert raised.value.param == "lines.0.quantity"


@pytest.mark.parametrize("unit_price_minor", [-1, 9.99, "1000", None, AMOUNT_MINOR_MAX + 1])
def test_a_line_with_a_bad_unit_price_raises_invalid_amount(unit_price_minor: object) -> None:
    with pytest.raises(InvalidAmount) as raised:
        place([line(unit_price_minor=unit_price_minor)])

    assert raised.value.param == "lines.0.unit_price_minor"


def test_an_absurd_order_total_raises_invalid_amount() -> None:
    # Each line is valid on its own; only the product and the sum are absurd.
    with pytest.raises(InvalidAmount) as raised:
        place([line(quantity=QUANTITY_MAX, unit_price_minor=10**12)])

    assert raised.value.param == "lines"


def test_a_total_just_over_the_maximum_raises_invalid_amount() -> None:
    with pytest.raises(InvalidAmount):
        place([line("A", unit_price_minor=AMOUNT_MINOR_MAX), line("B", unit_price_minor=1)])


# Capturing and declining ------------------------------------------------------------------


def test_capturing_the_total_marks_the_order_paid() -> None:
    order = place([line(quantity=2, unit_price_minor=500)])
    attempt_id = uuid4()

    order.record_capture(attempt_id=attempt_id, amount_minor=1000)

    assert order.status is OrderStatus.PAID
    assert order.captured_minor == 1000
    assert order.attempt_ids == [attempt_id]
    assert event_names(order) == ["Placed", "PaymentCaptured"]


def test_captures_in_parts_add_up_and_the_first_captured_money_marks_the_order_paid() -> None:
    order = place([line(unit_price_minor=1000)])

    order.record_capture(attempt_id=uuid4(), amount_minor=400)
    assert (order.status, order.captured_minor) == (OrderStatus.PAID, 400)
    order.record_capture(attempt_id=uuid4(), amount_minor=600)

    assert (order.status, order.captured_minor) == (OrderStatus.PAID, 1000)
    assert len(order.attempt_ids) == 2


def test_a_second_capture_beyond_the_remaining_total_raises_capture_exceeds_total() -> None:
    order = place([line(unit_price_minor=1000)])
    order.record_capture(attempt_id=uuid4(), amount_minor=400)

    with pytest.raises(CaptureExceedsTotal):
        order.record_capture(attempt_id=uuid4(), amount_minor=601)
    assert order.captured_minor == 400


def test_capturing_more_than_the_total_raises_capture_exceeds_total_and_changes_nothing() -> None:
    order = place([line(unit_price_minor=1000)])
    before = state(order)

    with pytest.raises(CaptureExceedsTotal) as raised:
        order.record_capture(attempt_id=uuid4(), amount_minor=1001)

    assert raised.value.param == "amount_minor"
    assert state(order) == before


@pytest.mark.parametrize("amount_minor", [0, -100, 10.0, True])
def test_capturing_a_non_positive_or_non_integer_amount_raises_invalid_amount(
    amount_minor: object,
) -> None:
    order = place()

    with pytest.raises(InvalidAmount):
        order.record_capture(attempt_id=uuid4(), amount_minor=amount_minor)  # type: ignore[arg-type]
    assert order.captured_minor == 0


def test_capturing_a_paid_order_again_raises_order_not_payable() -> None:
    order = paid_order(1000)

    with pytest.raises(OrderNotPayable):
        order.record_capture(attempt_id=uuid4(), amount_minor=1)


def test_a_declined_payment_marks_the_order_declined_with_the_decline_code() -> None:
    order = place()
    attempt_id = uuid4()

    order.record_decline(attempt_id=attempt_id, decline_code="generic_decline")

    assert order.status is OrderStatus.DECLINED
    assert order.decline_code == "generic_decline"
    assert order.attempt_ids == [attempt_id]
    assert order.captured_minor == 0


def test_a_declined_order_can_be_paid_by_a_later_attempt_which_clears_the_decline() -> None:
    order = declined_order()

    order.record_capture(attempt_id=uuid4(), amount_minor=order.total_minor)

    assert order.status is OrderStatus.PAID
    assert order.decline_code is None
    assert len(order.attempt_ids) == 2


def test_declining_a_paid_order_raises_order_not_payable() -> None:
    order = paid_order()

    with pytest.raises(OrderNotPayable):
        order.record_decline(attempt_id=uuid4(), decline_code="generic_decline")
    assert order.status is OrderStatus.PAID


# Refunding --------------------------------------------------------------------------------


def test_a_partial_refund_marks_the_order_partially_refunded() -> None:
    order = paid_order(1000)

    refund(order, amount_minor=300, reason="damaged")

    assert order.status is OrderStatus.PARTIALLY_REFUNDED
    assert order.refunded_minor == 300
    assert order.captured_minor == 1000


def test_refunding_all_but_one_minor_unit_leaves_the_order_partially_refunded() -> None:
    order = paid_order(1000)

    refund(order, amount_minor=999)

    assert order.status is OrderStatus.PARTIALLY_REFUNDED
    refund(order, amount_minor=1)
    assert order.status is OrderStatus.REFUNDED


def test_refunding_everything_captured_marks_the_order_refunded() -> None:
    order = paid_order(1000)

    refund(order, amount_minor=1000)

    assert order.status is OrderStatus.REFUNDED
    assert order.refunded_minor == 1000


def test_partial_refunds_that_reach_the_captured_amount_mark_the_order_refunded() -> None:
    order = paid_order(1000)

    refund(order, amount_minor=400)
    refund(order, amount_minor=600)

    assert order.status is OrderStatus.REFUNDED
    assert order.refunded_minor == 1000
    assert event_names(order) == [
        "Placed",
        "PaymentCaptured",
        "RefundRequested",
        "Refunded",
        "RefundRequested",
        "Refunded",
    ]


def test_refunding_more_than_captured_raises_refund_exceeds_captured_and_changes_nothing() -> None:
    order = paid_order(1000)
    before = state(order)

    with pytest.raises(RefundExceedsCaptured) as raised:
        refund(order, amount_minor=1001)

    assert raised.value.code == "refund_exceeds_captured"
    assert raised.value.param == "amount_minor"
    assert isinstance(raised.value, InvalidTransition)
    assert state(order) == before


def test_refunding_more_than_what_remains_after_a_partial_refund_raises() -> None:
    order = paid_order(1000)
    refund(order, amount_minor=700)

    with pytest.raises(RefundExceedsCaptured):
        refund(order, amount_minor=301)
    assert order.refunded_minor == 700
    assert order.status is OrderStatus.PARTIALLY_REFUNDED


@pytest.mark.parametrize("amount_minor", [0, -1, 1.5, True, "100"])
def test_refunding_a_non_positive_or_non_integer_amount_raises_invalid_amount(
    amount_minor: object,
) -> None:
    order = paid_order(1000)
    before = state(order)

    with pytest.raises(InvalidAmount):
        refund(order, amount_minor=amount_minor)  # type: ignore[arg-type]
    assert state(order) == before


def test_a_refund_reason_longer_than_500_characters_raises_invalid_input() -> None:
    order = paid_order(1000)

    with pytest.raises(InvalidInput) as raised:
        refund(order, amount_minor=100, reason="x" * 501)

    assert raised.value.param == "reason"
    assert order.refunded_minor == 0


@pytest.mark.parametrize(
    ("make_order", "status"),
    [
        (place, "pending"),
        (declined_order, "declined"),
        (cancelled_order, "cancelled"),
        (refunded_order, "refunded"),
    ],
)
def test_an_order_without_refundable_money_raises_order_not_refundable(
    make_order, status: str
) -> None:
    order = make_order()
    before = state(order)

    with pytest.raises(OrderNotRefundable, match=status):
        refund(order, amount_minor=1)
    assert state(order) == before


# Cancelling -------------------------------------------------------------------------------


def test_cancelling_a_pending_order_marks_it_cancelled() -> None:
    order = place()

    order.cancel(reason="changed my mind")

    assert order.status is OrderStatus.CANCELLED
    assert event_names(order) == ["Placed", "Cancelled"]


def test_cancelling_a_declined_order_marks_it_cancelled() -> None:
    order = declined_order()

    order.cancel()

    assert order.status is OrderStatus.CANCELLED


@pytest.mark.parametrize(
    ("make_order", "status"),
    [
        (paid_order, "paid"),
        (refunded_order, "refunded"),
        (cancelled_order, "cancelled"),
    ],
)
def test_an_order_that_is_paid_refunded_or_cancelled_raises_order_not_cancellable(
    make_order, status: str
) -> None:
    order = make_order()
    before = state(order)

    with pytest.raises(OrderNotCancellable, match=status):
        order.cancel()
    assert state(order) == before


def test_a_partially_refunded_order_raises_order_not_cancellable() -> None:
    order = paid_order(1000)
    refund(order, amount_minor=1)

    with pytest.raises(OrderNotCancellable):
        order.cancel()


def test_an_order_with_partially_captured_money_raises_order_not_cancellable() -> None:
    order = place([line(unit_price_minor=1000)])
    order.record_capture(attempt_id=uuid4(), amount_minor=400)

    with pytest.raises(OrderNotCancellable):
        order.cancel()


# Replay -----------------------------------------------------------------------------------


def test_replaying_an_orders_events_rebuilds_the_same_state() -> None:
    order = paid_order(1000)
    refund(order, amount_minor=250, reason="late")

    rebuilt = None
    for event in order.collect_events():
        rebuilt = event.mutate(rebuilt)

    assert rebuilt is not None
    assert rebuilt.id == order.id
    assert rebuilt.version == order.version
    assert rebuilt.status is OrderStatus.PARTIALLY_REFUNDED
    assert (rebuilt.captured_minor, rebuilt.refunded_minor) == (1000, 250)
    assert rebuilt.lines == order.lines
    assert rebuilt.attempt_ids == order.attempt_ids
