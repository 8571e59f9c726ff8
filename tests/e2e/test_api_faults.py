"""Bad input at the edge: huge integers, values the schema refuses, and no echo of what was sent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e

HUGE = 10**20  # beyond 64 bits: orjson (and a bigint column) refuse it


@pytest.fixture
def customer_id(acme: Merchant) -> str:
    return acme.customer()["id"]


def _order(customer_id: str, **line: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "currency": "USD",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100, **line}],
    }


def _card(**fields: Any) -> dict[str, Any]:
    return {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2031, **fields}


INTEGER_FIELDS = [
    ("payment-methods", "exp_month", "exp_month"),
    ("payment-methods", "exp_year", "exp_year"),
    ("orders", "quantity", "lines.0.quantity"),
    ("orders", "unit_price_minor", "lines.0.unit_price_minor"),
    ("refunds", "amount_minor", "amount_minor"),
]


@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "idempotency-key"])
@pytest.mark.parametrize(("route", "field", "param"), INTEGER_FIELDS)
def test_an_integer_beyond_64_bits_in_any_body_field_is_a_422(
    acme: Merchant, customer_id: str, route: str, field: str, param: str, with_key: bool
) -> None:
    if route == "payment-methods":
        path, body = f"/v1/customers/{customer_id}/payment-methods", _card(**{field: HUGE})
    elif route == "orders":
        path, body = "/v1/orders", _order(customer_id, **{field: HUGE})
    else:
        order = acme.place_order(customer_id).json()
        path, body = f"/v1/orders/{order['id']}/refunds", {field: HUGE}
    headers = {"Idempotency-Key": f"huge-{uuid.uuid4()}"} if with_key else {}

    response = acme.post(path, body, headers=headers)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert str(HUGE) not in response.text


@pytest.mark.parametrize("name", ["limit", "min_position"])
def test_an_integer_beyond_64_bits_in_a_query_is_a_422(acme: Merchant, name: str) -> None:
    response = acme.get("/v1/orders", params={name: str(HUGE)})

    assert assert_error(response, 422, "validation_error")["param"] == name


@pytest.mark.parametrize(
    ("field", "value"),
    [("exp_month", 0), ("exp_month", 13), ("exp_year", 1999), ("exp_year", 2101)],
)
def test_card_expiry_out_of_the_documented_bounds_is_a_422(
    acme: Merchant, customer_id: str, field: str, value: int
) -> None:
    response = acme.post(f"/v1/customers/{customer_id}/payment-methods", _card(**{field: value}))

    assert assert_error(response, 422, "validation_error")["param"] == field


def test_a_quantity_above_the_domain_maximum_is_refused_at_the_edge(
    acme: Merchant, customer_id: str
) -> None:
    response = acme.post("/v1/orders", _order(customer_id, quantity=1_000_001))

    assert assert_error(response, 422, "validation_error")["param"] == "lines.0.quantity"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"currency": "usd"}, "currency"),
        ({"country": "usa"}, "country"),
    ],
)
def test_registration_values_the_schema_refuses_are_422(
    acme: Merchant, body: dict[str, Any], param: str
) -> None:
    customer = {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"}

    response = acme.post("/v1/customers", {**customer, **body})

    assert assert_error(response, 422, "validation_error")["param"] == param


def test_an_order_needs_a_line_and_a_refund_needs_money(acme: Merchant, customer_id: str) -> None:
    no_lines = acme.post("/v1/orders", {**_order(customer_id), "lines": []})
    order = acme.place_order(customer_id).json()
    zero_refund = acme.post(f"/v1/orders/{order['id']}/refunds", {"amount_minor": 0})
    authorize = acme.post(
        "/v1/orders",
        {**_order(customer_id), "payment": {"payment_method_id": str(uuid.uuid4()), "mode": "x"}},
    )

    assert assert_error(no_lines, 422, "validation_error")["param"] == "lines"
    assert assert_error(zero_refund, 422, "invalid_amount")["param"] == "amount_minor"
    assert assert_error(authorize, 422, "validation_error")["param"] == "payment.mode"


def test_an_unknown_payment_method_in_a_body_is_not_found(acme: Merchant, customer_id: str) -> None:
    body = {**_order(customer_id), "payment": {"payment_method_id": str(uuid.uuid4())}}

    error = assert_error(acme.post("/v1/orders", body), 404, "payment_method_not_found")

    assert error["param"] == "payment_method_id"


@pytest.mark.parametrize("key", ["caf\u00e9", " padded", "padded ", "k" * 256])
def test_idempotency_keys_outside_the_documented_pattern_are_bad_requests(
    acme: Merchant, customer_id: str, key: str
) -> None:
    headers = {"Idempotency-Key": key.encode("latin-1")}  # bytes: httpx sends them as they are

    response = acme.post("/v1/orders", _order(customer_id), headers=headers)

    assert_error(response, 400, "invalid_idempotency_key")
    assert acme.get("/v1/orders", params={"min_position": 0}).json()["data"] == []


def test_a_cursor_of_the_documented_shape_is_a_position_not_an_error(acme: Merchant) -> None:
    past_everything = "1_" + "0" * 32
    future = "9999999999999999_" + "f" * 32

    empty = acme.get("/v1/orders", params={"cursor": past_everything})
    from_future = acme.get("/v1/orders", params={"cursor": future})

    assert empty.status_code == 200 and empty.json() == {"data": [], "next_cursor": None}
    assert from_future.status_code == 200


def test_paging_with_cursors_walks_every_order_once(acme: Merchant, customer_id: str) -> None:
    responses = [acme.place_order(customer_id) for _ in range(5)]
    placed = {response.json()["id"] for response in responses}
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "min_position": position(responses[-1])}
    while True:
        page = acme.get("/v1/orders", params=params).json()
        seen += [order["id"] for order in page["data"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert sorted(seen) == sorted(placed)


ECHO_PROBES = [
    ("/v1/customers", {"currency": "ZZQ<script>"}),
    ("/v1/customers", {"currency": "QQQ"}),
    ("/v1/customers", {"country": "Q<img>"}),
    ("/v1/customers", {"country": "QQ"}),
    ("/v1/customers", {"email": "nobody@@x-probe"}),
    ("/v1/customers", {"email": "nobody-probe@x"}),
]


@pytest.mark.parametrize(("path", "fields"), ECHO_PROBES)
def test_error_messages_never_echo_submitted_values(
    acme: Merchant, path: str, fields: dict[str, str]
) -> None:
    customer = {"email": "a@example.com", "name": "A", "country": "US", "currency": "USD"}

    response = acme.post(path, {**customer, **fields})

    assert response.status_code == 422, response.text
    for value in fields.values():
        assert value not in response.text
        assert value.lower() not in response.text.lower()


def test_order_errors_never_echo_the_currency_or_ids(acme: Merchant, customer_id: str) -> None:
    unknown_currency = acme.post("/v1/orders", {**_order(customer_id), "currency": "QQQ"})
    unknown_id = uuid.uuid4()
    not_found = acme.get(f"/v1/orders/{unknown_id}")
    malformed_id = acme.post(
        "/v1/orders", {**_order(customer_id), "customer_id": "<b>not-a-uuid</b>"}
    )

    assert unknown_currency.status_code == 422 and "QQQ" not in unknown_currency.text
    assert not_found.status_code == 404 and str(unknown_id) not in not_found.text
    assert malformed_id.status_code == 422 and "<b>" not in malformed_id.text
