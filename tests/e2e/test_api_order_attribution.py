"""Orders credited to a distributor or an affiliate, with each line's personal volume: the
command answers them and the read model reads them back the same (commissions start here)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e


def test_an_attributed_order_with_line_volumes_reads_back_as_answered(acme: Merchant) -> None:
    customer = acme.customer()
    method = acme.card(customer["id"])
    distributor_id = str(uuid.uuid4())
    placed = acme.post(
        "/v1/orders",
        {
            "customer_id": customer["id"],
            "currency": "USD",
            "lines": [
                {"sku": "KIT", "quantity": 2, "unit_price_minor": 5000, "volume_minor": 3500},
                {"sku": "REFILL", "quantity": 1, "unit_price_minor": 1900},
            ],
            "payment": {"payment_method_id": method["id"]},
            "attribution": {"distributor_id": distributor_id, "affiliate_id": "aff-42"},
        },
    )
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["attribution"] == {"distributor_id": distributor_id, "affiliate_id": "aff-42"}
    assert body["lines"][0]["volume_minor"] == 3500
    assert "volume_minor" not in body["lines"][1]  # its volume is its amount
    read = acme.get(f"/v1/orders/{body['id']}", params={"min_position": position(placed)})
    assert read.status_code == 200, read.text
    assert read.json() == body
    plain = acme.place_order(customer["id"], method["id"]).json()
    assert plain["attribution"] is None


@pytest.mark.parametrize(
    "attribution",
    [
        {"distributor_id": "not-a-uuid"},
        {"affiliate_id": "x" * 65},
        {"affiliate_id": ""},
        {"partner": "p"},
    ],
)
def test_a_malformed_attribution_is_a_422(acme: Merchant, attribution: dict) -> None:
    customer = acme.customer()
    response = acme.post(
        "/v1/orders",
        {
            "customer_id": customer["id"],
            "currency": "USD",
            "lines": [{"sku": "KIT", "quantity": 1, "unit_price_minor": 100}],
            "attribution": attribution,
        },
    )
    assert response.status_code == 422, response.text
    assert "error" in response.json()


def test_a_line_volume_beyond_the_maximum_is_a_422(acme: Merchant) -> None:
    customer = acme.customer()
    response = acme.post(
        "/v1/orders",
        {
            "customer_id": customer["id"],
            "currency": "USD",
            "lines": [
                {"sku": "KIT", "quantity": 1, "unit_price_minor": 100, "volume_minor": 10**20}
            ],
        },
    )
    assert_error(response, 422, "invalid_amount")
