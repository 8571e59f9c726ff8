"""Properties of the Ledger: refunds never create or lose money; replay equals live."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from application.ledger import Ledger
from domain.errors import DomainError
from domain.money import InvalidAmount
from domain.order import Order, OrderNotRefundable, OrderStatus, RefundExceedsCaptured

TENANT = "tenant-a"
TODAY = datetime(2025, 6, 15, tzinfo=UTC)
FAST = settings(max_examples=60, deadline=None)


def build_ledger() -> Ledger:
    return bootstrap_ledger(
        vault=SandboxVault(now=lambda: TODAY),
        gateway=SandboxGateway(),
        fingerprint_secret=b"test",
    )


def place_paid_order(app: Ledger, total_minor: int) -> UUID:
    customer_id = UUID(
        app.register_customer(
            tenant_id=TENANT, email="ada@example.com", name="Ada", country="US", currency="USD"
        ).body["id"]
    )
    payment_method_id = app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=customer_id,
        card_number="4242424242424242",
        exp_month=12,
        exp_year=TODAY.year + 2,
    ).body["id"]
    body = app.place_order(
        tenant_id=TENANT,
        customer_id=customer_id,
        currency="USD",
        lines=[{"sku": "ITEM", "quantity": 1, "unit_price_minor": total_minor}],
        payment={"payment_method_id": payment_method_id},
    ).body
    assert body["status"] == "paid"
    return UUID(body["id"])


@st.composite
def refund_plans(draw: st.DrawFn) -> tuple[int, list[object]]:
    """An order total and refund requests around it: small, exact, too large, zero, negative."""
    total_minor = draw(st.integers(min_value=1, max_value=100_000))
    amount = st.one_of(
        st.integers(min_value=1, max_value=max(1, total_minor // 3)),
        st.integers(min_value=-2, max_value=total_minor + 2),
        st.sampled_from([total_minor, max(1, total_minor - 1)]),
        st.integers(min_value=total_minor, max_value=10**16),
        st.sampled_from([1.5, True, float(total_minor)]),
    )
    return total_minor, draw(st.lists(amount, max_size=12))


def expected_rejection(amount: object, refundable_minor: int) -> type[DomainError] | None:
    """What the rules say a refund of ``amount`` must raise, given what is still captured."""
    if refundable_minor == 0:
        return OrderNotRefundable
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or amount > 10**15:
        return InvalidAmount
    if amount > refundable_minor:
        return RefundExceedsCaptured
    return None


def snapshot(order: Order) -> tuple:
    return (order.version, order.status, order.captured_minor, order.refunded_minor)


@FAST
@given(plan=refund_plans())
def test_refunds_never_create_or_lose_money(plan: tuple[int, list[object]]) -> None:
    total_minor, amounts = plan
    app = build_ledger()
    order_id = place_paid_order(app, total_minor)
    accepted_minor = 0

    for amount in amounts:
        before = snapshot(app.get_order(TENANT, order_id))
        events_before = app.recorder.max_notification_id()
        expected = expected_rejection(amount, total_minor - accepted_minor)
        try:
            body = app.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=amount).body
        except DomainError as error:
            assert type(error) is expected, f"refund of {amount!r} raised {error!r}"
            # A rejected refund changes nothing, not even the log.
            assert snapshot(app.get_order(TENANT, order_id)) == before
            assert app.recorder.max_notification_id() == events_before
        else:
            assert expected is None, f"refund of {amount!r} should have raised {expected}"
            accepted_minor += amount
            assert body["refunded_minor"] == accepted_minor

        order = app.get_order(TENANT, order_id)
        assert order.captured_minor == total_minor
        assert order.refunded_minor == accepted_minor
        assert 0 <= order.refunded_minor <= order.captured_minor
        assert (order.status is OrderStatus.REFUNDED) == (
            order.refunded_minor == order.captured_minor
        )
        assert (order.status is OrderStatus.PAID) == (order.refunded_minor == 0)
        assert (order.status is OrderStatus.PARTIALLY_REFUNDED) == (
            0 < order.refunded_minor < order.captured_minor
        )


order_commands = st.lists(
    st.one_of(
        st.tuples(st.just("capture"), st.integers(min_value=-1, max_value=1200)),
        st.tuples(st.just("decline"), st.sampled_from(["generic_decline", "expired_card"])),
        st.tuples(st.just("request_payment"), st.none()),
        st.tuples(st.just("payment_unknown"), st.none()),
        st.tuples(st.just("capture_requested"), st.integers(min_value=-1, max_value=1200)),
        st.tuples(st.just("refund"), st.integers(min_value=-1, max_value=1200)),
        st.tuples(st.just("request_refund"), st.integers(min_value=-1, max_value=1200)),
        st.tuples(st.just("complete_refund"), st.none()),
        st.tuples(st.just("fail_refund"), st.none()),
        st.tuples(st.just("refund_unknown"), st.none()),
        st.tuples(st.just("cancel"), st.none()),
        st.tuples(st.just("save"), st.none()),
    ),
    max_size=15,
)


def apply(app: Ledger, order: Order, command: str, argument: object) -> None:
    if command == "capture":
        order.record_capture(attempt_id=uuid4(), amount_minor=argument)
    elif command == "decline":
        order.record_decline(attempt_id=uuid4(), decline_code=argument)
    elif command == "request_payment":
        order.request_payment(attempt_id=uuid4())
    elif command == "payment_unknown" and order.attempt_ids:
        order.record_payment_outcome_unknown(attempt_id=order.attempt_ids[-1])
    elif command == "capture_requested" and order.attempt_ids:
        order.record_capture(attempt_id=order.attempt_ids[-1], amount_minor=argument)
    elif command == "refund":
        refund_id = str(uuid4())
        order.request_refund(refund_id=refund_id, amount_minor=argument, reason="property test")
        order.complete_refund(refund_id=refund_id)
    elif command == "request_refund":
        order.request_refund(refund_id=str(uuid4()), amount_minor=argument, reason=None)
    elif command.endswith("_refund") or command == "refund_unknown":
        refund_id = next(iter(order.pending_refunds), "none")
        if command == "complete_refund":
            order.complete_refund(refund_id=refund_id)
        elif command == "fail_refund":
            order.fail_refund(refund_id=refund_id, decline_code="declined")
        else:
            order.record_refund_outcome_unknown(refund_id=refund_id)
    elif command == "cancel":
        order.cancel(reason="property test")
    elif command == "save":
        app.save(order)


@FAST
@given(total_minor=st.integers(min_value=1, max_value=1000), commands=order_commands)
def test_an_order_rebuilt_from_its_stored_events_equals_the_live_order(
    total_minor: int, commands: list[tuple[str, object]]
) -> None:
    app = build_ledger()
    live = Order.place(
        tenant_id=TENANT,
        customer_id=uuid4(),
        currency="USD",
        lines=[{"sku": "ITEM", "quantity": 1, "unit_price_minor": total_minor}],
    )
    app.save(live)

    for command, argument in commands:
        # Rejected commands are part of the history too: they must leave no trace.
        with contextlib.suppress(DomainError):
            apply(app, live, command, argument)
    app.save(live)

    rebuilt = app.repository.get(live.id)
    assert rebuilt.version == live.version
    assert rebuilt.status is live.status
    assert rebuilt.captured_minor == live.captured_minor
    assert rebuilt.refunded_minor == live.refunded_minor
    assert rebuilt.total_minor == live.total_minor
    assert rebuilt.lines == live.lines
    assert rebuilt.attempt_ids == live.attempt_ids
    assert rebuilt.decline_code == live.decline_code
    assert rebuilt.payment_outcome == live.payment_outcome
    assert rebuilt.pending_refunds == live.pending_refunds
    assert rebuilt.refunds_outcome_unknown == live.refunds_outcome_unknown
    # Money is never created: refunded and reserved never exceed captured, captured the total.
    assert rebuilt.refundable_minor >= 0
    assert rebuilt.captured_minor <= rebuilt.total_minor
    assert rebuilt.customer_id == live.customer_id
