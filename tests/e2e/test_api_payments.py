"""Payments over HTTP: never charged twice, never lost; the processor's books agree with ours."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from adapters.bootstrap import Services
from adapters.gateways.sandbox import SandboxGateway
from application.ports import GatewayOutcome
from tests.e2e.conftest import GENERIC_DECLINE_CARD, Merchant, assert_error, position


class HeldGateway:
    """The configured sandbox, with a hook run before each call reaches it (a slow or dead
    network), as the outside world we cannot reach would behave."""

    def __init__(self, inner: SandboxGateway) -> None:
        self.inner = inner
        self.name = inner.name
        self.book = inner.book
        self.before: Any = None
        self.after: Any = None
        self.calls = 0

    def _call(self, method: str, request: dict[str, Any]) -> GatewayOutcome:
        self.calls += 1
        before, after = self.before, self.after
        self.before = self.after = None
        if before:
            before()
        outcome: GatewayOutcome = getattr(self.inner, method)(**request)
        if after:
            after()
        return outcome

    def purchase(self, **request: Any) -> GatewayOutcome:
        return self._call("purchase", request)

    def refund(self, **request: Any) -> GatewayOutcome:
        return self._call("refund", request)


@pytest.fixture
def gateway(running_services: Services) -> HeldGateway:
    held = HeldGateway(running_services.ledger.gateway)  # type: ignore[arg-type]
    running_services.ledger.gateway = held  # type: ignore[assignment]
    return held


def timeout() -> None:
    raise TimeoutError("no answer from the processor")


def sandbox_net(merchant: Merchant) -> dict[str, int]:
    """Charges minus refunds per order, from the processor's own books (over HTTP)."""
    net: dict[str, int] = {}
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = merchant.get("/v1/sandbox/transactions", params=params)
        assert page.status_code == 200, page.text
        for txn in page.json()["data"]:
            if txn["status"] == "succeeded" and txn["kind"] in ("charge", "capture", "refund"):
                sign = -1 if txn["kind"] == "refund" else 1
                net[txn["reference"]] = net.get(txn["reference"], 0) + sign * txn["amount_minor"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return net


def test_two_concurrent_requests_with_one_key_charge_once(
    acme: Merchant, gateway: HeldGateway
) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    headers = {"Idempotency-Key": "order-1"}
    second: list[Any] = []
    released = threading.Event()

    def duplicate_while_the_first_is_at_the_gateway() -> None:
        thread = threading.Thread(
            target=lambda: second.append(
                acme.place_order(customer["id"], method["id"], headers=headers)
            )
        )
        thread.start()
        thread.join(10)
        released.set()

    gateway.before = duplicate_while_the_first_is_at_the_gateway
    first = acme.place_order(customer["id"], method["id"], headers=headers)

    assert released.is_set()
    assert first.status_code == 201, first.text
    assert_error(second[0], 409, "idempotency_key_in_progress")
    assert gateway.calls == 1
    assert sandbox_net(acme) == {first.json()["id"]: 2500}
    replay = acme.place_order(customer["id"], method["id"], headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


def test_a_gateway_timeout_is_a_502_and_a_retry_with_the_key_learns_the_outcome(
    acme: Merchant, gateway: HeldGateway
) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    headers = {"Idempotency-Key": "order-timeout"}
    gateway.after = timeout  # charged, but the answer was lost

    lost = acme.place_order(customer["id"], method["id"], headers=headers)
    retry = acme.place_order(customer["id"], method["id"], headers=headers)

    assert_error(lost, 502, "gateway_outcome_unknown")
    assert retry.status_code == 201 and retry.json()["status"] == "paid"
    assert sandbox_net(acme) == {retry.json()["id"]: 2500}
    read = acme.get(f"/v1/orders/{retry.json()['id']}", params={"min_position": position(retry)})
    assert read.json() == retry.json()


def test_an_unknown_outcome_reads_back_as_processing_with_an_unknown_payment(
    acme: Merchant, gateway: HeldGateway, running_services: Services
) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    gateway.before = timeout

    lost = acme.place_order(customer["id"], method["id"])
    assert_error(lost, 502, "gateway_outcome_unknown")

    head = running_services.ledger.recorder.max_notification_id()
    orders = acme.get(
        "/v1/orders", params={"customer_id": customer["id"], "min_position": head}
    ).json()["data"]
    assert orders[0]["status"] == "processing"
    payment = orders[0]["payment"]
    assert (payment["outcome"], payment["decline_code"], payment["attempts"]) == (
        "unknown",
        None,
        1,
    )
    assert [h["outcome"] for h in payment["history"]] == ["unknown"]
    assert sandbox_net(acme) == {}
    cancel = acme.post(f"/v1/orders/{orders[0]['id']}/cancel")
    assert_error(cancel, 409, "payment_in_progress")

    # The 502 named a key: sending the request again with it finishes the payment.
    retry = acme.place_order(
        customer["id"], method["id"], headers={"Idempotency-Key": lost.headers["Idempotency-Key"]}
    )
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == orders[0]["id"] and retry.json()["status"] == "paid"
    assert sandbox_net(acme) == {retry.json()["id"]: 2500}


def test_refunds_reach_the_processor_and_the_books_agree_per_order(acme: Merchant) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    first = acme.paid_order(customer["id"], method["id"], unit_price_minor=4000)
    second = acme.paid_order(customer["id"], method["id"], unit_price_minor=1500)
    declined_method = acme.card(customer["id"], GENERIC_DECLINE_CARD)
    declined = acme.place_order(customer["id"], declined_method["id"])

    partial = acme.post(f"/v1/orders/{first['id']}/refunds", {"amount_minor": 1000})
    full = acme.post(f"/v1/orders/{second['id']}/refunds", {"amount_minor": 1500})
    too_much = acme.post(f"/v1/orders/{first['id']}/refunds", {"amount_minor": 3001})

    assert partial.status_code == 201 and full.status_code == 201
    assert_error(too_much, 409, "refund_exceeds_captured")
    assert declined.json()["status"] == "declined"
    ours = {
        order["id"]: order["captured_minor"] - order["refunded_minor"]
        for order in (partial.json(), full.json(), declined.json())
    }
    assert sandbox_net(acme) == {k: v for k, v in ours.items() if v} | {second["id"]: 0}


def test_the_processor_books_are_for_admins_of_their_own_tenant(
    acme: Merchant, globex: Merchant, key_of, client
) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    acme.paid_order(customer["id"], method["id"])

    assert sandbox_net(globex) == {}
    agent = Merchant(client, key_of("acme", "agent"))
    assert_error(agent.get("/v1/sandbox/transactions"), 403, "permission_denied")
    bad_cursor = acme.get("/v1/sandbox/transactions", params={"cursor": "abc"})
    assert bad_cursor.status_code == 400, bad_cursor.text


def read_back(merchant: Merchant, response: Any) -> dict[str, Any]:
    order_id = response.json()["id"]
    read = merchant.get(f"/v1/orders/{order_id}", params={"min_position": position(response)})
    assert read.status_code == 200, read.text
    return read.json()  # type: ignore[no-any-return]


def test_every_status_path_reads_back_as_the_command_answered(acme: Merchant) -> None:
    customer = acme.customer()
    good = acme.card(customer["id"])
    bad = acme.card(customer["id"], GENERIC_DECLINE_CARD)
    statuses = []

    def command(response: Any) -> Any:
        """The command's answer, read back from the read model at once: the same body."""
        assert response.status_code in (200, 201), response.text
        assert read_back(acme, response) == response.json()
        statuses.append(response.json()["status"])
        return response.json()

    pending = command(acme.place_order(customer["id"]))
    command(acme.post(f"/v1/orders/{pending['id']}/cancel"))
    paid = command(acme.place_order(customer["id"], good["id"]))
    command(acme.post(f"/v1/orders/{paid['id']}/refunds", {"amount_minor": 100}))
    command(acme.post(f"/v1/orders/{paid['id']}/refunds", {"amount_minor": 2400}))
    declined = command(acme.place_order(customer["id"], bad["id"]))
    cancelled = command(acme.post(f"/v1/orders/{declined['id']}/cancel"))

    assert statuses == [
        "pending",
        "cancelled",
        "paid",
        "partially_refunded",
        "refunded",
        "declined",
        "cancelled",
    ]
    assert cancelled["payment"]["outcome"] == "declined"


def test_authorize_then_capture_or_void_over_http_reads_back_as_answered(acme: Merchant) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    body = {
        "customer_id": customer["id"],
        "currency": "USD",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 5000}],
        "payment": {"payment_method_id": card["id"], "mode": "authorize"},
    }
    first = acme.post("/v1/orders", body)
    second = acme.post("/v1/orders", body)
    assert first.json()["status"] == second.json()["status"] == "authorized"
    assert read_back(acme, first) == first.json()

    too_much = acme.post(f"/v1/orders/{first.json()['id']}/capture", {"amount_minor": 5001})
    captured = acme.post(f"/v1/orders/{first.json()['id']}/capture", {"amount_minor": 4000})
    again = acme.post(f"/v1/orders/{first.json()['id']}/capture")
    voided = acme.post(f"/v1/orders/{second.json()['id']}/void")
    void_again = acme.post(f"/v1/orders/{second.json()['id']}/void")

    assert_error(too_much, 409, "capture_exceeds_authorization")
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "paid" and captured.json()["captured_minor"] == 4000
    assert read_back(acme, captured) == captured.json()
    assert_error(again, 409, "order_not_capturable")
    assert voided.json()["status"] == "voided"
    assert read_back(acme, voided) == voided.json()
    assert_error(void_again, 409, "order_not_voidable")
    assert sandbox_net(acme) == {first.json()["id"]: 4000}


