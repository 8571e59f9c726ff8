"""Money at the gateway: intent before the call, outcome after, never twice, never lost.

The sandbox processor keeps its own books; every test compares the ledger against them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from application.commands import CLAIM_LEASE_S, ConcurrentModification, GatewayOutcomeUnknown
from application.idempotency import IdempotencyKeyInProgress, IdempotencyRecord
from application.ledger import Ledger
from application.payments import RefundDeclined
from application.ports import GatewayOutcome
from domain.card_usage import CardAttemptLimitReached
from domain.errors import DomainError
from domain.order import (
    CaptureExceedsAuthorization,
    Order,
    OrderNotCapturable,
    OrderNotVoidable,
    OrderStatus,
    PaymentInProgress,
)
from domain.payment_attempt import AttemptStatus, PaymentAttempt

TENANT = "acme"
TODAY = datetime(2026, 6, 15, tzinfo=UTC)
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
LINES = [{"sku": "MUG", "quantity": 2, "unit_price_minor": 1250}]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class FlakyGateway(SandboxGateway):
    """The sandbox, with hooks that run before or after the processor acts, like faults."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, UUID]] = []
        self.before: Callable[[], None] | None = None
        self.after: Callable[[], None] | None = None

    def _around(self, kind: str, key: UUID, call: Callable[[], GatewayOutcome]) -> GatewayOutcome:
        self.calls.append((kind, key))
        before, after = self.before, self.after
        self.before = self.after = None
        if before:
            before()
        outcome = call()
        if after:
            after()
        return outcome

    def purchase(self, **request: Any) -> GatewayOutcome:
        return self._hooked("purchase", request)

    def refund(self, **request: Any) -> GatewayOutcome:
        return self._hooked("refund", request)

    def authorize(self, **request: Any) -> GatewayOutcome:
        return self._hooked("authorize", request)

    def capture(self, **request: Any) -> GatewayOutcome:
        return self._hooked("capture", request)

    def void(self, **request: Any) -> GatewayOutcome:
        return self._hooked("void", request)

    def _hooked(self, kind: str, request: dict[str, Any]) -> GatewayOutcome:
        sandbox_call = getattr(SandboxGateway, kind)
        return self._around(kind, request["idempotency_key"], lambda: sandbox_call(self, **request))


def timeout() -> None:
    raise TimeoutError("the gateway did not answer in time")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway() -> FlakyGateway:
    return FlakyGateway()


@pytest.fixture
def app(gateway: FlakyGateway, clock: Clock) -> Ledger:
    return bootstrap_ledger(
        vault=SandboxVault(now=lambda: TODAY),
        gateway=gateway,
        fingerprint_secret=b"test",
        now=clock,
    )


def customer_with_card(app: Ledger, card: str = GOOD_CARD) -> tuple[UUID, str]:
    customer = app.register_customer(
        tenant_id=TENANT, email="a@example.com", name="Ada", country="US", currency="USD"
    ).body
    method = app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=UUID(customer["id"]),
        card_number=card,
        exp_month=12,
        exp_year=TODAY.year + 2,
        cvc="123",
    ).body
    return UUID(customer["id"]), method["id"]


def order_request(customer_id: UUID, method_id: str, key: str | None = "k1") -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "customer_id": customer_id,
        "currency": "USD",
        "lines": LINES,
        "payment": {"payment_method_id": method_id, "mode": "purchase"},
        "idempotency_key": key,
    }


def book_totals(gateway: SandboxGateway) -> dict[str, int]:
    """Processor charges minus refunds, per order (the ``reference``), succeeded only."""
    totals: dict[str, int] = {}
    for _, txn in gateway.book.transactions(TENANT, limit=10_000):
        if txn.status == "succeeded" and txn.kind in ("charge", "capture", "refund"):
            sign = -1 if txn.kind == "refund" else 1
            totals[txn.reference] = totals.get(txn.reference, 0) + sign * txn.amount_minor
    return totals


def the_only_order(app: Ledger) -> Any:
    attempts = [
        app.repository.get(n.originator_id)
        for n in app.recorder.select_notifications(start=1, limit=1000)
        if n.topic.endswith("PaymentAttempt.Requested")
    ]
    return app.repository.get(attempts[0].order_id), attempts


# The intent is recorded before the gateway is called --------------------------------------


