"""Jobs on real Redis: the log-following dispatcher and the idempotent confirmation actor."""

from __future__ import annotations

from uuid import UUID

import pytest

from adapters.jobs import NOTIFICATIONS_QUEUE

pytestmark = pytest.mark.integration


def test_a_paid_order_gets_exactly_one_confirmation_even_when_the_job_is_delivered_twice(
    running_services,
):
    services = running_services
    from tests.integration.conftest import Shop

    shop = Shop(services)
    customer_id, method_id = shop.customer()
    paid = shop.paid_order(customer_id, method_id)
    unpaid = shop.ledger.place_order(
        tenant_id="acme",
        customer_id=customer_id,
        currency="USD",
        lines=[{"sku": "SKU-2", "quantity": 1, "unit_price_minor": 100}],
    )
    dispatcher = services.runners["paid_order_dispatch"]
    assert services.waiter.wait(dispatcher.view, unpaid.position, timeout_s=10)

    # At-least-once: the same job delivered again must not write a second confirmation.
    services.jobs.send_order_confirmation.send(paid.body["id"])
    worker = services.start_worker(threads=2)
    services.broker.join(NOTIFICATIONS_QUEUE, timeout=20_000)
    worker.join()

    sent = services.notifications.for_order("acme", UUID(paid.body["id"]))
    assert len(sent) == 1
    assert sent[0]["kind"] == "order_confirmation"
    assert sent[0]["recipient"] == "buyer@example.com"
    assert services.notifications.for_order("acme", UUID(unpaid.body["id"])) == []
