"""Events stored in an earlier shape (version 1) still load, upcast to today's shape."""

from __future__ import annotations

import json
from dataclasses import replace
from uuid import uuid4

from adapters.bootstrap import bootstrap_ledger
from application.idempotency import IdempotencyRecord
from domain.order import Order

LINES = [{"sku": "MUG", "quantity": 1, "unit_price_minor": 1000}]


def as_version_1(stored: object, dropped: tuple[str, ...]) -> object:
    """The stored event as version 1 wrote it: no ``class_version``, without ``dropped``."""
    state = json.loads(stored.state)  # type: ignore[attr-defined]
    state.pop("class_version", None)
    for field in dropped:
        state.pop(field, None)
    return replace(stored, state=json.dumps(state).encode())  # type: ignore[type-var]


def stored_events_of(app: object, aggregate_id: object) -> list[object]:
    return list(app.recorder.select_events(aggregate_id))  # type: ignore[attr-defined]


def test_a_version_1_payment_requested_loads_as_a_purchase_of_an_unknown_gateway() -> None:
    app = bootstrap_ledger()
    order = Order.place(tenant_id="t", customer_id=uuid4(), currency="USD", lines=LINES)
    attempt_id = uuid4()
    order.request_payment(attempt_id=attempt_id, kind="authorize", gateway="gw", amount_minor=1)
    app.save(order)
    stored = stored_events_of(app, order.id)[1]

    event = app.mapper.to_domain_event(as_version_1(stored, ("kind", "gateway", "amount_minor")))

    assert isinstance(event, Order.PaymentRequested)
    assert (event.attempt_id, event.kind, event.gateway, event.amount_minor) == (
        attempt_id,
        "purchase",
        None,
        None,
    )


def test_a_version_1_refunded_loads_without_a_refund_id() -> None:
    app = bootstrap_ledger()
    order = Order.place(tenant_id="t", customer_id=uuid4(), currency="USD", lines=LINES)
    order.record_capture(attempt_id=uuid4(), amount_minor=1000)
    order.request_refund(refund_id="r1", amount_minor=400, reason=None)
    order.complete_refund(refund_id="r1")
    app.save(order)
    stored = stored_events_of(app, order.id)[-1]

    event = app.mapper.to_domain_event(as_version_1(stored, ("refund_id",)))

    assert isinstance(event, Order.Refunded)
    assert (event.refund_id, event.amount_minor, event.refunded_minor) == (None, 400, 400)


def test_a_version_1_idempotency_record_loads_as_completed_without_resume() -> None:
    app = bootstrap_ledger()
    record = IdempotencyRecord(tenant_id="t", key="k", fingerprint="f", result={"a": 1}, resume={})
    app.save(record)
    stored = stored_events_of(app, record.id)[0]

    event = app.mapper.to_domain_event(as_version_1(stored, ("resume",)))

    assert isinstance(event, IdempotencyRecord.Recorded)
    assert (event.result, event.resume) == ({"a": 1}, None)
