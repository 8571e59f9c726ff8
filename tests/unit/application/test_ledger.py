"""The Ledger application on in-memory persistence: commands, tenancy, idempotency, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from application.commands import ConcurrentModification
from application.customers import CustomerNotFound
from application.idempotency import IdempotencyKeyReused, InvalidIdempotencyKey
from application.ledger import Ledger
from application.orders import OrderNotFound
from application.payments import UnsupportedPaymentMode
from application.ports import CardRejected, GatewayOutcome
from domain.customer import InvalidEmail, PaymentMethodNotFound
from domain.order import (
    InvalidOrderLines,
    OrderNotCancellable,
    OrderStatus,
    RefundExceedsCaptured,
)
from domain.payment_attempt import AttemptStatus

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
TODAY = datetime(2025, 6, 15, tzinfo=UTC)
EXP_YEAR = TODAY.year + 3
SUCCEEDS = "4242424242424242"
GENERIC_DECLINE = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
EXPIRED_CARD = "4000000000000069"
LINES = [
    {"sku": "MUG", "quantity": 2, "unit_price_minor": 1250},
    {"sku": "TEA", "quantity": 1, "unit_price_minor": 500},
]
TOTAL_MINOR = 3000


class CountingGateway(SandboxGateway):
    """The sandbox gateway, remembering every purchase it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.purchases: list[dict[str, Any]] = []

    def purchase(self, **request: Any) -> GatewayOutcome:
        self.purchases.append(request)
        return super().purchase(**request)


def build_ledger(gateway: SandboxGateway | None = None) -> Ledger:
    return bootstrap_ledger(
        vault=SandboxVault(now=lambda: TODAY),
        gateway=gateway or SandboxGateway(),
        fingerprint_secret=b"test",
    )


@pytest.fixture
def gateway() -> CountingGateway:
    return CountingGateway()


@pytest.fixture
def app(gateway: CountingGateway) -> Ledger:
    return build_ledger(gateway)


def register(app: Ledger, tenant_id: str = TENANT_A, **overrides: Any) -> UUID:
    fields = {
        "email": "ada@example.com",
        "name": "Ada",
        "country": "GB",
        "currency": "GBP",
        **overrides,
    }
    return UUID(app.register_customer(tenant_id=tenant_id, **fields).body["id"])


def attach_card(
    app: Ledger, customer_id: UUID, card_number: str = SUCCEEDS, tenant_id: str = TENANT_A
) -> UUID:
    body = app.attach_payment_method(
        tenant_id=tenant_id,
        customer_id=customer_id,
        card_number=card_number,
        exp_month=12,
        exp_year=EXP_YEAR,
        cvc="123",
    ).body
    return UUID(body["id"])


def place_paid_order(app: Ledger, card_number: str = SUCCEEDS, tenant_id: str = TENANT_A) -> UUID:
    customer_id = register(app, tenant_id)
    payment_method_id = attach_card(app, customer_id, card_number, tenant_id)
    body = app.place_order(
        tenant_id=tenant_id,
        customer_id=customer_id,
        currency="GBP",
        lines=LINES,
        payment={"payment_method_id": str(payment_method_id)},
    ).body
    return UUID(body["id"])


def place_unpaid_order(app: Ledger, tenant_id: str = TENANT_A) -> UUID:
    customer_id = register(app, tenant_id)
    body = app.place_order(
        tenant_id=tenant_id, customer_id=customer_id, currency="GBP", lines=LINES
    ).body
    return UUID(body["id"])


def stored_event_count(app: Ledger) -> int:
    return app.recorder.max_notification_id() or 0


# Customers and cards ----------------------------------------------------------------------


def test_registering_a_customer_stores_it_under_its_tenant(app: Ledger) -> None:
    result = app.register_customer(
        tenant_id=TENANT_A, email="ada@example.com", name="Ada", country="GB", currency="GBP"
    )

    customer = app.get_customer(TENANT_A, UUID(result.body["id"]))
    assert customer.email == result.body["email"] == "ada@example.com"
    assert result.body["country"] == "GB"
    assert result.replayed is False
    assert result.position == app.recorder.max_notification_id()


def test_registering_with_an_invalid_email_stores_nothing(app: Ledger) -> None:
    with pytest.raises(InvalidEmail):
        register(app, email="not-an-email")

    assert stored_event_count(app) == 0