def test_a_tenant_without_gateways_keeps_to_the_card_schemes_retry_limit(
    client, key_of, gateway: HeldGateway
) -> None:
    """Issue 7: the default sandbox counts attempts per card like routed payments do. A
    Mastercard (10 attempts in 30 days) declined 10 times is not sent an 11th time."""
    sandbox = gateway.inner

    class DecliningIssuer:
        """The sandbox, with an issuer that declines every card (it books the declines)."""

        def purchase(self, **request: Any) -> GatewayOutcome:
            token = "tok_sandbox_generic_decline_" + request["token"].rsplit("_", 1)[-1]
            return sandbox.purchase(**{**request, "token": token})

    gateway.inner = DecliningIssuer()  # type: ignore[assignment]
    declining = Merchant(client, key_of("mc-retries", "admin"))
    customer = declining.customer()
    method = declining.card(customer["id"], "5555555555554444")
    assert method["brand"] == "mastercard"
    for _ in range(10):
        declined = declining.place_order(customer["id"], method["id"])
        assert declined.status_code == 201, declined.text
        assert declined.json()["status"] == "declined"
    calls = gateway.calls

    eleventh = declining.place_order(customer["id"], method["id"])

    assert_error(eleventh, 409, "card_attempt_limit_reached")
    assert gateway.calls == calls  # never sent to the processor
    charges: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = declining.get("/v1/sandbox/transactions", params=params)
        assert page.status_code == 200, page.text
        charges += [txn for txn in page.json()["data"] if txn["kind"] == "charge"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(charges) == 10
    assert {txn["status"] for txn in charges} == {"declined"}
    # Another customer's card is counted on its own.
    other = declining.customer()
    fresh = declining.card(other["id"], "5555555555554444")
    assert declining.place_order(other["id"], fresh["id"]).json()["status"] == "declined"
