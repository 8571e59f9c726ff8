"""The job actors on dramatiq's StubBroker (no Redis): thin, idempotent, explicit options."""

from __future__ import annotations

from uuid import UUID

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from adapters.jobs import NOTIFICATIONS_QUEUE, Jobs
from application.ledger import Ledger
from application.orders import OrderNotFound


class InMemoryNotifications:
    """Keeps notifications like the PostgreSQL store does: once per (order, kind)."""

    def __init__(self) -> None:
        self.sent: dict[tuple[UUID, str], dict] = {}

    def record(self, *, tenant_id, order_id, kind, recipient, subject) -> bool:
        if (order_id, kind) in self.sent:
            return False
        self.sent[(order_id, kind)] = {"tenant_id": tenant_id, "recipient": recipient}
        return True


@pytest.fixture
def system():
    broker = StubBroker()
    broker.emit_after("process_boot")
    ledger = bootstrap_ledger(
        vault=SandboxVault(),
        gateway=SandboxGateway(),
        fingerprint_secret=b"jobs",
    )
    notifications = InMemoryNotifications()
    jobs = Jobs(broker, ledger, notifications)
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    yield ledger, jobs, notifications, broker
    worker.stop()
    broker.close()


def _paid_order(ledger: Ledger) -> str:
    customer = ledger.register_customer(
        tenant_id="t", email="jo@example.com", name="Jo", country="GB", currency="GBP"
    )
    customer_id = UUID(customer.body["id"])
    method = ledger.attach_payment_method(
        tenant_id="t",
        customer_id=customer_id,
        card_number="4242424242424242",
        exp_month=1,
        exp_year=2031,
    )
    order = ledger.place_order(
        tenant_id="t",
        customer_id=customer_id,
        currency="GBP",
        lines=[{"sku": "S", "quantity": 1, "unit_price_minor": 500}],
        payment={"payment_method_id": method.body["id"], "mode": "purchase"},
    )
    return order.body["id"]


def test_a_confirmation_delivered_twice_is_recorded_once(system):
    ledger, jobs, notifications, broker = system
    order_id = _paid_order(ledger)
    jobs.send_order_confirmation.send(order_id)
    jobs.send_order_confirmation.send(order_id)
    broker.join(NOTIFICATIONS_QUEUE, fail_fast=True)
    assert list(notifications.sent) == [(UUID(order_id), "order_confirmation")]
    assert (
        notifications.sent[(UUID(order_id), "order_confirmation")]["recipient"] == "jo@example.com"
    )


def test_the_actor_states_its_queue_retries_time_limit_and_what_it_throws():
    options = Jobs(StubBroker(), None, None).send_order_confirmation.options  # type: ignore[arg-type]
    assert options["max_retries"] == 10
    assert options["time_limit"] == 30_000
    assert OrderNotFound in options["throws"]
    assert Jobs(StubBroker(), None, None).send_order_confirmation.queue_name == NOTIFICATIONS_QUEUE  # type: ignore[arg-type]