def test_attaching_a_card_returns_its_details_without_the_token(app: Ledger) -> None:
    customer_id = register(app)

    body = app.attach_payment_method(
        tenant_id=TENANT_A,
        customer_id=customer_id,
        card_number=SUCCEEDS,
        exp_month=12,
        exp_year=EXP_YEAR,
    ).body

    assert body["brand"] == "visa"
    assert body["last4"] == "4242"
    assert "token" not in body
    stored = app.get_customer(TENANT_A, customer_id).payment_method(body["id"])
    assert stored["token"].startswith("tok_sandbox_")


def test_attaching_a_rejected_card_raises_card_rejected_and_stores_nothing(app: Ledger) -> None:
    customer_id = register(app)
    before = stored_event_count(app)

    with pytest.raises(CardRejected):
        attach_card(app, customer_id, "4242424242424241")

    assert stored_event_count(app) == before
    assert app.get_customer(TENANT_A, customer_id).payment_methods == {}


def test_attaching_a_card_to_an_unknown_customer_raises_customer_not_found(app: Ledger) -> None:
    with pytest.raises(CustomerNotFound):
        attach_card(app, uuid4())


# Orders and payments ----------------------------------------------------------------------


def test_placing_an_order_without_payment_leaves_it_pending(app: Ledger) -> None:
    customer_id = register(app)

    body = app.place_order(
        tenant_id=TENANT_A, customer_id=customer_id, currency="GBP", lines=LINES
    ).body

    assert body["status"] == "pending"
    assert body["total_minor"] == TOTAL_MINOR
    assert body["payment"] is None
    assert app.get_order(TENANT_A, UUID(body["id"])).status is OrderStatus.PENDING


def test_placing_an_order_with_a_good_card_captures_the_total(
    app: Ledger, gateway: CountingGateway
) -> None:
    customer_id = register(app)
    payment_method_id = attach_card(app, customer_id)

    body = app.place_order(
        tenant_id=TENANT_A,
        customer_id=customer_id,
        currency="GBP",
        lines=LINES,
        payment={"payment_method_id": str(payment_method_id)},
    ).body

    assert body["status"] == "paid"
    assert body["captured_minor"] == TOTAL_MINOR
    payment = body["payment"]
    assert {k: payment[k] for k in ("outcome", "decline_code", "attempts")} == {
        "outcome": "succeeded",
        "decline_code": None,
        "attempts": 1,
    }
    assert [(h["kind"], h["outcome"], h["amount_minor"]) for h in payment["history"]] == [
        ("purchase", "succeeded", TOTAL_MINOR)
    ]
    order = app.get_order(TENANT_A, UUID(body["id"]))
    attempt = app.repository.get(order.attempt_ids[0])
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.transaction_id.startswith("ch_sandbox_")
    # The attempt id is the gateway's idempotency key, so a retried save cannot charge twice.
    assert len(gateway.purchases) == 1
    assert gateway.purchases[0]["idempotency_key"] == attempt.id
    assert gateway.purchases[0]["amount_minor"] == TOTAL_MINOR
    assert gateway.purchases[0]["currency"] == "GBP"


@pytest.mark.parametrize(
    ("card_number", "decline_code", "hard"),
    [
        (GENERIC_DECLINE, "generic_decline", False),
        (INSUFFICIENT_FUNDS, "insufficient_funds", False),
        (EXPIRED_CARD, "expired_card", True),
    ],
)
def test_a_declined_purchase_still_records_the_order_as_declined(
    app: Ledger, card_number: str, decline_code: str, hard: bool
) -> None:
    order_id = place_paid_order(app, card_number)

    order = app.get_order(TENANT_A, order_id)
    assert order.status is OrderStatus.DECLINED
    assert order.decline_code == decline_code
    assert order.captured_minor == 0
    attempt = app.repository.get(order.attempt_ids[0])
    assert attempt.status is AttemptStatus.DECLINED
    assert attempt.hard_decline is hard


def test_paying_with_an_unknown_payment_method_raises_and_stores_nothing(
    app: Ledger, gateway: CountingGateway
) -> None:
    customer_id = register(app)
    before = stored_event_count(app)

    with pytest.raises(PaymentMethodNotFound):
        app.place_order(
            tenant_id=TENANT_A,
            customer_id=customer_id,
            currency="GBP",
            lines=LINES,
            payment={"payment_method_id": str(uuid4())},
        )

    assert stored_event_count(app) == before
    assert gateway.purchases == []