def test_the_payment_intent_is_saved_before_the_gateway_is_called(
    app: Ledger, gateway: FlakyGateway
) -> None:
    customer_id, method_id = customer_with_card(app)
    seen: list[Any] = []

    def look_at_the_log() -> None:
        order, attempts = the_only_order(app)
        seen.append((order.status, attempts[0].status, attempts[0].id))

    gateway.before = look_at_the_log
    result = app.place_order(**order_request(customer_id, method_id))

    assert seen == [(OrderStatus.PROCESSING, AttemptStatus.REQUESTED, gateway.calls[0][1])]
    assert result.body["status"] == "paid"


def test_a_second_request_with_the_key_while_the_first_is_at_the_gateway_is_told_in_progress(
    app: Ledger, gateway: FlakyGateway
) -> None:
    customer_id, method_id = customer_with_card(app)
    second: list[BaseException] = []

    def duplicate_arrives() -> None:
        try:
            app.place_order(**order_request(customer_id, method_id))
        except DomainError as error:
            second.append(error)

    gateway.before = duplicate_arrives
    first = app.place_order(**order_request(customer_id, method_id))

    assert isinstance(second[0], IdempotencyKeyInProgress)
    assert second[0].code == "idempotency_key_in_progress"
    assert len(gateway.calls) == 1
    assert first.body["status"] == "paid"
    assert book_totals(gateway) == {first.body["id"]: 2500}


def test_a_gateway_timeout_records_an_unknown_outcome_never_a_decline(
    app: Ledger, gateway: FlakyGateway
) -> None:
    customer_id, method_id = customer_with_card(app)
    gateway.before = timeout

    with pytest.raises(GatewayOutcomeUnknown):
        app.place_order(**order_request(customer_id, method_id))

    order, attempts = the_only_order(app)
    assert attempts[0].status is AttemptStatus.OUTCOME_UNKNOWN
    assert order.status is OrderStatus.PROCESSING
    assert order.payment_outcome == "unknown"
    with pytest.raises(PaymentInProgress):  # the unknown outcome blocks follow-ups
        app.cancel_order(tenant_id=TENANT, order_id=order.id)


def test_a_retry_after_a_lost_answer_learns_the_charge_without_charging_again(
    app: Ledger, gateway: FlakyGateway
) -> None:
    customer_id, method_id = customer_with_card(app)
    gateway.after = timeout  # the processor charged, but its answer never arrived

    with pytest.raises(GatewayOutcomeUnknown):
        app.place_order(**order_request(customer_id, method_id))
    retry = app.place_order(**order_request(customer_id, method_id))

    assert retry.body["status"] == "paid"
    assert gateway.calls[0] == gateway.calls[1]  # the same gateway idempotency key
    assert book_totals(gateway) == {retry.body["id"]: 2500}
    assert len(gateway.book.transactions(TENANT)) == 1
    replay = app.place_order(**order_request(customer_id, method_id))
    assert replay.replayed and replay.body == retry.body


def test_a_claim_whose_request_died_is_finished_by_a_retry_after_the_lease(
    app: Ledger, gateway: FlakyGateway, clock: Clock
) -> None:
    customer_id, method_id = customer_with_card(app)
    # The process dies after saving the intent, before any gateway call.
    gateway.before = lambda: (_ for _ in ()).throw(SystemExit("killed"))
    with pytest.raises(SystemExit):
        app.place_order(**order_request(customer_id, method_id))

    with pytest.raises(IdempotencyKeyInProgress):
        app.place_order(**order_request(customer_id, method_id))
    clock.now += timedelta(seconds=CLAIM_LEASE_S + 1)
    retry = app.place_order(**order_request(customer_id, method_id))

    assert retry.body["status"] == "paid"
    assert book_totals(gateway) == {retry.body["id"]: 2500}


def test_a_declined_then_cancelled_order_still_says_its_payment_was_declined(
    app: Ledger,
) -> None:
    customer_id, method_id = customer_with_card(app, DECLINED_CARD)
    placed = app.place_order(**order_request(customer_id, method_id)).body
    cancelled = app.cancel_order(tenant_id=TENANT, order_id=UUID(placed["id"])).body

    assert placed["payment"]["outcome"] == "declined"
    assert cancelled["status"] == "cancelled"
    assert cancelled["payment"] == placed["payment"]


# Refunds reach the gateway ---------------------------------------------------------------


def paid(app: Ledger) -> UUID:
    customer_id, method_id = customer_with_card(app)
    return UUID(app.place_order(**order_request(customer_id, method_id, key=None)).body["id"])


def test_a_refund_is_executed_by_the_processor(app: Ledger, gateway: FlakyGateway) -> None:
    order_id = paid(app)

    body = app.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=1000).body

    assert body["refunded_minor"] == 1000
    kinds = [t.kind for _, t in gateway.book.transactions(TENANT)]
    assert kinds == ["charge", "refund"]
    assert book_totals(gateway) == {str(order_id): 1500}


