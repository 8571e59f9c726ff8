"""``?min_position=``: reads wait for their own writes without holding a worker thread."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from adapters.bootstrap import bootstrap
from api.app import create_app
from tests.e2e.conftest import assert_error, auth, position

pytestmark = pytest.mark.e2e

WAITING_READS = 200


def test_a_read_waits_for_its_own_write(acme):
    customer = acme.post(
        "/v1/customers", {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"}
    )
    response = acme.get(
        f"/v1/customers/{customer.json()['id']}", params={"min_position": position(customer)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "a@example.com"


def test_a_position_beyond_the_log_head_is_refused_at_once(acme):
    customer = acme.customer()
    started = time.monotonic()
    response = acme.get("/v1/orders", params={"min_position": 10**12})
    error = assert_error(response, 422, "position_not_reached")
    assert error["param"] == "min_position"
    assert time.monotonic() - started < 1.0  # not after the wait's timeout
    response = acme.get(f"/v1/customers/{customer['id']}", params={"min_position": 10**12})
    assert_error(response, 422, "position_not_reached")


def test_two_hundred_waiting_reads_do_not_delay_a_command(test_settings):
    services = bootstrap(test_settings.model_copy(update={"read_wait_timeout_s": 15.0}))
    try:
        services.start_listener()
        services.listener.connected.wait(5)
        key = services.access.create_key("acme", "admin")
        # Recorded but not yet applied (no runner runs): reads for it wait.
        customer = services.ledger.register_customer(
            tenant_id="acme", email="w@example.com", name="W", country="US", currency="USD"
        )
        path = f"/v1/customers/{customer.body['id']}"
        asyncio.run(_waiting_reads_and_a_command(services, key, path, customer.position))
    finally:
        services.close()


async def _waiting_reads_and_a_command(services, key: str, path: str, min_position: int) -> None:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ledger", headers=auth(key), timeout=30
    ) as client:
        reads = [
            asyncio.ensure_future(client.get(path, params={"min_position": min_position}))
            for _ in range(WAITING_READS)
        ]
        deadline = time.monotonic() + 20
        while services.waiter.waiting < WAITING_READS:  # every read is parked in its wait
            assert time.monotonic() < deadline, services.waiter.waiting
            await asyncio.sleep(0.01)

        started = time.monotonic()
        command = await client.post(
            "/v1/customers",
            json={"email": "c@example.com", "name": "C", "country": "US", "currency": "USD"},
        )
        elapsed_s = time.monotonic() - started
        assert command.status_code == 201, command.text
        assert elapsed_s < 1.0, elapsed_s
        assert services.waiter.waiting == WAITING_READS  # they were waiting all along

        services.start_runners()
        responses = await asyncio.gather(*reads)
    assert [r.status_code for r in responses] == [200] * WAITING_READS
    assert responses[0].json()["email"] == "w@example.com"
