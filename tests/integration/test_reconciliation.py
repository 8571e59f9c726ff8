"""The reconciler finishes payment attempts whose outcome nobody learnt — charging never twice."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import Services
from adapters.reconciliation import PaymentReconciler
from application.commands import GatewayOutcomeUnknown
from tests.integration.payment_fakes import (
    TENANT,
    FaultyGateway,
    charges,
    install_faulty_gateway,
    killed,
    purchase_request,
    timeout,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(running_services: Services) -> FaultyGateway:
    return install_faulty_gateway(running_services)


def reconciler(services: Services, after_s: float = 0.0) -> PaymentReconciler:
    return PaymentReconciler(
        services.ledger, lambda: services.orders, after_s=after_s, interval_s=3600
    )


def read_model_caught_up(services: Services) -> None:
    head = services.ledger.recorder.max_notification_id() or 0
    assert services.waiter.wait(services.orders, head, 10)


def only_order(services: Services) -> dict[str, Any]:
    rows = services.orders.list(TENANT, limit=10)
    assert len(rows) == 1
    return rows[0]


def test_a_charge_whose_answer_was_lost_is_recorded_without_charging_again(
    running_services: Services, gateway: FaultyGateway
) -> None:
    request = purchase_request(running_services)
    gateway.after = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        running_services.ledger.place_order(**request)
    read_model_caught_up(running_services)
    assert only_order(running_services)["payment_outcome"] == "unknown"

    outcomes = reconciler(running_services).reconcile()

    assert outcomes == {"succeeded": 1}
    assert len(charges(running_services)) == 1
    read_model_caught_up(running_services)
    order = only_order(running_services)
    assert order["status"] == "paid" and order["captured_minor"] == 4200


def test_an_intent_whose_process_died_before_the_call_is_charged_once(
    running_services: Services, gateway: FaultyGateway
) -> None:
    request = purchase_request(running_services, key="checkout-1")
    gateway.before = killed
    with pytest.raises(SystemExit):
        running_services.ledger.place_order(**request)
    read_model_caught_up(running_services)
    assert charges(running_services) == []

    assert reconciler(running_services).reconcile() == {"succeeded": 1}
    read_model_caught_up(running_services)
    assert reconciler(running_services).reconcile() == {}  # nothing left to do

    assert len(charges(running_services)) == 1
    # The client's own retry, much later, is answered with what happened (the key completes).
    retry = running_services.ledger.place_order(**{**request, "idempotency_key": "checkout-1"})
    assert retry.body["status"] == "paid"
    assert len(charges(running_services)) == 1


def test_while_the_gateway_stays_down_the_attempt_stays_unknown_then_is_finished(
    running_services: Services, gateway: FaultyGateway
) -> None:
    request = purchase_request(running_services)
    gateway.before = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        running_services.ledger.place_order(**request)
    read_model_caught_up(running_services)

    gateway.before = timeout  # still down at the first reconciliation
    assert reconciler(running_services).reconcile() == {"unknown": 1}
    assert charges(running_services) == []

    read_model_caught_up(running_services)
    assert reconciler(running_services).reconcile() == {"succeeded": 1}
    assert len(charges(running_services)) == 1


def test_an_attempt_younger_than_the_lease_is_left_to_its_request(
    running_services: Services, gateway: FaultyGateway
) -> None:
    request = purchase_request(running_services)
    gateway.before = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        running_services.ledger.place_order(**request)
    read_model_caught_up(running_services)

    assert reconciler(running_services, after_s=3600).reconcile() == {}
    assert gateway.purchases == 1


def authorized_order(services: Services) -> UUID:
    request = purchase_request(services)
    request["payment"]["mode"] = "authorize"
    return UUID(services.ledger.place_order(**request).body["id"])


def test_a_capture_and_a_refund_whose_answers_were_lost_are_recorded_once(
    running_services: Services, gateway: FaultyGateway
) -> None:
    ledger = running_services.ledger
    order_id = authorized_order(running_services)
    gateway.after = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        ledger.capture_order(tenant_id=TENANT, order_id=order_id)
    read_model_caught_up(running_services)

    assert reconciler(running_services).reconcile() == {"resolved": 1}
    assert ledger.get_order(TENANT, order_id).captured_minor == 4200

    gateway.after = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        ledger.refund_order(tenant_id=TENANT, order_id=order_id, amount_minor=1200)
    read_model_caught_up(running_services)
    assert reconciler(running_services).reconcile() == {"resolved": 1}

    order = ledger.get_order(TENANT, order_id)
    assert (order.captured_minor, order.refunded_minor, order.pending_refunds) == (4200, 1200, {})
    kinds = [t.kind for _, t in running_services.sandbox_book.transactions(TENANT)]  # type: ignore[union-attr]
    assert kinds == ["authorization", "capture", "refund"]
    read_model_caught_up(running_services)
    assert only_order(running_services)["pending_calls"] == {}


def test_a_call_that_stays_unknown_waits_for_its_schedule_and_holds_up_no_other(
    running_services: Services, gateway: FaultyGateway
) -> None:
    now = [0.0]
    first, second = purchase_request(running_services), purchase_request(running_services)
    gateway.before = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        running_services.ledger.place_order(**first)
    gateway.before = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        running_services.ledger.place_order(**second)
    read_model_caught_up(running_services)
    one_at_a_time = PaymentReconciler(
        running_services.ledger,
        lambda: running_services.orders,
        after_s=0,
        interval_s=3600,
        batch_size=1,
        clock=lambda: now[0],
    )

    gateway.before = timeout  # the first stays unknown ...
    assert one_at_a_time.reconcile() == {"unknown": 1}
    assert one_at_a_time.reconcile() == {"succeeded": 1}  # ... the second is not held up
    read_model_caught_up(running_services)
    assert one_at_a_time.reconcile() == {}  # the first waits for its next try (5 minutes)
    now[0] += 301
    assert one_at_a_time.reconcile() == {"succeeded": 1}
    assert len(charges(running_services)) == 2