def test_a_refund_whose_answer_is_lost_keeps_the_money_reserved_until_a_retry_learns_it(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = paid(app)
    gateway.after = timeout
    request = {"tenant_id": TENANT, "order_id": order_id, "amount_minor": 2000}

    with pytest.raises(GatewayOutcomeUnknown):
        app.refund_order(**request, idempotency_key="r1")
    order = app.get_order(TENANT, order_id)
    assert order.refunded_minor == 0 and order.refundable_minor == 500
    retry = app.refund_order(**request, idempotency_key="r1")

    assert retry.body["refunded_minor"] == 2000
    assert book_totals(gateway) == {str(order_id): 500}
    assert [k for k, _ in gateway.calls[1:]] == ["refund", "refund"]
    assert gateway.calls[1] == gateway.calls[2]


# For any history, the processor's books equal ours ---------------------------------------

steps = st.lists(
    st.tuples(
        st.sampled_from(["order", "refund", "retry"]),
        st.sampled_from([None, "timeout_before", "timeout_after"]),
        st.integers(min_value=1, max_value=3000),
        st.sampled_from([GOOD_CARD, DECLINED_CARD]),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps)
def test_processor_charges_minus_refunds_equal_captured_minus_refunded_per_order(
    history: list[tuple[str, str | None, int, str]],
) -> None:
    gateway = FlakyGateway()
    app = bootstrap_ledger(
        vault=SandboxVault(now=lambda: TODAY),
        gateway=gateway,
        fingerprint_secret=b"test",
    )
    cards = {card: customer_with_card(app, card) for card in (GOOD_CARD, DECLINED_CARD)}
    orders: list[UUID] = []
    keys: list[tuple[str, dict[str, Any]]] = []
    for index, (kind, fault, amount_minor, card) in enumerate(history):
        gateway.before = timeout if fault == "timeout_before" else None
        gateway.after = timeout if fault == "timeout_after" else None
        if kind == "order":
            request = order_request(*cards[card], key=f"o{index}")
            call = app.place_order
        elif kind == "refund" and orders:
            request = {
                "tenant_id": TENANT,
                "order_id": orders[amount_minor % len(orders)],
                "amount_minor": amount_minor,
                "idempotency_key": f"r{index}",
            }
            call = app.refund_order
        elif kind == "retry" and keys:
            method, request = keys[amount_minor % len(keys)]
            call = getattr(app, method)
        else:
            continue
        keys.append((call.__name__, request))
        with contextlib.suppress(DomainError):
            body = call(**request).body
            if call == app.place_order and UUID(body["id"]) not in orders:
                orders.append(UUID(body["id"]))

    # Every unknown outcome is learnt by retrying its key (what reconciliation will do).
    gateway.before = gateway.after = None
    for method, request in keys:
        with contextlib.suppress(DomainError):
            body = getattr(app, method)(**request).body
            if method == "place_order" and UUID(body["id"]) not in orders:
                orders.append(UUID(body["id"]))

    ours = {}
    for order_id in orders:
        order = app.repository.get(order_id)
        assert not order.pending_refunds and order.status is not OrderStatus.PROCESSING
        ours[str(order_id)] = order.captured_minor - order.refunded_minor
    processor = book_totals(gateway)
    assert {k: v for k, v in ours.items() if v} == {k: v for k, v in processor.items() if v}


# Card data: nothing derived from the card number is stored ----------------------------------


def candidates(bin6: str, last4: str) -> list[str]:
    """Every Luhn-valid 16-digit number with this BIN and last four (about 10^5)."""
    from adapters.gateways.sandbox import luhn_valid

    return [
        number for middle in range(1_000_000) if luhn_valid(number := f"{bin6}{middle:06d}{last4}")
    ]


def test_the_stored_fingerprint_of_a_card_is_the_same_for_every_number_with_its_bin_and_last4(
    app: Ledger,
) -> None:
    customer_id, _ = customer_with_card(app)
    fingerprints = []
    for index, number in enumerate(["4242424242424242", "4242420000004242"]):
        app.attach_payment_method(
            tenant_id=TENANT,
            customer_id=customer_id,
            card_number=number,
            exp_month=12,
            exp_year=TODAY.year + 2,
            cvc="123",
            idempotency_key=f"card-{index}",
        )
        record = app.repository.get(IdempotencyRecord.create_id(TENANT, f"card-{index}"))
        fingerprints.append(record.fingerprint)

    # Two different card numbers: the stored value cannot tell them apart, so it cannot be
    # brute-forced back into either (the secret next to it does not help).
    assert fingerprints[0] == fingerprints[1]


def test_brute_forcing_the_stored_fingerprint_with_the_stored_secret_recovers_no_card_number(
    app: Ledger,
) -> None:
    import hashlib
    import hmac
    import json

    customer_id, _ = customer_with_card(app)
    app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=customer_id,
        card_number="4242424242424242",
        exp_month=12,
        exp_year=TODAY.year + 2,
        cvc="123",
        idempotency_key="card",
    )
    stored = app.repository.get(IdempotencyRecord.create_id(TENANT, "card")).fingerprint

    def guess(number: str) -> str:  # the old scheme: an HMAC over the number and the CVC
        params = {
            "customer_id": str(customer_id),
            "card_number": number,
            "exp_month": 12,
            "exp_year": TODAY.year + 2,
            "cvc": "123",
        }
        canonical = json.dumps({"command": "attach_payment_method", "params": params})
        return hmac.new(app.fingerprint_secret, canonical.encode(), hashlib.sha256).hexdigest()

    assert all(guess(number) != stored for number in candidates("424242", "4242"))


def test_no_stored_event_holds_a_card_number_or_security_code(app: Ledger) -> None:
    customer_with_card(app)
    for notification in app.recorder.select_notifications(start=1, limit=1000):
        assert b"4242424242424242" not in notification.state
        assert b'"123"' not in notification.state


def test_payment_attempts_are_the_only_gateway_intents(app: Ledger) -> None:
    order_id = paid(app)
    order = app.get_order(TENANT, order_id)
    attempt = app.repository.get(order.attempt_ids[0])
    assert isinstance(attempt, PaymentAttempt)
    assert attempt.status is AttemptStatus.SUCCEEDED


# Found by review: outcomes the gateway gave are always saved ---------------------------------


def test_a_refund_racing_another_refund_of_the_order_is_still_recorded(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = paid(app)
    other: list[Any] = []
    gateway.after = lambda: other.append(
        app.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=500)
    )

    first = app.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=1000)

    order = app.get_order(TENANT, order_id)
    assert other[0].body["refunded_minor"] == 500
    assert first.body["refunded_minor"] == 1500
    assert order.refunded_minor == 1500 and not order.pending_refunds
    assert book_totals(gateway) == {str(order_id): 1000}


