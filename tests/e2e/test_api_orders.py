"""Customers, cards, orders, refunds and lists through the HTTP API, reading our own writes."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    GENERIC_DECLINE_CARD,
    INSUFFICIENT_FUNDS_CARD,
    Merchant,
    assert_error,
    position,
)

pytestmark = pytest.mark.e2e


def test_a_paid_order_refunded_in_two_steps_is_read_back_consistently(acme: Merchant) -> None:
    customer = acme.customer()
    assert customer["currency"] == "USD" and customer["email"] == "buyer@example.com"
    card = acme.card(customer["id"])
    assert card["brand"] == "visa" and card["last4"] == "4242" and card["bin"] == "424242"
    assert set(card) == {"id", "brand", "last4", "bin", "exp_month", "exp_year"}

    placed = acme.place_order(customer["id"], card["id"], unit_price_minor=1250, quantity=2)
    assert placed.status_code == 201
    order = placed.json()
    assert order["status"] == "paid"
    assert order["total_minor"] == order["captured_minor"] == 2500
    payment = order["payment"]
    assert (payment["outcome"], payment["decline_code"], payment["attempts"]) == (
        "succeeded",
        None,
        1,
    )
    assert [(h["gateway_id"], h["kind"], h["outcome"]) for h in payment["history"]] == [
        ("sandbox", "purchase", "succeeded")
    ]
    assert order["lines"] == [
        {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250, "amount_minor": 2500}
    ]

    read = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(placed)})
    assert read.status_code == 200
    assert read.json() == order

    partial = acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 1000})
    assert partial.status_code == 201
    assert partial.json()["status"] == "partially_refunded"
    assert partial.json()["refunded_minor"] == 1000
    full = acme.post(
        f"/v1/orders/{order['id']}/refunds", {"amount_minor": 1500, "reason": "damaged"}
    )
    assert full.status_code == 201
    assert full.json()["status"] == "refunded"
    assert position(full) > position(partial) > position(placed)

    read = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(full)})
    assert read.json() == full.json()
    assert read.json()["refunded_minor"] == 2500


def test_customer_lifetime_value_counts_paid_orders_net_of_refunds(acme: Merchant) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    acme.paid_order(customer["id"], card["id"], unit_price_minor=3000)
    second = acme.paid_order(customer["id"], card["id"], unit_price_minor=1000)
    declined_card = acme.card(customer["id"], GENERIC_DECLINE_CARD)
    assert acme.place_order(customer["id"], declined_card["id"]).json()["status"] == "declined"
    refund = acme.post(f"/v1/orders/{second['id']}/refunds", {"amount_minor": 500})

    read = acme.get(f"/v1/customers/{customer['id']}", params={"min_position": position(refund)})

    assert read.status_code == 200
    summary = read.json()
    assert summary["id"] == customer["id"]
    assert summary["created_at"] == customer["created_at"]
    assert summary["payment_methods"] == 2
    assert summary["order_count"] == 2
    assert summary["lifetime_value_minor"] == 3000 + 1000 - 500
    assert summary["average_order_value_minor"] == 3500 // 2
    assert summary["value_by_currency"] == {"USD": {"net_minor": 3500, "orders": 2}}
    assert summary["first_order_at"] is not None
    assert summary["first_order_at"] <= summary["last_order_at"]


@pytest.mark.parametrize(
    ("card_number", "decline_code"),
    [(GENERIC_DECLINE_CARD, "generic_decline"), (INSUFFICIENT_FUNDS_CARD, "insufficient_funds")],
)
def test_a_declined_card_records_a_declined_order(
    acme: Merchant, card_number: str, decline_code: str
) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"], card_number)

    placed = acme.place_order(customer["id"], card["id"])

    assert placed.status_code == 201
    order = placed.json()
    assert order["status"] == "declined"
    assert order["captured_minor"] == 0
    payment = order["payment"]
    assert (payment["outcome"], payment["decline_code"], payment["attempts"]) == (
        "declined",
        decline_code,
        1,
    )
    assert [(h["outcome"], h["decline_code"]) for h in payment["history"]] == [
        ("declined", decline_code)
    ]
    read = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(placed)})
    assert read.json() == order


def test_an_unpaid_order_can_be_cancelled_but_a_paid_one_cannot(acme: Merchant) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    unpaid = acme.place_order(customer["id"]).json()
    assert unpaid["status"] == "pending" and unpaid["payment"] is None

    cancelled = acme.post(f"/v1/orders/{unpaid['id']}/cancel")
    with_reason = acme.post(f"/v1/orders/{unpaid['id']}/cancel", {"reason": "again"})

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert_error(with_reason, 409, "order_not_cancellable")
    paid = acme.paid_order(customer["id"], card["id"])
    error = assert_error(acme.post(f"/v1/orders/{paid['id']}/cancel"), 409, "order_not_cancellable")
    assert error["type"] == "invalid_request_error"


def test_refunding_more_than_was_captured_is_a_conflict(acme: Merchant) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    order = acme.paid_order(customer["id"], card["id"], unit_price_minor=2500)

    response = acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 2501})

    error = assert_error(response, 409, "refund_exceeds_captured")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "amount_minor"


def test_orders_are_listed_newest_first_across_pages_and_filtered(acme: Merchant) -> None:
    first, second = acme.customer(), acme.customer(email="other@example.com")
    card = acme.card(first["id"])
    paid = [acme.paid_order(first["id"], card["id"], unit_price_minor=100 * n) for n in (1, 2, 3)]
    pending = acme.place_order(second["id"])
    fence = {"min_position": position(pending)}

    page_one = acme.get("/v1/orders", params={"limit": 2, **fence}).json()
    page_two = acme.get("/v1/orders", params={"limit": 2, "cursor": page_one["next_cursor"]})

    assert page_two.status_code == 200
    assert page_one["next_cursor"] is not None
    assert page_two.json()["next_cursor"] is None
    listed = [order["id"] for order in page_one["data"] + page_two.json()["data"]]
    assert listed == [pending.json()["id"]] + [order["id"] for order in reversed(paid)]
    assert page_one["data"][1] == paid[2]

    by_customer = acme.get("/v1/orders", params={"customer_id": first["id"], **fence}).json()
    assert [order["id"] for order in by_customer["data"]] == [o["id"] for o in reversed(paid)]
    assert by_customer["next_cursor"] is None
    by_status = acme.get("/v1/orders", params={"status": "pending", **fence}).json()
    assert [order["id"] for order in by_status["data"]] == [pending.json()["id"]]
    exact_page = acme.get("/v1/orders", params={"limit": 4, **fence}).json()
    assert len(exact_page["data"]) == 4 and exact_page["next_cursor"] is None


def test_list_parameters_are_validated(acme: Merchant) -> None:
    assert_error(acme.get("/v1/orders", params={"cursor": "not-a-cursor"}), 400, "invalid_cursor")
    assert_error(acme.get("/v1/orders", params={"cursor": "WzEsMl0"}), 400, "invalid_cursor")
    error = assert_error(acme.get("/v1/orders", params={"status": "lost"}), 422, "validation_error")
    assert error["param"] == "status"
    for limit in (0, 101, "ten"):
        error = assert_error(
            acme.get("/v1/orders", params={"limit": limit}), 422, "validation_error"
        )
        assert error["param"] == "limit"


def test_a_read_model_that_cannot_catch_up_in_time_answers_504(acme: Merchant, running_services):
    running_services.settings.read_wait_timeout_s = 0.05
    running_services.runners["order_summaries"].stop()
    # A position the log has (a position beyond its head is a 422) but the stopped runner lacks.
    recorded = acme.post(
        "/v1/customers",
        {"email": "late@example.com", "name": "Late", "country": "US", "currency": "USD"},
    )

    response = acme.get("/v1/orders", params={"min_position": position(recorded)})

    error = assert_error(response, 504, "read_model_behind")
    assert error["type"] == "timeout_error"
