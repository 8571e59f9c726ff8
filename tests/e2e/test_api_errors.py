"""Bad input, bad keys and bad luck all answer in the one error shape, never with a trace."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Merchant, assert_error, auth, position

pytestmark = pytest.mark.e2e

ORDER_PATHS = ("/v1/orders/{}", "/v1/orders/{}/refunds", "/v1/orders/{}/cancel")


@pytest.fixture
def customer_id(acme: Merchant) -> str:
    return acme.customer()["id"]


def order_body(customer_id: str, **line: object) -> dict[str, object]:
    return {
        "customer_id": customer_id,
        "currency": "USD",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100, **line}],
    }


def test_malformed_json_is_a_bad_request(acme: Merchant) -> None:
    response = acme.post(
        "/v1/customers", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )

    error = assert_error(response, 400, "invalid_json")
    assert error["type"] == "invalid_request_error"


def test_a_body_must_be_a_json_object(acme: Merchant) -> None:
    form = acme.post("/v1/customers", content=b"email=a", headers={"Content-Type": "text/plain"})
    array = acme.post("/v1/customers", [{"email": "a@example.com"}])

    assert_error(form, 415, "unsupported_media_type")
    assert_error(array, 422, "validation_error")


@pytest.mark.parametrize(
    ("line", "param"),
    [
        ({"quantity": "12"}, "lines.0.quantity"),
        ({"quantity": 1.5}, "lines.0.quantity"),
        ({"quantity": True}, "lines.0.quantity"),
        ({"unit_price_minor": "100"}, "lines.0.unit_price_minor"),
        ({"unit_price_minor": 12.5}, "lines.0.unit_price_minor"),
        ({"sku": 7}, "lines.0.sku"),
    ],
)
def test_wrong_types_are_rejected_with_the_field_named(
    acme: Merchant, customer_id: str, line: dict, param: str
) -> None:
    error = assert_error(
        acme.post("/v1/orders", order_body(customer_id, **line)), 422, "validation_error"
    )

    assert error["param"] == param


def test_unknown_and_missing_fields_are_named(acme: Merchant, customer_id: str) -> None:
    unknown = acme.post("/v1/orders", {**order_body(customer_id), "discount": 5})
    unknown_in_line = acme.post("/v1/orders", order_body(customer_id, colour="red"))
    missing = acme.post("/v1/customers", {"email": "a@example.com", "name": "A", "country": "US"})
    no_body = acme.post("/v1/customers")

    assert assert_error(unknown, 422, "parameter_unknown")["param"] == "discount"
    assert assert_error(unknown_in_line, 422, "parameter_unknown")["param"] == "lines.0.colour"
    assert assert_error(missing, 422, "parameter_missing")["param"] == "currency"
    assert assert_error(no_body, 422, "parameter_missing")["param"] is None


@pytest.mark.parametrize("amount_minor", [-1, 10**15 + 1])
def test_amounts_out_of_bounds_are_invalid_amounts(
    acme: Merchant, customer_id: str, amount_minor: int
) -> None:
    order = acme.post("/v1/orders", order_body(customer_id, unit_price_minor=amount_minor))
    refund = acme.post(f"/v1/orders/{uuid.uuid4()}/refunds", {"amount_minor": amount_minor})

    assert assert_error(order, 422, "invalid_amount")["param"] == "lines.0.unit_price_minor"
    assert assert_error(refund, 422, "invalid_amount")["param"] == "amount_minor"


def test_a_total_above_the_maximum_is_an_invalid_amount(acme: Merchant, customer_id: str) -> None:
    body = order_body(customer_id, unit_price_minor=10**15, quantity=2)

    assert_error(acme.post("/v1/orders", body), 422, "invalid_amount")


def test_unknown_currency_and_country_are_named(acme: Merchant, customer_id: str) -> None:
    customer = {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"}

    currency = acme.post("/v1/customers", {**customer, "currency": "XYZ"})
    country = acme.post("/v1/customers", {**customer, "country": "ZZ"})
    order_currency = acme.post("/v1/orders", {**order_body(customer_id), "currency": "XYZ"})
    email = acme.post("/v1/customers", {**customer, "email": "nobody"})

    assert assert_error(currency, 422, "unknown_currency")["param"] == "currency"
    assert assert_error(country, 422, "unknown_country")["param"] == "country"
    assert assert_error(order_currency, 422, "unknown_currency")["param"] == "currency"
    assert assert_error(email, 422, "invalid_email")["param"] == "email"


def test_invalid_cards_and_payment_methods_are_named(acme: Merchant, customer_id: str) -> None:
    path = f"/v1/customers/{customer_id}/payment-methods"
    card = {"card_number": "4242424242424241", "exp_month": 12, "exp_year": 2031}

    bad_luhn = acme.post(path, card)
    bad_month = acme.post(path, {**card, "card_number": "4242424242424242", "exp_month": "12"})
    no_such_method = acme.post(
        "/v1/orders",
        {**order_body(customer_id), "payment": {"payment_method_id": str(uuid.uuid4())}},
    )
    bad_mode = acme.post(
        "/v1/orders",
        {
            **order_body(customer_id),
            "payment": {"payment_method_id": str(uuid.uuid4()), "mode": "x"},
        },
    )

    assert assert_error(bad_luhn, 422, "invalid_card")["param"] == "card_number"
    assert assert_error(bad_month, 422, "validation_error")["param"] == "exp_month"
    assert assert_error(no_such_method, 404, "payment_method_not_found")["param"] == (
        "payment_method_id"
    )
    assert assert_error(bad_mode, 422, "validation_error")["param"] == "payment.mode"


def test_unknown_and_malformed_ids_are_not_found(acme: Merchant) -> None:
    unknown = uuid.uuid4()

    assert_error(acme.get(f"/v1/orders/{unknown}"), 404, "order_not_found")
    assert_error(acme.get(f"/v1/customers/{unknown}"), 404, "customer_not_found")
    assert_error(
        acme.post(f"/v1/orders/{unknown}/refunds", {"amount_minor": 1}), 404, "order_not_found"
    )
    assert_error(acme.post(f"/v1/orders/{unknown}/cancel"), 404, "order_not_found")
    assert_error(acme.post("/v1/orders", order_body(str(unknown))), 404, "customer_not_found")
    assert_error(acme.get("/v1/orders/not-a-uuid"), 404, "order_not_found")
    assert_error(acme.get("/v1/customers/123"), 404, "customer_not_found")
    assert_error(acme.post("/v1/orders/x/refunds", {"amount_minor": 1}), 404, "order_not_found")
    assert_error(acme.get("/v1/nothing-here"), 404, "not_found")
    assert_error(acme.client.delete("/v1/orders"), 405, "method_not_allowed")


def test_a_body_above_one_mebibyte_is_too_large(acme: Merchant) -> None:
    response = acme.post(
        "/v1/customers",
        content=b'{"name": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 413, "request_too_large")


def test_requests_without_a_valid_key_are_unauthenticated(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, auth("")):
        error = assert_error(client.get("/v1/orders", headers=headers), 401, "unauthenticated")
        assert error["type"] == "authentication_error"
    response = client.post("/v1/customers", json={}, headers=auth("lk_not-a-key"))
    error = assert_error(response, 401, "invalid_api_key")
    assert error["type"] == "authentication_error"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("role", ["readonly", "auditor"])
def test_read_only_roles_can_read_but_not_write(
    acme: Merchant, customer_id: str, key_of, role: str
) -> None:
    reader = Merchant(acme.client, key_of("acme", role))
    placed = acme.place_order(customer_id)
    order = placed.json()

    for path, body in (
        (
            "/v1/customers",
            {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"},
        ),
        ("/v1/orders", order_body(customer_id)),
        (f"/v1/orders/{order['id']}/cancel", None),
        (f"/v1/orders/{order['id']}/refunds", {"amount_minor": 1}),
        (
            f"/v1/customers/{customer_id}/payment-methods",
            {"card_number": "4242424242424242", "exp_month": 1, "exp_year": 2031},
        ),
    ):
        error = assert_error(reader.post(path, body), 403, "permission_denied")
        assert error["type"] == "permission_error"
    fence = {"min_position": position(placed)}
    assert reader.get(f"/v1/orders/{order['id']}", params=fence).json() == order
    assert reader.get("/v1/orders", params=fence).json()["data"] == [order]
    assert reader.get(f"/v1/customers/{customer_id}", params=fence).status_code == 200


def test_an_unexpected_failure_is_a_generic_500_that_is_logged(
    running_services, client: TestClient, key_of, monkeypatch, caplog
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(running_services.orders, "list", broken)
    reader = Merchant(TestClient(client.app, raise_server_exceptions=False), key_of("acme"))

    response = reader.get("/v1/orders")

    error = assert_error(response, 500, "internal_error")
    assert error["type"] == "api_error"
    assert "fell over" not in response.text
    assert "the database fell over" in caplog.text