@pytest.mark.parametrize("command", ["place_order", "refund_order"])
def test_a_lost_answer_without_a_key_names_a_key_that_learns_it(
    app: Ledger, gateway: FlakyGateway, command: str
) -> None:
    customer_id, method_id = customer_with_card(app)
    if command == "place_order":
        request = order_request(customer_id, method_id, key=None)
    else:
        request = {"tenant_id": TENANT, "order_id": paid(app), "amount_minor": 2500}
    gateway.after = timeout

    with pytest.raises(GatewayOutcomeUnknown) as lost:
        getattr(app, command)(**request)
    retry = getattr(app, command)(**{**request, "idempotency_key": lost.value.idempotency_key})

    assert lost.value.idempotency_key.startswith("auto_")
    assert retry.body["status"] in ("paid", "refunded")
    order = app.get_order(TENANT, UUID(retry.body["id"]))
    assert book_totals(gateway) == {str(order.id): order.captured_minor - order.refunded_minor}


def test_a_refund_the_processor_declines_is_an_error_and_frees_the_reservation(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = paid(app)
    gateway.book._rows.clear()  # type: ignore[attr-defined]  # a charge the processor lost
    request = {
        "tenant_id": TENANT,
        "order_id": order_id,
        "amount_minor": 2500,
        "idempotency_key": "rf",
    }

    with pytest.raises(RefundDeclined) as declined:
        app.refund_order(**request)
    with pytest.raises(RefundDeclined) as replayed:
        app.refund_order(**request)

    assert declined.value.code == replayed.value.code == "refund_declined"
    assert "charge_not_found" in declined.value.message
    order = app.get_order(TENANT, order_id)
    assert order.refunded_minor == 0 and order.refundable_minor == 2500


# Authorize, then capture or void ------------------------------------------------------------


def authorized(app: Ledger, key: str | None = None) -> UUID:
    customer_id, method_id = customer_with_card(app)
    request = order_request(customer_id, method_id, key=key)
    request["payment"]["mode"] = "authorize"
    body = app.place_order(**request).body
    assert body["status"] == "authorized"
    return UUID(body["id"])


def test_an_authorization_holds_the_money_and_a_partial_capture_takes_part_of_it_once(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = authorized(app)
    assert book_totals(gateway) == {}  # nothing taken yet

    with pytest.raises(CaptureExceedsAuthorization):
        app.capture_order(tenant_id=TENANT, order_id=order_id, amount_minor=2501)
    body = app.capture_order(tenant_id=TENANT, order_id=order_id, amount_minor=2000).body
    with pytest.raises(OrderNotCapturable):
        app.capture_order(tenant_id=TENANT, order_id=order_id, amount_minor=500)
    refunded = app.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=500).body

    assert body["status"] == "paid" and body["captured_minor"] == 2000
    assert refunded["refunded_minor"] == 500
    assert book_totals(gateway) == {str(order_id): 1500}
    kinds = [t.kind for _, t in gateway.book.transactions(TENANT)]
    assert kinds == ["authorization", "capture", "refund"]


def test_a_void_releases_an_authorization_and_nothing_can_be_captured_after(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = authorized(app)

    body = app.void_order(tenant_id=TENANT, order_id=order_id).body

    assert body["status"] == "voided"
    with pytest.raises(OrderNotCapturable):
        app.capture_order(tenant_id=TENANT, order_id=order_id)
    with pytest.raises(OrderNotVoidable):
        app.void_order(tenant_id=TENANT, order_id=order_id)
    assert book_totals(gateway) == {}
    assert [t.kind for _, t in gateway.book.transactions(TENANT)] == ["authorization", "void"]


def test_a_capture_whose_answer_was_lost_is_learnt_by_a_retry_without_capturing_twice(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = authorized(app)
    gateway.after = timeout

    with pytest.raises(GatewayOutcomeUnknown) as lost:
        app.capture_order(tenant_id=TENANT, order_id=order_id)
    with pytest.raises(PaymentInProgress):  # the authorization is busy until the outcome is known
        app.void_order(tenant_id=TENANT, order_id=order_id)
    retry = app.capture_order(
        tenant_id=TENANT, order_id=order_id, idempotency_key=lost.value.idempotency_key
    )

    assert retry.body["status"] == "paid" and retry.body["captured_minor"] == 2500
    assert book_totals(gateway) == {str(order_id): 2500}
    assert [t.kind for _, t in gateway.book.transactions(TENANT)] == ["authorization", "capture"]


def test_a_capture_and_a_void_racing_on_one_authorization_leave_one_of_them(
    app: Ledger, gateway: FlakyGateway
) -> None:
    order_id = authorized(app)
    other: list[BaseException] = []

    def void_arrives() -> None:
        try:
            app.void_order(tenant_id=TENANT, order_id=order_id)
        except DomainError as error:
            other.append(error)

    gateway.before = void_arrives
    body = app.capture_order(tenant_id=TENANT, order_id=order_id).body

    assert isinstance(other[0], PaymentInProgress)
    assert body["status"] == "paid"
    assert book_totals(gateway) == {str(order_id): 2500}


def test_without_gateways_two_intents_of_a_card_taking_its_last_attempt_cannot_both_be_saved(
    app: Ledger, gateway: FlakyGateway
) -> None:
    """Issue 7 on the default processor: the card's usage is saved with the intent, at the
    version it was read at, so two concurrent attempts cannot overshoot the scheme's limit."""
    customer_id, method_id = customer_with_card(app)
    for _ in range(14):  # Visa allows 15
        placed = app.place_order(
            tenant_id=TENANT,
            customer_id=customer_id,
            currency="USD",
            lines=LINES,
            payment={"payment_method_id": method_id, "mode": "purchase"},
        )
        assert placed.body["status"] == "paid"
    customer = app.repository.get(customer_id)
    intents = []
    for _ in range(2):  # both read the usage before either is saved
        order = Order.place(tenant_id=TENANT, customer_id=customer_id, currency="USD", lines=LINES)
        payment = {"payment_method_id": method_id, "mode": "purchase"}
        intents.append([order, *app.purchase_intent(customer, order, payment)])
    calls = len(gateway.calls)

    app.save_all(intents[0])
    with pytest.raises(ConcurrentModification):
        app.save_all(intents[1])

    with pytest.raises(CardAttemptLimitReached):
        app.place_order(
            tenant_id=TENANT,
            customer_id=customer_id,
            currency="USD",
            lines=LINES,
            payment={"payment_method_id": method_id, "mode": "purchase"},
        )
    assert len(gateway.calls) == calls