def test_an_unknown_payment_mode_raises_unsupported_payment_mode(app: Ledger) -> None:
    customer_id = register(app)
    payment_method_id = attach_card(app, customer_id)

    with pytest.raises(UnsupportedPaymentMode):
        app.place_order(
            tenant_id=TENANT_A,
            customer_id=customer_id,
            currency="GBP",
            lines=LINES,
            payment={"payment_method_id": str(payment_method_id), "mode": "layaway"},
        )


def test_placing_an_order_with_bad_lines_raises_invalid_order_lines(app: Ledger) -> None:
    customer_id = register(app)

    with pytest.raises(InvalidOrderLines):
        app.place_order(tenant_id=TENANT_A, customer_id=customer_id, currency="GBP", lines=[])


def test_placing_an_order_for_an_unknown_customer_raises_customer_not_found(app: Ledger) -> None:
    with pytest.raises(CustomerNotFound):
        app.place_order(tenant_id=TENANT_A, customer_id=uuid4(), currency="GBP", lines=LINES)


# Refunds and cancellations ----------------------------------------------------------------


def test_a_partial_refund_leaves_the_order_partially_refunded(app: Ledger) -> None:
    order_id = place_paid_order(app)

    body = app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=1000).body

    assert body["status"] == "partially_refunded"
    assert body["refunded_minor"] == 1000
    assert body["payment"]["outcome"] == "succeeded"
    assert app.get_order(TENANT_A, order_id).refunded_minor == 1000


def test_refunding_the_rest_leaves_the_order_refunded(app: Ledger) -> None:
    order_id = place_paid_order(app)
    app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=1000)

    body = app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=2000).body

    assert body["status"] == "refunded"
    assert app.get_order(TENANT_A, order_id).refunded_minor == TOTAL_MINOR


def test_refunding_more_than_captured_raises_and_stores_nothing(app: Ledger) -> None:
    order_id = place_paid_order(app)
    before = stored_event_count(app)

    with pytest.raises(RefundExceedsCaptured):
        app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=TOTAL_MINOR + 1)

    assert stored_event_count(app) == before
    assert app.get_order(TENANT_A, order_id).refunded_minor == 0


def test_cancelling_an_unpaid_order_leaves_it_cancelled(app: Ledger) -> None:
    order_id = place_unpaid_order(app)

    body = app.cancel_order(tenant_id=TENANT_A, order_id=order_id, reason="duplicate").body

    assert body["status"] == "cancelled"
    assert app.get_order(TENANT_A, order_id).status is OrderStatus.CANCELLED


def test_cancelling_a_declined_order_leaves_it_cancelled(app: Ledger) -> None:
    order_id = place_paid_order(app, GENERIC_DECLINE)

    body = app.cancel_order(tenant_id=TENANT_A, order_id=order_id).body

    assert body["status"] == "cancelled"
    assert body["payment"]["decline_code"] == "generic_decline"


def test_cancelling_a_paid_order_raises_order_not_cancellable(app: Ledger) -> None:
    order_id = place_paid_order(app)

    with pytest.raises(OrderNotCancellable):
        app.cancel_order(tenant_id=TENANT_A, order_id=order_id)

    assert app.get_order(TENANT_A, order_id).status is OrderStatus.PAID


# Tenant isolation -------------------------------------------------------------------------


def test_another_tenant_cannot_see_an_order(app: Ledger) -> None:
    order_id = place_paid_order(app, tenant_id=TENANT_A)

    with pytest.raises(OrderNotFound):
        app.get_order(TENANT_B, order_id)


def test_another_tenant_cannot_refund_an_order(app: Ledger) -> None:
    order_id = place_paid_order(app, tenant_id=TENANT_A)

    with pytest.raises(OrderNotFound):
        app.refund_order(tenant_id=TENANT_B, order_id=order_id, amount_minor=100)

    assert app.get_order(TENANT_A, order_id).refunded_minor == 0


def test_another_tenant_cannot_cancel_an_order(app: Ledger) -> None:
    order_id = place_unpaid_order(app, tenant_id=TENANT_A)

    with pytest.raises(OrderNotFound):
        app.cancel_order(tenant_id=TENANT_B, order_id=order_id)

    assert app.get_order(TENANT_A, order_id).status is OrderStatus.PENDING


