"""Idempotency-Key: a retried command is answered from its first run; a reused key is a 409."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e


def test_a_retried_order_is_replayed_and_placed_once(acme: Merchant) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    key = {"Idempotency-Key": "order-0001"}

    first = acme.place_order(customer["id"], card["id"], headers=key)
    retry = acme.place_order(customer["id"], card["id"], headers=key)

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert position(retry) >= position(first)
    listed = acme.get("/v1/orders", params={"min_position": position(retry)}).json()
    assert [order["id"] for order in listed["data"]] == [first.json()["id"]]


def test_the_same_key_with_a_different_body_is_a_conflict(acme: Merchant) -> None:
    customer = acme.customer()
    key = {"Idempotency-Key": "order-0002"}
    first = acme.place_order(customer["id"], unit_price_minor=100, headers=key)

    conflict = acme.place_order(customer["id"], unit_price_minor=200, headers=key)

    assert first.status_code == 201
    error = assert_error(conflict, 409, "idempotency_key_reused")
    assert error["type"] == "idempotency_error"
    assert error["param"] == "Idempotency-Key"


def test_keys_are_scoped_to_a_command_and_a_tenant(acme: Merchant, globex: Merchant) -> None:
    key = {"Idempotency-Key": "shared-key"}
    body = {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"}
    acme_customer = acme.post("/v1/customers", body, headers=key)

    globex_customer = globex.post("/v1/customers", body, headers=key)
    other_command = acme.place_order(acme_customer.json()["id"], headers=key)

    assert globex_customer.status_code == 201
    assert "Idempotent-Replayed" not in globex_customer.headers
    assert globex_customer.json()["id"] != acme_customer.json()["id"]
    assert_error(other_command, 409, "idempotency_key_reused")


def test_every_command_replays_under_its_key(acme: Merchant) -> None:
    customer = acme.customer()
    card_body = {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2031}
    card_path = f"/v1/customers/{customer['id']}/payment-methods"
    card = acme.post(card_path, card_body, headers={"Idempotency-Key": "card-1"})
    order = acme.paid_order(customer["id"], card.json()["id"])
    pending = acme.place_order(customer["id"]).json()

    for path, body, key in (
        (card_path, card_body, "card-1"),
        (f"/v1/orders/{order['id']}/refunds", {"amount_minor": 100}, "refund-1"),
        (f"/v1/orders/{pending['id']}/cancel", None, "cancel-1"),
    ):
        first = acme.post(path, body, headers={"Idempotency-Key": key})
        retry = acme.post(path, body, headers={"Idempotency-Key": key})
        assert first.status_code == retry.status_code
        assert first.status_code in (200, 201), first.text
        assert retry.json() == first.json()
        assert retry.headers["Idempotent-Replayed"] == "true"

    refunded = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(retry)})
    assert refunded.json()["refunded_minor"] == 100


def test_an_invalid_key_is_a_bad_request(acme: Merchant) -> None:
    response = acme.place_order(acme.customer()["id"], headers={"Idempotency-Key": "k" * 256})

    error = assert_error(response, 400, "invalid_idempotency_key")
    assert error["param"] == "Idempotency-Key"
