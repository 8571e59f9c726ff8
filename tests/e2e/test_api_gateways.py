"""Gateways over HTTP: merchant accounts, routed purchases, cascades on soft declines only."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.settings import Settings
from tests.e2e.conftest import GENERIC_DECLINE_CARD, GOOD_CARD, Merchant, assert_error

pytestmark = pytest.mark.e2e

LOST_CARD = "4000000000009987"


@pytest.fixture
def test_settings(test_settings: Settings) -> Settings:
    """A small minimum sample for the chargeback breaker, so a test trips it with few sales."""
    return test_settings.model_copy(update={"chargeback_breaker_transactions_min": 4})


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


def open_chargeback(merchant: Merchant, order: dict[str, Any]) -> dict[str, Any]:
    response = merchant.post(
        f"/v1/orders/{order['id']}/chargebacks",
        {"amount_minor": order["total_minor"], "reason_code": "10.4"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_chargebacks_over_the_ratio_threshold_trip_the_gateway_until_it_is_reset(
    acme: Merchant,
) -> None:
    risky = register(acme, "risky", weight=100, chargeback_ratio_threshold_bps=5_000)
    backup = register(acme, "backup", weight=0)
    customer_id, method_id = buyer(acme)
    orders = [acme.paid_order(customer_id, method_id) for _ in range(4)]
    assert {o["payment"]["history"][0]["gateway_id"] for o in orders} == {risky["id"]}

    open_chargeback(acme, orders[0])  # 1 of 4 settled transactions: 2,500 bps
    below = acme.get(f"/v1/gateways/{risky['id']}").json()
    open_chargeback(acme, orders[1])  # 2 of 4: 5,000 bps, the threshold
    tripped = acme.get(f"/v1/gateways/{risky['id']}").json()
    skipped = acme.paid_order(customer_id, method_id)
    reset = acme.post(f"/v1/gateways/{risky['id']}/reset")
    routed_again = acme.paid_order(customer_id, method_id)

    assert below["tripped"] is False
    assert tripped["tripped"] is True
    assert tripped["tripped_reason"].startswith("chargeback ratio 5000 bps")
    assert [h["gateway_id"] for h in skipped["payment"]["history"]] == [backup["id"]]
    assert reset.status_code == 200, reset.text
    assert reset.json()["tripped"] is False
    assert [h["gateway_id"] for h in routed_again["payment"]["history"]] == [risky["id"]]


def test_the_gateway_report_shows_each_gateways_monthly_cap_beside_its_approved_volume(
    acme: Merchant, globex: Merchant
) -> None:
    capped = register(acme, "capped", currencies=["USD", "EUR"], monthly_cap_minor=10_000)
    customer_id, method_id = buyer(acme)
    declining_customer_id, declining_id = buyer(acme, GENERIC_DECLINE_CARD)
    acme.paid_order(customer_id, method_id, unit_price_minor=2_500)
    last = acme.paid_order(customer_id, method_id, unit_price_minor=3_000)
    declined = acme.place_order(declining_customer_id, declining_id, unit_price_minor=1_000)
    assert declined.status_code == 201, declined.text
    assert declined.json()["status"] == "declined"
    today = datetime.now(UTC).date()
    this_month = {"from": today.isoformat(), "to": today.isoformat()}
    last_year = {"from": f"{today.year - 1}-06-01", "to": f"{today.year - 1}-06-30"}

    report = acme.get("/v1/reports/gateways", params=this_month)
    past = acme.get("/v1/reports/gateways", params=last_year).json()
    other_tenant = globex.get("/v1/reports/gateways", params=this_month).json()

    assert report.status_code == 200, report.text
    assert report.json()["monthly_caps"] == [
        {
            "gateway_id": capped["id"],
            "gateway": "capped",
            "month": today.strftime("%Y-%m"),
            "monthly_cap_minor": 10_000,
            "by_currency": {
                "USD": {"committed_minor": 5_500, "remaining_minor": 4_500, "used_bps": 5_500},
                "EUR": {"committed_minor": 0, "remaining_minor": 10_000, "used_bps": 0},
            },
        }
    ]
    assert past["monthly_caps"][0]["by_currency"]["USD"]["committed_minor"] == 0
    assert other_tenant["monthly_caps"] == []
    assert last["payment"]["history"][0]["gateway_id"] == capped["id"]


def test_parallel_purchases_never_take_a_gateway_over_its_monthly_cap(
    acme: Merchant, running_services: Any
) -> None:
    """Each routed attempt reserves its amount on its gateway before the call: six purchases
    of 2,500 at once through a cap of 5,000 pay two, and refuse the rest as over the cap."""
    capped = register(acme, "capped", monthly_cap_minor=5_000)
    buyers = []
    for month in range(1, 7):  # six cards (by expiry), so no two share the card's scheme usage
        customer_id = acme.customer()["id"]
        body = {"card_number": GOOD_CARD, "exp_month": month, "exp_year": 2031, "cvc": "123"}
        card = acme.post(f"/v1/customers/{customer_id}/payment-methods", body)
        assert card.status_code == 201, card.text
        buyers.append((customer_id, card.json()["id"]))
    barrier = threading.Barrier(6)

    def place(i: int) -> Any:
        barrier.wait()
        return acme.place_order(*buyers[i])

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(place, range(6)))

    codes = [
        (r.status_code, r.json().get("status") or r.json()["error"]["code"]) for r in responses
    ]
    paid = [r for r in responses if r.status_code == 201 and r.json()["status"] == "paid"]
    today = datetime.now(UTC).date()
    charged = [  # the processor's own books: what was really taken (only this tenant's)
        t.amount_minor
        for t in running_services.sandbox_book.transactions_on(today)
        if t.kind == "purchase" and t.state == "succeeded"
    ]
    assert sum(charged) <= 5_000, codes
    assert sum(charged) == 2_500 * len(paid), codes
    for response in responses:
        if response not in paid:
            assert response.status_code in (409, 422), codes
    if any(r.status_code == 422 for r in responses):
        assert len(paid) == 2, codes  # refused only once the cap was really taken
    day = {"from": today.isoformat(), "to": today.isoformat()}
    report = acme.get("/v1/reports/gateways", params=day).json()
    assert report["monthly_caps"][0]["gateway_id"] == capped["id"]
    # Nothing stays held by the refused, conflicting or finished purchases.
    usd = report["monthly_caps"][0]["by_currency"]["USD"]
    assert usd.get("committed_minor", usd.get("approved_minor")) == sum(charged)