def test_another_tenant_cannot_see_or_use_a_customer(app: Ledger) -> None:
    customer_id = register(app, TENANT_A)

    with pytest.raises(CustomerNotFound):
        app.get_customer(TENANT_B, customer_id)
    with pytest.raises(CustomerNotFound):
        attach_card(app, customer_id, tenant_id=TENANT_B)
    with pytest.raises(CustomerNotFound):
        app.place_order(tenant_id=TENANT_B, customer_id=customer_id, currency="GBP", lines=LINES)


def test_an_id_of_another_kind_of_aggregate_is_not_an_order(app: Ledger) -> None:
    customer_id = register(app)

    with pytest.raises(OrderNotFound):
        app.get_order(TENANT_A, customer_id)
    with pytest.raises(OrderNotFound):
        app.get_order(TENANT_A, uuid4())


# Idempotency ------------------------------------------------------------------------------


def test_the_same_key_and_input_replays_the_first_result(app: Ledger) -> None:
    fields = {"email": "ada@example.com", "name": "Ada", "country": "GB", "currency": "GBP"}
    first = app.register_customer(tenant_id=TENANT_A, idempotency_key="reg-1", **fields)
    events_after_first = stored_event_count(app)

    second = app.register_customer(tenant_id=TENANT_A, idempotency_key="reg-1", **fields)

    assert first.replayed is False
    assert second.replayed is True
    assert second.body == first.body
    assert stored_event_count(app) == events_after_first
    assert second.position is not None and second.position >= first.position


def test_a_replayed_purchase_does_not_charge_again(app: Ledger, gateway: CountingGateway) -> None:
    customer_id = register(app)
    payment_method_id = attach_card(app, customer_id)
    request = {
        "tenant_id": TENANT_A,
        "customer_id": customer_id,
        "currency": "GBP",
        "lines": LINES,
        "payment": {"payment_method_id": str(payment_method_id)},
        "idempotency_key": "order-1",
    }

    first = app.place_order(**request)
    second = app.place_order(**request)

    assert second.replayed is True
    assert second.body == first.body
    assert len(gateway.purchases) == 1


def test_a_replayed_refund_refunds_once(app: Ledger) -> None:
    order_id = place_paid_order(app)

    first = app.refund_order(
        tenant_id=TENANT_A, order_id=order_id, amount_minor=700, idempotency_key="r"
    )
    second = app.refund_order(
        tenant_id=TENANT_A, order_id=order_id, amount_minor=700, idempotency_key="r"
    )

    assert second.replayed is True
    assert second.body == first.body
    assert app.get_order(TENANT_A, order_id).refunded_minor == 700


def test_the_same_key_with_different_input_raises_idempotency_key_reused(app: Ledger) -> None:
    order_id = place_paid_order(app)
    app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=700, idempotency_key="r")

    with pytest.raises(IdempotencyKeyReused) as raised:
        app.refund_order(
            tenant_id=TENANT_A, order_id=order_id, amount_minor=800, idempotency_key="r"
        )

    assert raised.value.code == "idempotency_key_reused"
    assert app.get_order(TENANT_A, order_id).refunded_minor == 700


def test_the_same_key_for_a_different_command_raises_idempotency_key_reused(app: Ledger) -> None:
    order_id = place_unpaid_order(app)
    register(app, idempotency_key="k")

    with pytest.raises(IdempotencyKeyReused):
        app.cancel_order(tenant_id=TENANT_A, order_id=order_id, idempotency_key="k")

    assert app.get_order(TENANT_A, order_id).status is OrderStatus.PENDING


def test_the_same_key_in_two_tenants_names_two_requests(app: Ledger) -> None:
    first = register(app, TENANT_A, idempotency_key="k")

    second = register(app, TENANT_B, idempotency_key="k")

    assert first != second
    assert app.get_customer(TENANT_B, second).tenant_id == TENANT_B


def test_a_failed_command_does_not_use_up_its_key(app: Ledger) -> None:
    customer_id = register(app)
    request = {
        "tenant_id": TENANT_A,
        "customer_id": customer_id,
        "card_number": "4242424242424241",
        "exp_month": 12,
        "exp_year": EXP_YEAR,
        "idempotency_key": "card-1",
    }
    with pytest.raises(CardRejected):
        app.attach_payment_method(**request)

    result = app.attach_payment_method(**{**request, "card_number": SUCCEEDS})

    assert result.replayed is False
    assert result.body["last4"] == "4242"


