"""Chargebacks and one-click upsells over HTTP: disputes move the order's money and its reports;
an upsell charges the card that paid its parent, once per key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GENERIC_DECLINE_CARD, Merchant, assert_error, position


def chargeback(
    merchant: Merchant, order_id: str, amount_minor: Any = 1000, **kwargs: Any
) -> httpx.Response:
    body = {"amount_minor": amount_minor, "reason_code": "10.4"}
    return merchant.post(f"/v1/orders/{order_id}/chargebacks", body, **kwargs)


def resolve(
    merchant: Merchant, order_id: str, chargeback_id: str, outcome: str, **kwargs: Any
) -> httpx.Response:
    path = f"/v1/orders/{order_id}/chargebacks/{chargeback_id}/resolve"
    return merchant.post(path, {"outcome": outcome}, **kwargs)


def upsell(merchant: Merchant, order_id: str, **kwargs: Any) -> httpx.Response:
    body = {"lines": [{"sku": "UPSELL-1", "quantity": 2, "unit_price_minor": 700}]}
    return merchant.post(f"/v1/orders/{order_id}/upsells", body, **kwargs)


def paid(merchant: Merchant) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer's card and an order of 2,500 paid with it."""
    customer = merchant.customer()
    method = merchant.card(customer["id"])
    return method, merchant.paid_order(customer["id"], method["id"])


def charges(merchant: Merchant) -> list[tuple[str, int]]:
    """The processor's succeeded charges: (our order id, amount), from its own books."""
    page = merchant.get("/v1/sandbox/transactions", params={"limit": 100})
    assert page.status_code == 200, page.text
    return sorted(
        (txn["reference"], txn["amount_minor"])
        for txn in page.json()["data"]
        if txn["kind"] == "charge" and txn["status"] == "succeeded"
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_an_open_chargeback_marks_the_order_disputed_and_refunds_wait_for_it(
    acme: Merchant,
) -> None:
    _method, order = paid(acme)

    opened = chargeback(acme, order["id"], 1000)

    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert body["status"] == "disputed"
    [entry] = body["payment"]["chargebacks"]
    assert (entry["amount_minor"], entry["reason_code"], entry["status"]) == (1000, "10.4", "open")
    assert (body["captured_minor"], body["refunded_minor"], body["charged_back_minor"]) == (
        2500,
        0,
        0,
    )
    read = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(opened)})
    assert read.json()["status"] == "disputed"
    disputed = acme.get("/v1/orders", params={"status": "disputed"})
    assert [o["id"] for o in disputed.json()["data"]] == [order["id"]]
    refused = acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 100})
    assert_error(refused, 409, "order_disputed")


def test_a_lost_chargeback_reduces_the_balance_and_the_reports_show_it(acme: Merchant) -> None:
    _method, order = paid(acme)
    opened = chargeback(acme, order["id"], 1000).json()
    chargeback_id = opened["payment"]["chargebacks"][0]["id"]

    lost = resolve(acme, order["id"], chargeback_id, "lost")

    assert lost.status_code == 200, lost.text
    assert (lost.json()["status"], lost.json()["charged_back_minor"]) == ("paid", 1000)
    assert lost.json()["payment"]["chargebacks"][0]["status"] == "lost"
    assert_error(
        acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 1501}),
        409,
        "refund_exceeds_captured",
    )
    period = {"from": today(), "to": today(), "min_position": position(lost)}
    [totals] = acme.get("/v1/reports/sales", params=period).json()["totals"]
    assert (totals["gross_minor"], totals["chargebacks_minor"], totals["net_minor"]) == (
        2500,
        1000,
        1500,
    )
    [gateway] = acme.get("/v1/reports/gateways", params=period).json()["data"]
    assert (gateway["captures"], gateway["chargebacks"]) == (1, 1)
    assert gateway["volume_by_currency"]["USD"]["chargebacks_minor"] == 1000
    visa = gateway["scheme_ratios"]["visa"]
    assert (visa["disputes"], visa["transactions"], visa["ratio_bps"], visa["band"]) == (
        1,
        1,
        10_000,
        "excessive",
    )
    rest = chargeback(acme, order["id"], 1500)
    assert rest.status_code == 201, rest.text
    second_id = rest.json()["payment"]["chargebacks"][1]["id"]
    everything = resolve(acme, order["id"], second_id, "lost").json()
    assert (everything["status"], everything["charged_back_minor"]) == ("charged_back", 2500)


