"""A key sees only its own tenant; only platform keys manage tenants."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e


def test_another_tenants_customers_and_orders_do_not_exist(
    acme: Merchant, globex: Merchant
) -> None:
    customer = acme.customer()
    card = acme.card(customer["id"])
    paid = acme.place_order(customer["id"], card["id"])
    pending = acme.place_order(customer["id"])
    fence = {"min_position": position(pending)}
    globex_customer = globex.customer()
    globex_order = globex.place_order(globex_customer["id"])
    order_id, pending_id = paid.json()["id"], pending.json()["id"]

    card_body = {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2031}
    for response, code in (
        (globex.get(f"/v1/customers/{customer['id']}", params=fence), "customer_not_found"),
        (
            globex.post(f"/v1/customers/{customer['id']}/payment-methods", card_body),
            "customer_not_found",
        ),
        (globex.place_order(customer["id"]), "customer_not_found"),
        (globex.get(f"/v1/orders/{order_id}", params=fence), "order_not_found"),
        (globex.post(f"/v1/orders/{order_id}/refunds", {"amount_minor": 1}), "order_not_found"),
        (globex.post(f"/v1/orders/{pending_id}/cancel"), "order_not_found"),
    ):
        assert_error(response, 404, code)
    # A card of tenant A cannot pay for tenant B's customer either.
    stolen_card = globex.place_order(globex_customer["id"], card["id"])
    assert_error(stolen_card, 404, "payment_method_not_found")

    globex_list = globex.get("/v1/orders", params={"min_position": position(globex_order)})
    assert [order["id"] for order in globex_list.json()["data"]] == [globex_order.json()["id"]]
    filtered = globex.get("/v1/orders", params={"customer_id": customer["id"], **fence})
    assert filtered.json()["data"] == []
    # Nothing changed for tenant A.
    assert acme.get(f"/v1/orders/{order_id}", params=fence).json() == paid.json()
    assert acme.get(f"/v1/orders/{pending_id}").json()["status"] == "pending"


def test_a_platform_key_creates_tenants_and_nothing_else(client, key_of) -> None:
    platform = Merchant(client, key_of("platform", "platform"))

    created = platform.post("/v1/tenants", {"id": "initech", "name": "Initech"})
    again = platform.post("/v1/tenants", {"id": "initech"})
    invalid = platform.post("/v1/tenants", {"id": "Not A Tenant!"})

    assert created.status_code == 201
    assert created.json() == {"id": "initech", "name": "Initech"}
    assert_error(again, 409, "tenant_exists")
    assert assert_error(invalid, 422, "invalid_tenant_id")["param"] == "id"
    for response in (
        platform.get("/v1/orders"),
        platform.post("/v1/orders", {}),
        platform.post("/v1/customers", {}),
    ):
        assert assert_error(response, 403, "permission_denied")["type"] == "permission_error"


def test_a_tenant_key_cannot_create_tenants(acme: Merchant) -> None:
    response = acme.post("/v1/tenants", {"id": "initech"})

    assert assert_error(response, 403, "permission_denied")["type"] == "permission_error"