@pytest.mark.parametrize("key", ["", "k" * 256, "line\nbreak"])
def test_a_malformed_idempotency_key_raises_invalid_idempotency_key(app: Ledger, key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        register(app, idempotency_key=key)

    assert stored_event_count(app) == 0


# Card numbers never reach the event store -------------------------------------------------


def test_a_card_number_never_appears_in_any_stored_event(app: Ledger) -> None:
    customer_id = register(app)
    attach_card(app, customer_id, SUCCEEDS)
    app.attach_payment_method(
        tenant_id=TENANT_A,
        customer_id=customer_id,
        card_number="4242 4242 4242 4242",
        exp_month=12,
        exp_year=EXP_YEAR,
        idempotency_key="card-with-key",
    )
    payment_method_id = attach_card(app, customer_id, SUCCEEDS)
    app.place_order(
        tenant_id=TENANT_A,
        customer_id=customer_id,
        currency="GBP",
        lines=LINES,
        payment={"payment_method_id": str(payment_method_id)},
        idempotency_key="order-1",
    )

    notifications = app.recorder.select_notifications(start=1, limit=10000)

    # The scan must see the card events, or it would pass for the wrong reason.
    assert sum("PaymentMethodAttached" in n.topic for n in notifications) == 3
    assert any(b"424242" in n.state for n in notifications)  # the BIN is kept, as designed
    for notification in notifications:
        assert b"4242424242424242" not in notification.state
        assert b"4242 4242 4242 4242" not in notification.state


# Concurrent modification ------------------------------------------------------------------


def test_of_two_writers_from_the_same_version_only_the_first_save_succeeds(app: Ledger) -> None:
    order_id = place_paid_order(app)
    first_copy = app.repository.get(order_id)
    second_copy = app.repository.get(order_id)
    first_copy.request_refund(refund_id="r1", amount_minor=100, reason=None)
    second_copy.request_refund(refund_id="r2", amount_minor=200, reason=None)

    app.save(first_copy)
    with pytest.raises(IntegrityError):
        app.save(second_copy)

    assert app.get_order(TENANT_A, order_id).pending_refunds == {"r1": 100}


def test_a_lost_race_is_reported_as_concurrent_modification(app: Ledger) -> None:
    order_id = place_paid_order(app)
    first_copy = app.repository.get(order_id)
    second_copy = app.repository.get(order_id)
    first_copy.request_refund(refund_id="r1", amount_minor=100, reason=None)
    second_copy.request_refund(refund_id="r2", amount_minor=200, reason=None)

    app.save_all([first_copy])
    with pytest.raises(ConcurrentModification) as raised:
        app.save_all([second_copy])

    assert raised.value.code == "concurrent_modification"


def interleave_before_first_save(app: Ledger, monkeypatch, competitor) -> None:
    """Run ``competitor`` to completion just before the next command's save, like a race."""
    save = app.save
    raced: list[bool] = []

    def racing_save(*aggregates):
        if not raced:
            raced.append(True)
            competitor()
        return save(*aggregates)

    monkeypatch.setattr(app, "save", racing_save)


def test_a_refund_that_loses_a_race_raises_concurrent_modification(
    app: Ledger, monkeypatch
) -> None:
    order_id = place_paid_order(app)
    interleave_before_first_save(
        app,
        monkeypatch,
        lambda: app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=200),
    )

    with pytest.raises(ConcurrentModification):
        app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=100)

    assert app.get_order(TENANT_A, order_id).refunded_minor == 200


def test_a_duplicate_request_that_loses_a_race_is_answered_with_the_winners_result(
    app: Ledger, monkeypatch
) -> None:
    order_id = place_paid_order(app)
    request = {
        "tenant_id": TENANT_A,
        "order_id": order_id,
        "amount_minor": 100,
        "idempotency_key": "r",
    }
    winner: list = []
    interleave_before_first_save(
        app, monkeypatch, lambda: winner.append(app.refund_order(**request))
    )

    loser = app.refund_order(**request)

    assert winner[0].replayed is False
    assert loser.replayed is True
    assert loser.body == winner[0].body
    assert app.get_order(TENANT_A, order_id).refunded_minor == 100
