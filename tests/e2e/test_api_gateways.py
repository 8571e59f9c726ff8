"""Gateways over HTTP: merchant accounts, routed purchases, cascades on soft declines only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import GOOD_CARD, Merchant, assert_error

pytestmark = pytest.mark.e2e

LOST_CARD = "4000000000009987"


def gateway_body(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "processor": "sandbox",
        "currencies": ["USD"],
        "card_brands": ["visa", "mastercard"],
        "monthly_cap_minor": 10_000_000,
        **fields,
    }


def register(merchant: Merchant, name: str, **fields: Any) -> dict[str, Any]:
    response = merchant.post("/v1/gateways", gateway_body(name, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def buyer(merchant: Merchant, card: str = GOOD_CARD) -> tuple[str, str]:
    customer = merchant.customer()
    return customer["id"], merchant.card(customer["id"], card)["id"]


def test_the_first_gateway_soft_declines_and_the_second_charges(acme: Merchant) -> None:
    declining = register(
        acme, "eu-acquirer", weight=100, processor_account="eu+decline_insufficient_funds"
    )
    backup = register(acme, "us-acquirer", weight=0)
    customer_id, method_id = buyer(acme)

    response = acme.place_order(customer_id, method_id)

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "paid"
    assert order["payment"]["attempts"] == 2
    assert [
        (h["gateway_id"], h["kind"], h["amount_minor"], h["outcome"], h["decline_code"])
        for h in order["payment"]["history"]
    ] == [
        (declining["id"], "purchase", 2500, "declined", "insufficient_funds"),
        (backup["id"], "purchase", 2500, "succeeded", None),
    ]
    read = acme.get(
        f"/v1/orders/{order['id']}", params={"min_position": response.headers["X-Ledger-Position"]}
    )
    assert read.status_code == 200, read.text
    assert read.json()["payment"]["history"] == order["payment"]["history"]


def test_a_hard_decline_does_not_cascade(acme: Merchant) -> None:
    first = register(acme, "first", weight=100)
    register(acme, "second", weight=0)
    customer_id, method_id = buyer(acme, LOST_CARD)

    order = acme.place_order(customer_id, method_id).json()

    assert order["status"] == "declined"
    assert [(h["gateway_id"], h["decline_code"]) for h in order["payment"]["history"]] == [
        (first["id"], "lost_card")
    ]


def test_payments_go_only_to_gateways_accepting_their_currency(acme: Merchant) -> None:
    eur = register(acme, "eur", currencies=["EUR"], weight=100)
    usd = register(acme, "usd", weight=1)
    customer_id, method_id = buyer(acme)

    in_usd = acme.place_order(customer_id, method_id).json()
    in_eur = acme.place_order(customer_id, method_id, currency="EUR").json()
    response = acme.place_order(customer_id, method_id, currency="GBP")

    assert [h["gateway_id"] for h in in_usd["payment"]["history"]] == [usd["id"]]
    assert [h["gateway_id"] for h in in_eur["payment"]["history"]] == [eur["id"]]
    assert_error(response, 422, "no_eligible_gateway")


def test_a_tenant_without_gateways_keeps_the_default_sandbox(
    acme: Merchant, globex: Merchant
) -> None:
    register(acme, "acme only", processor_account="acme+decline_generic_decline")
    customer_id, method_id = buyer(globex)

    order = globex.paid_order(customer_id, method_id)

    assert [h["gateway_id"] for h in order["payment"]["history"]] == ["sandbox"]
    assert globex.get("/v1/gateways").json() == {"data": [], "next_cursor": None}


def test_gateways_are_registered_read_listed_patched_and_disabled(acme: Merchant) -> None:
    created = register(acme, "main", bin_ranges=[["400000", "499999"]], countries=["US"], weight=3)

    patched = acme.client.patch(
        f"/v1/gateways/{created['id']}",
        json={"weight": 9, "enabled": False, "countries": None},
        headers={"Authorization": f"Bearer {acme.key}"},
    )
    listed = acme.get("/v1/gateways").json()
    read = acme.get(f"/v1/gateways/{created['id']}").json()

    assert patched.status_code == 200, patched.text
    assert (read["weight"], read["enabled"], read["countries"], read["name"]) == (
        9,
        False,
        None,
        "main",
    )
    assert read["bin_ranges"] == [["400000", "499999"]]
    assert [g["id"] for g in listed["data"]] == [created["id"]]
    customer_id, method_id = buyer(acme)
    assert_error(acme.place_order(customer_id, method_id), 422, "no_eligible_gateway")


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"monthly_cap_minor": 10**20}, 422, "invalid_amount"),
        ({"monthly_cap_minor": 0}, 422, "invalid_amount"),
        ({"processor": "stripe"}, 422, "validation_error"),
        ({"currencies": ["XXY"]}, 422, "unknown_currency"),
        ({"bin_ranges": [["12", "13"]]}, 422, "validation_error"),
        ({"bin_ranges": [["400000"]]}, 422, "validation_error"),
        ({"bin_ranges": [["400000", "4000000x"]]}, 422, "validation_error"),
        ({"card_brands": ["maestro"]}, 422, "validation_error"),
        ({"weight": -1}, 422, "validation_error"),
        ({"tenant_id": "other"}, 422, "parameter_unknown"),
    ],
)
def test_invalid_gateways_are_refused_with_a_4xx_naming_the_problem(
    acme: Merchant, fields: dict[str, Any], status: int, code: str
) -> None:
    assert_error(acme.post("/v1/gateways", gateway_body("bad", **fields)), status, code)


def test_gateways_belong_to_their_tenant_and_need_an_admin(
    acme: Merchant, globex: Merchant, client: Any, key_of: Any
) -> None:
    created = register(acme, "main")
    agent = Merchant(client, key_of("acme", "agent"))

    assert_error(globex.get(f"/v1/gateways/{created['id']}"), 404, "gateway_not_found")
    assert_error(agent.post("/v1/gateways", gateway_body("x")), 403, "permission_denied")
    assert_error(acme.post(f"/v1/gateways/{created['id']}/reset"), 409, "gateway_not_tripped")
    assert agent.get(f"/v1/gateways/{created['id']}").status_code == 200


def test_registering_a_gateway_is_idempotent_per_key(acme: Merchant) -> None:
    first = acme.post("/v1/gateways", gateway_body("main"), headers={"Idempotency-Key": "gw-1"})
    again = acme.post("/v1/gateways", gateway_body("main"), headers={"Idempotency-Key": "gw-1"})

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(acme.get("/v1/gateways").json()["data"]) == 1