def test_a_won_chargeback_returns_the_order_to_paid_and_the_money_to_the_reports(
    acme: Merchant,
) -> None:
    _method, order = paid(acme)
    opened = chargeback(acme, order["id"], 2500).json()

    won = resolve(acme, order["id"], opened["payment"]["chargebacks"][0]["id"], "won")

    assert won.status_code == 200, won.text
    assert (won.json()["status"], won.json()["charged_back_minor"]) == ("paid", 0)
    period = {"from": today(), "to": today(), "min_position": position(won)}
    [totals] = acme.get("/v1/reports/sales", params=period).json()["totals"]
    assert (totals["chargebacks_minor"], totals["net_minor"]) == (0, 2500)
    refunded = acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 2500})
    assert refunded.status_code == 201, refunded.text


def test_chargebacks_the_order_cannot_take_are_4xx_with_precise_codes(acme: Merchant) -> None:
    _method, order = paid(acme)
    customer_id = order["customer_id"]
    unpaid = acme.place_order(customer_id).json()

    assert_error(chargeback(acme, order["id"], 2501), 409, "chargeback_exceeds_captured")
    assert_error(chargeback(acme, unpaid["id"], 1), 409, "order_not_disputable")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(chargeback(acme, unknown, 1), 404, "order_not_found")
    assert_error(chargeback(acme, "not-an-id", 1), 404, "order_not_found")
    for hostile in (10**20, -1, 0, "100", 1.5, True, None):
        assert_error(chargeback(acme, order["id"], hostile), 422, _amount_code(hostile))
    no_reason = acme.post(f"/v1/orders/{order['id']}/chargebacks", {"amount_minor": 1})
    assert_error(no_reason, 422, "parameter_missing")
    assert_error(resolve(acme, order["id"], unknown, "won"), 404, "chargeback_not_found")
    opened = chargeback(acme, order["id"], 1).json()
    chargeback_id = opened["payment"]["chargebacks"][0]["id"]
    assert_error(resolve(acme, order["id"], chargeback_id, "maybe"), 422, "validation_error")
    assert resolve(acme, order["id"], chargeback_id, "won").status_code == 200
    assert_error(
        resolve(acme, order["id"], chargeback_id, "lost"), 409, "chargeback_already_resolved"
    )


def _amount_code(amount: Any) -> str:
    in_range = isinstance(amount, int) and not isinstance(amount, bool)
    return "invalid_amount" if in_range else "validation_error"


def test_the_same_idempotency_key_twice_opens_one_chargeback(acme: Merchant) -> None:
    _method, order = paid(acme)
    headers = {"Idempotency-Key": "dispute-1"}

    first = chargeback(acme, order["id"], 700, headers=headers)
    again = chargeback(acme, order["id"], 700, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_error(chargeback(acme, order["id"], 701, headers=headers), 409, "idempotency_key_reused")
    read = acme.get(f"/v1/orders/{order['id']}", params={"min_position": position(first)})
    assert read.json()["status"] == "disputed"
    # One chargeback: a second one could not be opened on top of it (the order is disputed).
    assert len(first.json()["payment"]["chargebacks"]) == 1


def test_a_reader_may_not_open_a_chargeback(acme: Merchant, key_of: Any) -> None:
    _method, order = paid(acme)
    reader = Merchant(acme.client, key_of("acme", "readonly"))
    assert_error(chargeback(reader, order["id"]), 403, "permission_denied")


def test_an_upsell_charges_the_card_that_paid_the_parent_and_links_to_it(acme: Merchant) -> None:
    _method, parent = paid(acme)

    response = upsell(acme, parent["id"])

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["id"] != parent["id"]
    assert (order["status"], order["total_minor"], order["captured_minor"]) == ("paid", 1400, 1400)
    assert (order["parent_order_id"], order["customer_id"], order["currency"]) == (
        parent["id"],
        parent["customer_id"],
        parent["currency"],
    )
    assert charges(acme) == sorted([(parent["id"], 2500), (order["id"], 1400)])


def test_an_upsell_can_name_another_card_of_the_customer(acme: Merchant) -> None:
    _method, parent = paid(acme)
    declining = acme.card(parent["customer_id"], GENERIC_DECLINE_CARD)

    response = acme.post(
        f"/v1/orders/{parent['id']}/upsells",
        {
            "lines": [{"sku": "UPSELL-1", "quantity": 1, "unit_price_minor": 700}],
            "payment_method_id": declining["id"],
        },
    )

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "declined"


def test_an_upsell_of_an_unpaid_parent_is_refused(acme: Merchant) -> None:
    customer = acme.customer()
    unpaid = acme.place_order(customer["id"]).json()
    declining = acme.card(customer["id"], GENERIC_DECLINE_CARD)
    declined = acme.place_order(customer["id"], declining["id"]).json()

    assert_error(upsell(acme, unpaid["id"]), 409, "parent_order_not_paid")
    assert_error(upsell(acme, declined["id"]), 409, "parent_order_not_paid")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(upsell(acme, unknown), 404, "order_not_found")
    assert charges(acme) == []


def test_an_upsell_with_one_key_sent_twice_charges_once(acme: Merchant) -> None:
    _method, parent = paid(acme)
    headers = {"Idempotency-Key": "upsell-1"}

    first = upsell(acme, parent["id"], headers=headers)
    again = upsell(acme, parent["id"], headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert charges(acme) == sorted([(parent["id"], 2500), (first.json()["id"], 1400)])


@pytest.mark.parametrize(
    "body",
    [
        {"lines": []},
        {"lines": [{"sku": "A", "quantity": 10**20, "unit_price_minor": 1}]},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": -1}]},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1}], "currency": "EUR"},
        {"lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1}], "payment_method_id": 7},
    ],
)
def test_a_hostile_upsell_is_a_422(acme: Merchant, body: dict[str, Any]) -> None:
    _method, parent = paid(acme)
    response = acme.post(f"/v1/orders/{parent['id']}/upsells", body)
    assert response.status_code == 422, response.text
    assert charges(acme) == [(parent["id"], 2500)]


def test_disputed_orders_and_upsells_read_back_exactly_as_their_commands_answered(
    acme: Merchant,
) -> None:
    _method, order = paid(acme)
    opened = chargeback(acme, order["id"], 1000).json()
    lost = resolve(acme, order["id"], opened["payment"]["chargebacks"][0]["id"], "lost")
    linked = upsell(acme, order["id"])

    for response in (lost, linked):
        answered = response.json()
        read = acme.get(
            f"/v1/orders/{answered['id']}", params={"min_position": position(response)}
        )
        assert read.status_code == 200, read.text
        assert read.json() == answered


class ChargebackDuringTheCharge:
    """The sandbox, holding each purchase until ``during`` (a chargeback sent meanwhile) ran."""

    def __init__(self, inner: Any, during: Any) -> None:
        self.inner, self.name, self.book, self.during = inner, inner.name, inner.book, during
        self.answers: list[httpx.Response] = []

    def purchase(self, **request: Any) -> Any:
        with ThreadPoolExecutor(1) as pool:  # another request, as the network would send it
            self.answers.append(pool.submit(self.during).result(timeout=30))
        return self.inner.purchase(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_upsell_racing_a_chargeback_of_its_parent_never_both_pass(
    acme: Merchant, running_services: Any
) -> None:
    """A chargeback of the parent sent while the upsell charges the card waits for the
    upsell's outcome (409 payment_in_progress); sent again then, it is opened, and an upsell
    after it is refused: a disputing cardholder is never charged by a one-click upsell."""
    _method, parent = paid(acme)
    ledger = running_services.ledger
    sandbox = ledger.gateway
    racing = ChargebackDuringTheCharge(sandbox, lambda: chargeback(acme, parent["id"], 2500))
    ledger.gateway = racing
    try:
        upsold = upsell(acme, parent["id"])
    finally:
        ledger.gateway = sandbox

    assert upsold.status_code == 201 and upsold.json()["status"] == "paid", upsold.text
    [during] = racing.answers
    assert_error(during, 409, "payment_in_progress")
    assert acme.get(f"/v1/orders/{parent['id']}").json()["status"] == "paid"
    after = chargeback(acme, parent["id"], 2500)
    assert after.status_code == 201 and after.json()["status"] == "disputed", after.text
    assert_error(upsell(acme, parent["id"]), 409, "parent_order_not_paid")
    assert charges(acme) == sorted([(parent["id"], 2500), (upsold.json()["id"], 1400)])
